-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.web_traffic_by_status (
  "window_start" timestamptz NOT NULL,
  "window_end" timestamptz NOT NULL,
  "granularity" text NOT NULL,
  "pane_index" bigint NOT NULL,
  "pane_timing" text NOT NULL,
  "status" bigint,
  "status_class" text NOT NULL,
  "requests" bigint NOT NULL,
  "bytes" bigint NOT NULL,
  "errors_4xx" bigint NOT NULL,
  "errors_5xx" bigint NOT NULL,
  "error_rate" double precision,
  "bot_requests" bigint NOT NULL,
  "unique_visitors" bigint NOT NULL,
  "visitor_sketch" bytea
);
CREATE UNIQUE INDEX IF NOT EXISTS web_traffic_by_status_key ON telemetry.web_traffic_by_status ("granularity", "window_start", "status", "status_class") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS web_traffic_by_status_window_start ON telemetry.web_traffic_by_status ("window_start");
COMMENT ON TABLE telemetry.web_traffic_by_status IS 'Requests per window and HTTP status.';
