-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.anomalies` (
  timestamp TIMESTAMP NOT NULL OPTIONS(description="Event time of the anomalous measurement (UTC)"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of the event"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  metric STRING NOT NULL OPTIONS(description="Metric scored"),
  value FLOAT64 NOT NULL OPTIONS(description="The measurement"),
  expected FLOAT64 NOT NULL OPTIONS(description="EWMA of the metric before this value"),
  std FLOAT64 NOT NULL OPTIONS(description="Standard deviation the value was scored against"),
  score FLOAT64 NOT NULL OPTIONS(description="|value − expected| / std"),
  rule STRING NOT NULL OPTIONS(description="ewma_3sigma"),
  severity STRING NOT NULL OPTIONS(description="info | warning | critical")
)
PARTITION BY metric_date
CLUSTER BY server_id, metric
OPTIONS(description="Seed 003's EWMA + 3σ anomalies, per server and metric, scored in event-time order against the state before each value.");
