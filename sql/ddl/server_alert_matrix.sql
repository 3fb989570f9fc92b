-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.server_alert_matrix` (
  window_start TIMESTAMP NOT NULL OPTIONS(description="Start of the event-time window (inclusive)"),
  window_end TIMESTAMP NOT NULL OPTIONS(description="End of the event-time window (exclusive)"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of the window"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this window fired before (0 in batch); the row with the highest index for a key is the current answer"),
  pane_timing STRING NOT NULL OPTIONS(description="EARLY (watermark not yet past the window), ON_TIME or LATE (late data within the allowed lateness)"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  record_count INT64 NOT NULL OPTIONS(description="Silver records in this window"),
  avg_cpu_usage FLOAT64 OPTIONS(description="Mean CPU utilisation (%)"),
  avg_memory_usage FLOAT64 OPTIONS(description="Mean memory utilisation (%)"),
  max_network_in FLOAT64 OPTIONS(description="Maximum inbound throughput (kB/s)"),
  max_disk_io FLOAT64 OPTIONS(description="Maximum disk I/O rate (IOPS)"),
  cpu_memory_alert STRING OPTIONS(description="Label of the CPU/memory pair, null when neither average is above its threshold"),
  network_disk_alert STRING OPTIONS(description="Label of the network/disk pair, null when neither maximum is above its threshold")
)
PARTITION BY metric_date
CLUSTER BY server_id
OPTIONS(description="Seed 002's alert matrix: per server, sliding event-time windows (default 30 s every 10 s) with average CPU and memory, maximum network_in and disk_io, and a label per pair of thresholds (null when neither is exceeded). Every silver record is in window/period windows.");
