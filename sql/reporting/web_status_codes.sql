-- Looker Studio: the status-code treemap (seed 004).
CREATE OR REPLACE VIEW `${reporting}.web_status_codes`
OPTIONS(description="Requests per hour and HTTP status (latest pane)") AS
SELECT
  window_start AS hour_start, DATE(window_start) AS day,
  status_class, status, requests, bytes, bot_requests, unique_visitors
FROM `${gold}.web_traffic_by_status`
WHERE granularity = 'hour'
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY window_start, status, status_class ORDER BY pane_index DESC) = 1;
