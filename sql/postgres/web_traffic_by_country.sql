-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.web_traffic_by_country (
  "window_start" timestamptz NOT NULL,
  "window_end" timestamptz NOT NULL,
  "granularity" text NOT NULL,
  "pane_index" bigint NOT NULL,
  "pane_timing" text NOT NULL,
  "country_code" text,
  "country" text NOT NULL,
  "geo_status" text NOT NULL,
  "requests" bigint NOT NULL,
  "bytes" bigint NOT NULL,
  "errors_4xx" bigint NOT NULL,
  "errors_5xx" bigint NOT NULL,
  "error_rate" double precision,
  "bot_requests" bigint NOT NULL,
  "unique_visitors" bigint NOT NULL,
  "visitor_sketch" bytea
);
CREATE UNIQUE INDEX IF NOT EXISTS web_traffic_by_country_key ON telemetry.web_traffic_by_country ("granularity", "window_start", "country_code", "country", "geo_status") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS web_traffic_by_country_window_start ON telemetry.web_traffic_by_country ("window_start");
COMMENT ON TABLE telemetry.web_traffic_by_country IS 'Requests per window and country (seed 004''s requests per country); addresses not located are their own rows.';
