-- server_health_summary: per server and day (seed 000), with the health score
-- 100 - (avg_cpu*w_cpu + avg_memory*w_memory + high_util_pct*w_high), clamped to [0, 100];
-- the weights come from ${ops}.pipeline_settings (loaded from the rules file by setup).
-- A metric a server does not report leaves its weight to the others: the sum is over the
-- present metrics, scaled by all weights / present weights (high_util_pct is present
-- when CPU or memory is); with none, the score is null.
-- Scheduled every 15 minutes; replaces DATE(run_time) - 2 days … DATE(run_time).
MERGE `${gold}.server_health_summary` AS target
USING (
  WITH silver AS (
    SELECT *, TIMESTAMP_TRUNC(timestamp, DAY) AS window_start
    FROM `${silver}.server_metrics_silver`
    WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  ),
  with_quantiles AS (
    -- PERCENTILE_CONT interpolates between closest ranks, as the Beam gold does.
    SELECT *,
      PERCENTILE_CONT(cpu_usage, 0.5) OVER w AS p50_cpu,
      PERCENTILE_CONT(cpu_usage, 0.95) OVER w AS p95_cpu,
      PERCENTILE_CONT(cpu_usage, 0.99) OVER w AS p99_cpu,
      PERCENTILE_CONT(memory_usage, 0.5) OVER w AS p50_memory,
      PERCENTILE_CONT(memory_usage, 0.95) OVER w AS p95_memory,
      PERCENTILE_CONT(memory_usage, 0.99) OVER w AS p99_memory
    FROM silver
    WINDOW w AS (PARTITION BY server_id, server_name, server_type, location, window_start)
  )
  SELECT
    stats.*,
    GREATEST(0, LEAST(100, 100 - SAFE_DIVIDE(
      IFNULL(stats.avg_cpu_usage * settings.weight_cpu, 0)
      + IFNULL(stats.avg_memory_usage * settings.weight_memory, 0)
      + IF(stats.avg_cpu_usage IS NULL AND stats.avg_memory_usage IS NULL, 0,
           IFNULL(stats.high_utilization_pct * settings.weight_high_utilization, 0)),
      IF(stats.avg_cpu_usage IS NULL, 0, settings.weight_cpu)
      + IF(stats.avg_memory_usage IS NULL, 0, settings.weight_memory)
      + IF((stats.avg_cpu_usage IS NULL AND stats.avg_memory_usage IS NULL)
           OR stats.high_utilization_pct IS NULL, 0, settings.weight_high_utilization))
      * (settings.weight_cpu + settings.weight_memory + settings.weight_high_utilization)
    )) AS server_health_score
  FROM (
  SELECT
    window_start,
    TIMESTAMP_ADD(window_start, INTERVAL 1 DAY) AS window_end,
    DATE(window_start) AS metric_date,
    0 AS pane_index,
    'ON_TIME' AS pane_timing,
    server_id, server_name, server_type, location,
    COUNT(*) AS record_count,
    MIN(cpu_usage) AS min_cpu_usage,
    AVG(cpu_usage) AS avg_cpu_usage,
    MAX(cpu_usage) AS max_cpu_usage,
    MAX(p50_cpu) AS p50_cpu_usage,
    MAX(p95_cpu) AS p95_cpu_usage,
    MAX(p99_cpu) AS p99_cpu_usage,
    STDDEV_SAMP(cpu_usage) AS stddev_cpu_usage,
    MIN(memory_usage) AS min_memory_usage,
    AVG(memory_usage) AS avg_memory_usage,
    MAX(memory_usage) AS max_memory_usage,
    MAX(p50_memory) AS p50_memory_usage,
    MAX(p95_memory) AS p95_memory_usage,
    MAX(p99_memory) AS p99_memory_usage,
    STDDEV_SAMP(memory_usage) AS stddev_memory_usage,
    AVG(disk_io) AS avg_disk_io,
    SUM(network_in) AS total_network_in,
    SUM(network_out) AS total_network_out,
    AVG(temperature_c) AS avg_temperature_c,
    MAX(temperature_c) AS max_temperature_c,
    AVG(power_watts) AS avg_power_watts,
    COUNTIF(is_high_utilization) AS high_utilization_count,
    100 * COUNTIF(is_high_utilization) / COUNT(*) AS high_utilization_pct
  FROM with_quantiles
  GROUP BY window_start, server_id, server_name, server_type, location
  ) AS stats
  CROSS JOIN `${ops}.pipeline_settings` AS settings
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  AND target.metric_date BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id,
  server_name, server_type, location, record_count, min_cpu_usage, avg_cpu_usage,
  max_cpu_usage, p50_cpu_usage, p95_cpu_usage, p99_cpu_usage, stddev_cpu_usage,
  min_memory_usage, avg_memory_usage, max_memory_usage, p50_memory_usage, p95_memory_usage,
  p99_memory_usage, stddev_memory_usage, avg_disk_io, total_network_in, total_network_out,
  avg_temperature_c, max_temperature_c, avg_power_watts, high_utilization_count,
  high_utilization_pct, server_health_score
) VALUES (
  window_start, window_end, metric_date, pane_index, pane_timing, server_id,
  server_name, server_type, location, record_count, min_cpu_usage, avg_cpu_usage,
  max_cpu_usage, p50_cpu_usage, p95_cpu_usage, p99_cpu_usage, stddev_cpu_usage,
  min_memory_usage, avg_memory_usage, max_memory_usage, p50_memory_usage, p95_memory_usage,
  p99_memory_usage, stddev_memory_usage, avg_disk_io, total_network_in, total_network_out,
  avg_temperature_c, max_temperature_c, avg_power_watts, high_utilization_count,
  high_utilization_pct, server_health_score
);
