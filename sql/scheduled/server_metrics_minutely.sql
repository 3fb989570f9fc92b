-- server_metrics_minutely: per server and minute of event time, from silver.
-- Scheduled every 15 minutes; replaces the partitions of DATE(run_time) - 2 days …
-- DATE(run_time) atomically (see hourly_server_metrics.sql).
MERGE `${gold}.server_metrics_minutely` AS target
USING (
  WITH silver AS (
    SELECT *, TIMESTAMP_TRUNC(timestamp, MINUTE) AS window_start
    FROM `${silver}.server_metrics_silver`
    WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  )
  SELECT
    window_start,
    TIMESTAMP_ADD(window_start, INTERVAL 1 MINUTE) AS window_end,
    DATE(window_start) AS metric_date,
    0 AS pane_index,
    'ON_TIME' AS pane_timing,
    server_id, server_name, server_type, location,
    COUNT(*) AS record_count,
    MIN(cpu_usage) AS min_cpu_usage,
    AVG(cpu_usage) AS avg_cpu_usage,
    MAX(cpu_usage) AS max_cpu_usage,
    MIN(memory_usage) AS min_memory_usage,
    AVG(memory_usage) AS avg_memory_usage,
    MAX(memory_usage) AS max_memory_usage,
    AVG(disk_io) AS avg_disk_io,
    SUM(network_in) AS total_network_in,
    SUM(network_out) AS total_network_out,
    AVG(temperature_c) AS avg_temperature_c,
    MAX(temperature_c) AS max_temperature_c,
    AVG(power_watts) AS avg_power_watts,
    COUNTIF(is_high_utilization) AS high_utilization_count,
    100 * COUNTIF(is_high_utilization) / COUNT(*) AS high_utilization_pct
  FROM silver
  GROUP BY window_start, server_id, server_name, server_type, location
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  -- On the partition column itself (DATE(window_start)): metric_date holds the same date
  -- but a filter on it prunes nothing.
  AND DATE(target.window_start) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY)
    AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id, server_name,
  server_type, location, record_count, min_cpu_usage, avg_cpu_usage, max_cpu_usage,
  min_memory_usage, avg_memory_usage, max_memory_usage, avg_disk_io, total_network_in,
  total_network_out, avg_temperature_c, max_temperature_c, avg_power_watts,
  high_utilization_count, high_utilization_pct
) VALUES (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id, server_name,
  server_type, location, record_count, min_cpu_usage, avg_cpu_usage, max_cpu_usage,
  min_memory_usage, avg_memory_usage, max_memory_usage, avg_disk_io, total_network_in,
  total_network_out, avg_temperature_c, max_temperature_c, avg_power_watts,
  high_utilization_count, high_utilization_pct
);
