-- Looker Studio: top-10 countries (seed 004). Unlocated addresses stay as "(unknown)"
-- rows with their geo_status, instead of vanishing in an inner join.
CREATE OR REPLACE VIEW `${reporting}.web_requests_by_country`
OPTIONS(description="Requests per hour and country, unknowns kept (latest pane)") AS
SELECT
  window_start AS hour_start, DATE(window_start) AS day,
  country_code, country, geo_status,
  requests, bytes, errors_4xx, errors_5xx, error_rate, bot_requests, unique_visitors
FROM `${gold}.web_traffic_by_country`
WHERE granularity = 'hour'
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY window_start, country_code, country, geo_status ORDER BY pane_index DESC) = 1;
