-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.alert_notifications` (
  incident_id STRING NOT NULL OPTIONS(description="The incident (alert_incidents.incident_id)"),
  state STRING NOT NULL OPTIONS(description="firing, escalated, repeated (still firing after the rules' repeat_interval) or resolved"),
  changed_at TIMESTAMP NOT NULL OPTIONS(description="Event time of the change"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of changed_at"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  severity STRING NOT NULL OPTIONS(description="The incident's severity after the change"),
  message STRING NOT NULL OPTIONS(description="Human-readable notification")
)
PARTITION BY metric_date
CLUSTER BY server_id
OPTIONS(description="What a pager sends: each incident's state changes (firing, escalated, resolved), each once.");
