-- Looker Studio: health gauges and worst servers (seed 000). One row per server and day:
-- the latest pane of server_health_summary (streaming appends a pane per firing).
CREATE OR REPLACE VIEW `${reporting}.server_health_daily`
OPTIONS(description="Per server and day: health score and utilisation (latest pane)") AS
SELECT
  metric_date AS day,
  COALESCE(server_name, server_id) AS server,
  server_id, server_type, location,
  server_health_score AS health_score_points,
  avg_cpu_usage AS cpu_avg_pct,
  max_cpu_usage AS cpu_peak_pct,
  avg_memory_usage AS memory_avg_pct,
  max_memory_usage AS memory_peak_pct,
  high_utilization_count,
  high_utilization_pct,
  total_network_in AS network_in_sum_kb_per_s_samples,
  total_network_out AS network_out_sum_kb_per_s_samples,
  record_count AS records
FROM `${gold}.server_health_summary`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY server_id, server_name, server_type, location, window_start
  ORDER BY pane_index DESC) = 1;
