-- Looker Studio: CPU/memory by hour, network by hour, CPU heatmap location × type
-- (seed 000). Averages of throughput are per sample, in kB/s.
CREATE OR REPLACE VIEW `${reporting}.server_hourly`
OPTIONS(description="Per server and hour: utilisation and throughput (latest pane)") AS
SELECT
  window_start AS hour_start,
  metric_date AS day,
  hour_of_day,
  COALESCE(server_name, server_id) AS server,
  server_id, server_type, location,
  avg_cpu_usage AS cpu_avg_pct,
  p95_cpu_usage AS cpu_p95_pct,
  max_cpu_usage AS cpu_peak_pct,
  avg_memory_usage AS memory_avg_pct,
  p95_memory_usage AS memory_p95_pct,
  avg_disk_io AS disk_io_avg_iops,
  SAFE_DIVIDE(total_network_in, record_count) AS network_in_avg_kb_per_s,
  SAFE_DIVIDE(total_network_out, record_count) AS network_out_avg_kb_per_s,
  avg_temperature_c AS temperature_avg_c,
  high_utilization_pct,
  record_count AS records
FROM `${gold}.hourly_server_metrics`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY server_id, server_name, server_type, location, window_start
  ORDER BY pane_index DESC) = 1;
