-- Looker Studio: the busiest pages per hour, ranked (latest pane per rank).
CREATE OR REPLACE VIEW `${reporting}.web_top_pages`
OPTIONS(description="The busiest paths per hour, ranked (latest pane)") AS
SELECT
  window_start AS hour_start, DATE(window_start) AS day,
  `rank`, path, requests, bytes, error_rate, bot_requests, unique_visitors
FROM `${gold}.web_top_paths`
WHERE granularity = 'hour'
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY window_start, `rank` ORDER BY pane_index DESC) = 1;
