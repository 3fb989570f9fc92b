-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${gold}.web_traffic_by_status` (
  window_start TIMESTAMP NOT NULL OPTIONS(description="Start of the event-time window (inclusive)"),
  window_end TIMESTAMP NOT NULL OPTIONS(description="End of the event-time window (exclusive)"),
  granularity STRING NOT NULL OPTIONS(description="Window size: minute, hour (or N s)"),
  pane_index INT64 NOT NULL OPTIONS(description="How many times this window fired before (0 in batch); the row with the highest index for a key is the current answer"),
  pane_timing STRING NOT NULL OPTIONS(description="EARLY, ON_TIME or LATE"),
  status INT64 OPTIONS(description="HTTP status code; null for requests logged with status '-'"),
  status_class STRING NOT NULL OPTIONS(description="1xx … 5xx, or - when no status was logged"),
  requests INT64 NOT NULL OPTIONS(description="Requests in the window"),
  bytes INT64 NOT NULL OPTIONS(description="Response bytes sent ('-' counts as 0) (B)"),
  errors_4xx INT64 NOT NULL OPTIONS(description="Requests answered 4xx"),
  errors_5xx INT64 NOT NULL OPTIONS(description="Requests answered 5xx"),
  error_rate FLOAT64 OPTIONS(description="(4xx + 5xx) / requests"),
  bot_requests INT64 NOT NULL OPTIONS(description="Requests by crawlers, monitors and scripts"),
  unique_visitors INT64 NOT NULL OPTIONS(description="Distinct visitor_id, the estimate of visitor_sketch: exact up to about 300, then within about 1.6 % (one standard error)"),
  visitor_sketch BYTES OPTIONS(description="Apache DataSketches HLL sketch (lg_k 12, HLL_4) of visitor_id: merge rows' sketches to count the visitors of several windows, countries or cities (null where the scheduled SQL built the row)")
)
PARTITION BY DATE(window_start)
CLUSTER BY status_class
OPTIONS(description="Requests per window and HTTP status.");
