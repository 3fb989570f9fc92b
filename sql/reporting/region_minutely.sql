-- Looker Studio: seed 001's live dashboard per region (CPU, temperature distribution,
-- record volume), per minute. A regional record's region, else its location; read from
-- silver, as a region is not a gold key (a server's location may come from the inventory).
CREATE OR REPLACE VIEW `${reporting}.region_minutely`
OPTIONS(description="Per region and minute: records, servers, CPU and the temperature distribution") AS
SELECT
  TIMESTAMP_TRUNC(timestamp, MINUTE) AS minute,
  COALESCE(region, location, '(none)') AS region,
  COUNT(*) AS records,
  COUNT(DISTINCT server_id) AS servers,
  AVG(cpu_usage) AS cpu_avg_pct,
  MAX(cpu_usage) AS cpu_peak_pct,
  AVG(temperature_c) AS temperature_avg_c,
  MIN(temperature_c) AS temperature_min_c,
  MAX(temperature_c) AS temperature_max_c,
  COUNTIF(temperature_c < 40) AS temperature_below_40c,
  COUNTIF(temperature_c >= 40 AND temperature_c < 60) AS temperature_40_to_60c,
  COUNTIF(temperature_c >= 60 AND temperature_c < 80) AS temperature_60_to_80c,
  COUNTIF(temperature_c >= 80) AS temperature_80c_and_above
FROM `${silver}.server_metrics_silver`
GROUP BY 1, 2;  -- by position: "region" is also a column of silver
