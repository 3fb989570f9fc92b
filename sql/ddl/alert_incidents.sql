-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.alert_incidents` (
  incident_id STRING NOT NULL OPTIONS(description="server_id[/group labels]/started_at: the incident's key in notifications"),
  started_at TIMESTAMP NOT NULL OPTIONS(description="Start of its first signal's window"),
  fired_at TIMESTAMP OPTIONS(description="When it fired (the end of the signal that made it fire); null for one that lapsed while pending, which never paged"),
  resolved_at TIMESTAMP OPTIONS(description="keep_firing_for after its last signal's end; null while open"),
  metric_date DATE NOT NULL OPTIONS(description="UTC date of started_at"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this incident's row was written before (streaming updates it when it fires, escalates and resolves; 0 in batch)"),
  server_id STRING NOT NULL OPTIONS(description="Stable identifier of the server"),
  server_name STRING OPTIONS(description="Human-readable server name, e.g. web-server-003"),
  server_type STRING OPTIONS(description="Role of the server"),
  location STRING OPTIONS(description="Data-centre region, e.g. us-east"),
  severity STRING NOT NULL OPTIONS(description="The highest severity of its signals"),
  families STRING NOT NULL OPTIONS(description="Families of its signals, comma-separated (threshold, matrix, ewma)"),
  rules STRING NOT NULL OPTIONS(description="Rules of its signals, comma-separated"),
  signal_count INT64 NOT NULL OPTIONS(description="Signals grouped in it"),
  last_signal_at TIMESTAMP NOT NULL OPTIONS(description="End of its last signal's window (or, under a rule's hysteresis, of the last minute that held it)"),
  peaks STRING OPTIONS(description="The highest value its signals observed, per metric: 'cpu_usage 99.2, temperature_c 93.1' (a matrix signal's metric is its pair)")
)
PARTITION BY metric_date
CLUSTER BY server_id
OPTIONS(description="Incidents: per server (and the rules' group_by), the alert signals (alert_signals) that kept coming; those that fired paged, those that lapsed while pending did not (fired_at null; see the rules' incidents section). One row per incident, its latest state.");
