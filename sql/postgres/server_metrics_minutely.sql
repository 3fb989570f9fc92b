-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.server_metrics_minutely (
  "window_start" timestamptz NOT NULL,
  "window_end" timestamptz NOT NULL,
  "metric_date" date NOT NULL,
  "pane_index" bigint NOT NULL,
  "pane_timing" text NOT NULL,
  "server_id" text NOT NULL,
  "server_name" text,
  "server_type" text,
  "location" text,
  "record_count" bigint NOT NULL,
  "min_cpu_usage" double precision,
  "avg_cpu_usage" double precision,
  "max_cpu_usage" double precision,
  "min_memory_usage" double precision,
  "avg_memory_usage" double precision,
  "max_memory_usage" double precision,
  "avg_disk_io" double precision,
  "total_network_in" double precision,
  "total_network_out" double precision,
  "avg_temperature_c" double precision,
  "max_temperature_c" double precision,
  "avg_power_watts" double precision,
  "high_utilization_count" bigint NOT NULL,
  "high_utilization_pct" double precision
);
CREATE UNIQUE INDEX IF NOT EXISTS server_metrics_minutely_key ON telemetry.server_metrics_minutely ("server_id", "server_name", "server_type", "location", "window_start") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS server_metrics_minutely_window_start ON telemetry.server_metrics_minutely ("window_start");
COMMENT ON TABLE telemetry.server_metrics_minutely IS 'Per server and minute: the chart-resolution view of the fleet.';
