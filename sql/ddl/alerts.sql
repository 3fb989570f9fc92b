-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.alerts` (
  window_start TIMESTAMP NOT NULL OPTIONS(description="Start of the event-time window (inclusive)"),
  window_end TIMESTAMP NOT NULL OPTIONS(description="End of the event-time window (exclusive)"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of the window"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this window fired before (0 in batch); the row with the highest index for a key is the current answer"),
  pane_timing STRING NOT NULL OPTIONS(description="EARLY (watermark not yet past the window), ON_TIME or LATE (late data within the allowed lateness)"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  rule STRING NOT NULL OPTIONS(description="Name of the rule that fired"),
  severity STRING NOT NULL OPTIONS(description="info | warning | critical"),
  metric STRING OPTIONS(description="Metric the rule watches"),
  threshold FLOAT64 OPTIONS(description="Threshold of the rule"),
  observed_value FLOAT64 OPTIONS(description="Most extreme value seen in the window"),
  breach_count INT64 NOT NULL OPTIONS(description="Records in the window that breached the rule"),
  message STRING NOT NULL OPTIONS(description="Human-readable description")
)
PARTITION BY metric_date
CLUSTER BY server_id, rule
OPTIONS(description="One row per server, window and rule that fired.");
