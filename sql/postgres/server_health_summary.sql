-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).
CREATE TABLE IF NOT EXISTS telemetry.server_health_summary (
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
  "p50_cpu_usage" double precision,
  "p95_cpu_usage" double precision,
  "p99_cpu_usage" double precision,
  "stddev_cpu_usage" double precision,
  "min_memory_usage" double precision,
  "avg_memory_usage" double precision,
  "max_memory_usage" double precision,
  "p50_memory_usage" double precision,
  "p95_memory_usage" double precision,
  "p99_memory_usage" double precision,
  "stddev_memory_usage" double precision,
  "avg_disk_io" double precision,
  "total_network_in" double precision,
  "total_network_out" double precision,
  "avg_temperature_c" double precision,
  "max_temperature_c" double precision,
  "avg_power_watts" double precision,
  "high_utilization_count" bigint NOT NULL,
  "high_utilization_pct" double precision,
  "server_health_score" double precision
);
CREATE UNIQUE INDEX IF NOT EXISTS server_health_summary_key ON telemetry.server_health_summary ("server_id", "server_name", "server_type", "location", "window_start") NULLS NOT DISTINCT;
CREATE INDEX IF NOT EXISTS server_health_summary_metric_date ON telemetry.server_health_summary ("metric_date");
COMMENT ON TABLE telemetry.server_health_summary IS 'Per server and day: utilisation and the health score 100 − (avg_cpu·w_cpu + avg_memory·w_mem + high_util_pct·w_high), clamped to [0, 100] (default weights 0.4, 0.4, 0.2).';
