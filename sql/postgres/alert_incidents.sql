-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.alert_incidents (
  "incident_id" text NOT NULL,
  "started_at" timestamptz NOT NULL,
  "fired_at" timestamptz,
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
  "last_signal_at" timestamptz NOT NULL,
  "peaks" text
);
CREATE UNIQUE INDEX IF NOT EXISTS alert_incidents_key ON telemetry.alert_incidents ("incident_id") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS alert_incidents_metric_date ON telemetry.alert_incidents ("metric_date");
COMMENT ON TABLE telemetry.alert_incidents IS 'Incidents: per server (and the rules'' group_by), the alert signals (alert_signals) that kept coming; those that fired paged, those that lapsed while pending did not (fired_at null; see the rules'' incidents section). One row per incident, its latest state.';
