-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.alerts (
  "window_start" timestamptz NOT NULL,
  "window_end" timestamptz NOT NULL,
  "metric_date" date NOT NULL,
  "pane_index" bigint NOT NULL,
  "pane_timing" text NOT NULL,
  "server_id" text NOT NULL,
  "server_name" text,
  "server_type" text,
  "location" text,
  "rule" text NOT NULL,
  "severity" text NOT NULL,
  "metric" text,
  "threshold" double precision,
  "observed_value" double precision,
  "breach_count" bigint NOT NULL,
  "message" text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_key ON telemetry.alerts ("server_id", "server_name", "server_type", "location", "window_start", "rule") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS alerts_metric_date ON telemetry.alerts ("metric_date");
COMMENT ON TABLE telemetry.alerts IS 'One row per server, window and rule that fired.';
