-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.alert_incidents (
  "incident_id" text NOT NULL,
  "started_at" timestamptz NOT NULL,
  "fired_at" timestamptz NOT NULL,
  "resolved_at" timestamptz,
  "metric_date" date NOT NULL,
  "pane_index" bigint NOT NULL,
  "server_id" text NOT NULL,
  "server_name" text,
  "server_type" text,
  "location" text,
  "severity" text NOT NULL,
  "families" text NOT NULL,
  "rules" text NOT NULL,
  "signal_count" bigint NOT NULL,
  "last_signal_at" timestamptz NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_incidents_key ON telemetry.alert_incidents ("server_id", "started_at") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS alert_incidents_metric_date ON telemetry.alert_incidents ("metric_date");
COMMENT ON TABLE telemetry.alert_incidents IS 'Incidents: per server, the alert signals (alert_events) that kept coming within the rules'' keep_firing_for of each other, once they fired (see the rules'' incidents section); one row per incident, its latest state.';
