-- Looker Studio: the location map (seed 000's was empty: its locations had no
-- coordinates). location_point is "latitude,longitude", which Looker Studio maps.
CREATE OR REPLACE VIEW `${reporting}.location_daily`
OPTIONS(description="Per location, server type and day, with a map point (latest pane)") AS
SELECT
  metric_date AS day,
  location, server_type,
  IF(latitude IS NULL OR longitude IS NULL, NULL,
     CONCAT(CAST(latitude AS STRING), ',', CAST(longitude AS STRING))) AS location_point,
  server_count AS servers,
  avg_cpu_usage AS cpu_avg_pct,
  avg_memory_usage AS memory_avg_pct,
  avg_disk_io AS disk_io_avg_iops,
  high_utilization_pct,
  record_count AS records
FROM `${gold}.location_performance`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY location, server_type, window_start ORDER BY pane_index DESC) = 1;
