-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.scheduled_dead_letters` (
  pipeline STRING NOT NULL OPTIONS(description="Pipeline that rejected the record, e.g. server_metrics"),
  layer STRING NOT NULL OPTIONS(description="bronze | silver | gold | sink"),
  step STRING NOT NULL OPTIONS(description="Labelled step that rejected it"),
  reason STRING NOT NULL OPTIONS(description="Machine-readable reason code (see docs)"),
  message STRING NOT NULL OPTIONS(description="Human-readable explanation"),
  payload STRING NOT NULL OPTIONS(description="The record exactly as the step received it"),
  payload_encoding STRING NOT NULL OPTIONS(description="utf-8, or base64 for bytes that were not UTF-8"),
  source STRING OPTIONS(description="Where the record came from: file path or subscription"),
  event_timestamp TIMESTAMP OPTIONS(description="Event time of the record, when it could be read"),
  processing_timestamp TIMESTAMP NOT NULL OPTIONS(description="When the record was rejected")
)
PARTITION BY DATE(event_timestamp)
CLUSTER BY layer, reason
OPTIONS(description="Bronze rows the scheduled silver SQL rejected (BigQuery only), with the same fields as dead_letters.");
