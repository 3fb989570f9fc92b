-- The bronze records server_metrics_silver does not accept, as dead letters (step
-- ScheduledSilver): nothing leaves bronze silently. The payload is the bronze row as JSON.
-- Their own table, not dead_letters: the pipeline streams into that one, and BigQuery
-- refuses to modify rows still in its streaming buffer.
-- Scheduled every 15 minutes; replaces the dead letters of the event dates
-- DATE(run_time) - 2 days … DATE(run_time) (the table's partitions), so a re-run does
-- not add them twice.
MERGE `${ops}.scheduled_dead_letters` AS target
USING (
  SELECT
    'server_metrics' AS pipeline,
    'silver' AS layer,
    'ScheduledSilver' AS step,
    reason,
    CASE reason
      WHEN 'out_of_range' THEN CONCAT(out_of_range, ' is outside its declared range')
      WHEN 'unknown_category' THEN IF(
        unknown_category = 'location',
        CONCAT('location ', location, " is not one of the rules file's locations"),
        CONCAT('server_type ', server_type, ' is not a known type'))
      ELSE CONCAT('another record of server ', canonical_server_id, ' at ',
                  FORMAT_TIMESTAMP('%Y-%m-%dT%H:%M:%E6S%Ez', timestamp), ' was kept')
    END AS message,
    TO_JSON_STRING(STRUCT(server_id, server_name, server_type, location, timestamp,
                          cpu_usage, memory_usage, disk_io, network_in, network_out,
                          temperature_c, power_watts, voltage_v, load_1m, load_5m, load_15m,
                          disk_used_gb, disk_used_pct, region, os, arch, ingest_timestamp,
                          source, extra_fields)) AS payload,
    'utf-8' AS payload_encoding,
    source,
    timestamp AS event_timestamp,
    @run_time AS processing_timestamp
  FROM `${ops}.server_metrics_checked`
  WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
    AND reason IS NOT NULL
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  AND DATE(target.event_timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY)
    AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  pipeline, layer, step, reason, message, payload, payload_encoding, source,
  event_timestamp, processing_timestamp
) VALUES (
  pipeline, layer, step, reason, message, payload, payload_encoding, source,
  event_timestamp, processing_timestamp
);
