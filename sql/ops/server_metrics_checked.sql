-- Bronze server metrics with silver's verdict on each record: the canonical columns, and
-- `reason` (null: the record belongs in silver; else why it is a dead letter). The same
-- rules as the pipeline's silver layer (transforms/server_metrics/row_silver.py): declared ranges (a test
-- checks them against schemas/), known server types and their aliases, one record per
-- server and event time. The scheduled queries server_metrics_silver and
-- server_metrics_silver_rejects read it, filtered to the dates they rebuild.
CREATE OR REPLACE VIEW `${ops}.server_metrics_checked`
OPTIONS(description="Bronze server metrics with silver's verdict (reason null: accepted)") AS
WITH canonical AS (
  SELECT
    b.*,
    TRIM(b.server_id) AS canonical_server_id,
    NULLIF(TRIM(b.server_name), '') AS canonical_server_name,
    CASE LOWER(TRIM(b.server_type))
      WHEN 'db' THEN 'database' WHEN 'databases' THEN 'database'
      WHEN 'app' THEN 'application' WHEN 'apps' THEN 'application'
      WHEN 'webserver' THEN 'web' WHEN 'www' THEN 'web'
      WHEN 'fileserver' THEN 'file' WHEN 'storage' THEN 'file'
      WHEN 'memcache' THEN 'cache' WHEN 'redis' THEN 'cache'
      ELSE LOWER(TRIM(b.server_type))
    END AS canonical_server_type,
    NULLIF(REGEXP_REPLACE(LOWER(TRIM(REPLACE(b.location, '_', ' '))), r'\s+', '-'), '')
      AS canonical_location,
    CASE
      WHEN b.cpu_usage NOT BETWEEN 0 AND 100 THEN 'cpu_usage'
      WHEN b.memory_usage NOT BETWEEN 0 AND 100 THEN 'memory_usage'
      WHEN b.disk_io NOT BETWEEN 0 AND 10000000 THEN 'disk_io'
      WHEN b.network_in NOT BETWEEN 0 AND 1000000000 THEN 'network_in'
      WHEN b.network_out NOT BETWEEN 0 AND 1000000000 THEN 'network_out'
      WHEN b.temperature_c NOT BETWEEN -40 AND 150 THEN 'temperature_c'
      WHEN b.power_watts NOT BETWEEN 0 AND 5000 THEN 'power_watts'
      WHEN b.voltage_v NOT BETWEEN 0 AND 1000 THEN 'voltage_v'
      WHEN b.load_1m NOT BETWEEN 0 AND 1000000 THEN 'load_1m'
      WHEN b.load_5m NOT BETWEEN 0 AND 1000000 THEN 'load_5m'
      WHEN b.load_15m NOT BETWEEN 0 AND 1000000 THEN 'load_15m'
      WHEN b.disk_used_gb NOT BETWEEN 0 AND 1000000000 THEN 'disk_used_gb'
      WHEN b.disk_used_pct NOT BETWEEN 0 AND 100 THEN 'disk_used_pct'
    END AS out_of_range
  FROM `${bronze}.server_metrics_bronze` AS b
),
categorised AS (
  SELECT
    *,
    CASE
      WHEN canonical_server_type NOT IN ('web', 'database', 'application', 'cache', 'file')
        THEN 'server_type'
      -- The rules file's locations (none declared: any location).
      WHEN canonical_location IS NOT NULL
        AND EXISTS (SELECT 1 FROM `${ops}.locations`)
        AND canonical_location NOT IN (SELECT location FROM `${ops}.locations`)
        THEN 'location'
    END AS unknown_category
  FROM canonical
),
checked AS (
  SELECT
    *,
    CASE
      WHEN out_of_range IS NOT NULL THEN 'out_of_range'
      WHEN unknown_category IS NOT NULL THEN 'unknown_category'
    END AS check_reason
  FROM categorised
),
ranked AS (
  SELECT
    *,
    -- Which copy of an event survives must not depend on arrival order.
    ROW_NUMBER() OVER (
      PARTITION BY canonical_server_id, timestamp, check_reason IS NULL
      ORDER BY IFNULL(source, ''), IFNULL(CAST(cpu_usage AS STRING), ''),
        IFNULL(CAST(memory_usage AS STRING), ''), IFNULL(CAST(disk_io AS STRING), ''),
        IFNULL(CAST(network_in AS STRING), ''), IFNULL(CAST(network_out AS STRING), ''),
        IFNULL(CAST(temperature_c AS STRING), ''), IFNULL(CAST(power_watts AS STRING), ''),
        IFNULL(CAST(voltage_v AS STRING), ''), IFNULL(CAST(load_1m AS STRING), ''),
        IFNULL(CAST(load_5m AS STRING), ''), IFNULL(CAST(load_15m AS STRING), ''),
        IFNULL(CAST(disk_used_gb AS STRING), ''), IFNULL(CAST(disk_used_pct AS STRING), ''),
        IFNULL(server_name, ''), IFNULL(server_type, ''), IFNULL(location, ''),
        IFNULL(region, ''), IFNULL(os, ''), IFNULL(arch, ''), ingest_timestamp) AS copy
  FROM checked
)
SELECT
  r.*,
  CASE
    WHEN check_reason IS NOT NULL THEN check_reason
    WHEN copy > 1 THEN 'duplicate_event'
  END AS reason,
  (r.cpu_usage > s.high_cpu_threshold OR r.memory_usage > s.high_memory_threshold) IS TRUE
    AS is_high_utilization
FROM ranked AS r
CROSS JOIN `${ops}.pipeline_settings` AS s;
