-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.pipeline_settings` (
  high_cpu_threshold FLOAT64 NOT NULL OPTIONS(description="cpu_usage above this is high utilisation (%)"),
  high_memory_threshold FLOAT64 NOT NULL OPTIONS(description="memory_usage above this is high utilisation (%)"),
  weight_cpu FLOAT64 NOT NULL OPTIONS(description="Health-score weight of avg_cpu_usage"),
  weight_memory FLOAT64 NOT NULL OPTIONS(description="Health-score weight of avg_memory_usage"),
  weight_high_utilization FLOAT64 NOT NULL OPTIONS(description="Health-score weight of high_utilization_pct")
)
OPTIONS(description="One row: the high-utilisation thresholds and health-score weights.");
