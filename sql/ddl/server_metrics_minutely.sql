-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.server_metrics_minutely` (
  window_start TIMESTAMP NOT NULL OPTIONS(description="Start of the event-time window (inclusive)"),
  window_end TIMESTAMP NOT NULL OPTIONS(description="End of the event-time window (exclusive)"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of the window"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this window fired before (0 in batch); the row with the highest index for a key is the current answer"),
  pane_timing STRING NOT NULL OPTIONS(description="EARLY (watermark not yet past the window), ON_TIME or LATE (late data within the allowed lateness)"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  record_count INT64 NOT NULL OPTIONS(description="Silver records aggregated in this row"),
  min_cpu_usage FLOAT64 OPTIONS(description="Minimum CPU utilisation (%)"),
  avg_cpu_usage FLOAT64 OPTIONS(description="Mean CPU utilisation (%)"),
  max_cpu_usage FLOAT64 OPTIONS(description="Maximum (peak) CPU utilisation (%)"),
  min_memory_usage FLOAT64 OPTIONS(description="Minimum memory utilisation (%)"),
  avg_memory_usage FLOAT64 OPTIONS(description="Mean memory utilisation (%)"),
  max_memory_usage FLOAT64 OPTIONS(description="Maximum (peak) memory utilisation (%)"),
  avg_disk_io FLOAT64 OPTIONS(description="Mean disk I/O rate (IOPS)"),
  total_network_in FLOAT64 OPTIONS(description="Sum of inbound throughput samples (kB/s·samples)"),
  total_network_out FLOAT64 OPTIONS(description="Sum of outbound throughput samples (kB/s·samples)"),
  avg_temperature_c FLOAT64 OPTIONS(description="Mean temperature (°C)"),
  max_temperature_c FLOAT64 OPTIONS(description="Maximum temperature (°C)"),
  avg_power_watts FLOAT64 OPTIONS(description="Mean power draw (W)"),
  high_utilization_count INT64 NOT NULL OPTIONS(description="Records with is_high_utilization"),
  high_utilization_pct FLOAT64 OPTIONS(description="100 × high_utilization_count / record_count (%)")
)
PARTITION BY DATE(window_start)
CLUSTER BY server_id
OPTIONS(description="Per server and minute: the chart-resolution view of the fleet.");
