-- server_metrics_silver from bronze, for warehouses where the pipeline writes bronze only
-- (--bq-layers bronze): the accepted records of ${ops}.server_metrics_checked, with the
-- derived columns. Scheduled every 15 minutes; replaces, in one atomic MERGE, the
-- partitions of DATE(run_time) - 2 days … DATE(run_time). The rejected records go to the
-- dead letters by server_metrics_silver_rejects.
MERGE `${silver}.server_metrics_silver` AS target
USING (
  SELECT
    canonical_server_id AS server_id,
    canonical_server_name AS server_name,
    canonical_server_type AS server_type,
    canonical_location AS location,
    timestamp, cpu_usage, memory_usage, disk_io, network_in, network_out, temperature_c,
    power_watts, voltage_v, load_1m, load_5m, load_15m, disk_used_gb, disk_used_pct,
    region, os, arch, ingest_timestamp, source, is_high_utilization,
    DATE(timestamp) AS metric_date,
    EXTRACT(HOUR FROM timestamp) AS hour_of_day,
    TIMESTAMP_DIFF(ingest_timestamp, timestamp, MILLISECOND) AS processing_delay_ms
  FROM `${ops}.server_metrics_checked`
  WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
    AND reason IS NULL
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  AND DATE(target.timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY)
    AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  server_id, server_name, server_type, location, timestamp, cpu_usage, memory_usage,
  disk_io, network_in, network_out, temperature_c, power_watts, voltage_v, load_1m,
  load_5m, load_15m, disk_used_gb, disk_used_pct, region, os, arch,
  ingest_timestamp, source, is_high_utilization, metric_date, hour_of_day,
  processing_delay_ms
) VALUES (
  server_id, server_name, server_type, location, timestamp, cpu_usage, memory_usage,
  disk_io, network_in, network_out, temperature_c, power_watts, voltage_v, load_1m,
  load_5m, load_15m, disk_used_gb, disk_used_pct, region, os, arch,
  ingest_timestamp, source, is_high_utilization, metric_date, hour_of_day,
  processing_delay_ms
);
