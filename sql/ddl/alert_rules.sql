-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.alert_rules` (
  name STRING NOT NULL OPTIONS(description="Rule name"),
  metric STRING NOT NULL OPTIONS(description="Silver column the rule watches"),
  severity STRING NOT NULL OPTIONS(description="info | warning | critical"),
  above FLOAT64 OPTIONS(description="Fires when the metric is above this"),
  below FLOAT64 OPTIONS(description="Fires when the metric is below this"),
  server_type STRING OPTIONS(description="This row's threshold is for servers of this type (null: every type)"),
  server_id STRING OPTIONS(description="This row's threshold is for this server (null: every server)")
)
OPTIONS(description="The alert rules: a row per rule, exactly one of above or below, and a row per threshold of its own a server type or a server has (the most specific row applies).");
