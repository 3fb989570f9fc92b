-- alerts: one row per server, minute and rule that fired, from silver. The rules come from
-- ${ops}.alert_rules (loaded from the rules file by setup): a rule fires when its metric is
-- above `above` (or below `below`) in at least one record of the minute; a server's own
-- row of the rule, else its type's, else the rule's row, gives the threshold.
-- Scheduled every 15 minutes; replaces DATE(run_time) - 2 days … DATE(run_time).
MERGE `${gold}.alerts` AS target
USING (
  WITH minute AS (
    SELECT *,
      TIMESTAMP_TRUNC(timestamp, MINUTE) AS window_start,
      COUNT(*) OVER (PARTITION BY server_id, server_name, server_type, location,
                     TIMESTAMP_TRUNC(timestamp, MINUTE)) AS window_records
    FROM `${silver}.server_metrics_silver`
    WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  ),
  measured AS (
    SELECT
      m.window_start, m.server_id, m.server_name, m.server_type, m.location, m.window_records,
      r.name AS rule, r.severity, r.metric,
      COALESCE(r.above, r.below) AS threshold,
      r.above IS NOT NULL AS fires_above,
      CASE r.metric
        WHEN 'cpu_usage' THEN m.cpu_usage
        WHEN 'memory_usage' THEN m.memory_usage
        WHEN 'disk_io' THEN m.disk_io
        WHEN 'network_in' THEN m.network_in
        WHEN 'network_out' THEN m.network_out
        WHEN 'temperature_c' THEN m.temperature_c
        WHEN 'power_watts' THEN m.power_watts
        WHEN 'voltage_v' THEN m.voltage_v
        WHEN 'load_1m' THEN m.load_1m
        WHEN 'load_5m' THEN m.load_5m
        WHEN 'load_15m' THEN m.load_15m
        WHEN 'disk_used_gb' THEN m.disk_used_gb
        WHEN 'disk_used_pct' THEN m.disk_used_pct
      END AS value
    FROM minute AS m
    JOIN `${ops}.alert_rules` AS r
      ON (r.server_id IS NULL OR r.server_id = m.server_id)
      AND (r.server_type IS NULL OR r.server_type = m.server_type)
    WHERE TRUE
    QUALIFY ROW_NUMBER() OVER (
      PARTITION BY m.server_id, m.timestamp, r.name
      ORDER BY r.server_id IS NULL, r.server_type IS NULL) = 1
  ),
  fired AS (
    SELECT
      window_start, server_id, server_name, server_type, location, window_records, rule,
      severity, metric, threshold, fires_above,
      IF(fires_above, MAX(value), MIN(value)) AS observed_value,
      COUNT(*) AS breach_count
    FROM measured
    WHERE value IS NOT NULL AND IF(fires_above, value > threshold, value < threshold)
    GROUP BY window_start, server_id, server_name, server_type, location, window_records,
      rule, severity, metric, threshold, fires_above
  )
  SELECT
    window_start,
    TIMESTAMP_ADD(window_start, INTERVAL 1 MINUTE) AS window_end,
    DATE(window_start) AS metric_date,
    0 AS pane_index,
    'ON_TIME' AS pane_timing,
    server_id, server_name, server_type, location, rule, severity, metric, threshold,
    observed_value, breach_count,
    FORMAT('%s %s %g on %s: %d of %d records, most extreme %g, %s–%s UTC',
           metric, IF(fires_above, 'above', 'below'), threshold,
           COALESCE(server_name, server_id), breach_count, window_records, observed_value,
           FORMAT_TIMESTAMP('%Y-%m-%d %H:%M', window_start, 'UTC'),
           FORMAT_TIMESTAMP('%H:%M', TIMESTAMP_ADD(window_start, INTERVAL 1 MINUTE), 'UTC'))
      AS message
  FROM fired
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  AND target.metric_date BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id, server_name,
  server_type, location, rule, severity, metric, threshold, observed_value, breach_count,
  message
) VALUES (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id, server_name,
  server_type, location, rule, severity, metric, threshold, observed_value, breach_count,
  message
);
