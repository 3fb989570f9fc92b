-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.alert_rules` (
  name STRING NOT NULL OPTIONS(description="Rule name"),
  metric STRING NOT NULL OPTIONS(description="Silver column the rule watches"),
  severity STRING NOT NULL OPTIONS(description="info | warning | critical"),
  above FLOAT64 OPTIONS(description="Fires when the metric is above this"),
  below FLOAT64 OPTIONS(description="Fires when the metric is below this")
)
OPTIONS(description="The alert rules: one row per rule, exactly one of above or below.");
