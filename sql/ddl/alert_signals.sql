-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.alert_signals` (
  window_start TIMESTAMP NOT NULL OPTIONS(description="Start of the event-time window (inclusive)"),
  window_end TIMESTAMP NOT NULL OPTIONS(description="End of the event-time window (exclusive)"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of the window"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this window fired before (0 in batch); the row with the highest index for a key is the current answer"),
  pane_timing STRING NOT NULL OPTIONS(description="EARLY (watermark not yet past the window), ON_TIME or LATE (late data within the allowed lateness)"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  family STRING NOT NULL OPTIONS(description="Which detector raised it"),
  rule STRING NOT NULL OPTIONS(description="Rule within the family"),
  severity STRING NOT NULL OPTIONS(description="info | warning | critical"),
  metric STRING OPTIONS(description="Metric(s) the rule watches"),
  observed_value FLOAT64 OPTIONS(description="The value that fired (extreme, average or measurement)"),
  message STRING NOT NULL OPTIONS(description="Human-readable description")
)
PARTITION BY metric_date
CLUSTER BY server_id, family
OPTIONS(description="Every alert of every rule in one feed (threshold rules, the alert matrix, the EWMA detector): the table chat and paging integrations read.");
