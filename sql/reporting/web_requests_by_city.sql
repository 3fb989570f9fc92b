-- Looker Studio: the city map and top-10 cities (seed 004). city_point is
-- "latitude,longitude" for Looker Studio's geo fields; null where the city is unknown.
CREATE OR REPLACE VIEW `${reporting}.web_requests_by_city`
OPTIONS(description="Requests per hour and city with a map point (latest pane)") AS
SELECT
  window_start AS hour_start, DATE(window_start) AS day,
  country_code, country, geo_status, region, city,
  IF(latitude IS NULL OR longitude IS NULL, NULL,
     CONCAT(CAST(latitude AS STRING), ',', CAST(longitude AS STRING))) AS city_point,
  requests, bytes, errors_4xx, errors_5xx, error_rate, bot_requests, unique_visitors
FROM `${gold}.web_traffic_by_city`
WHERE granularity = 'hour'
-- BigQuery refuses to partition a window by FLOAT64: the point, as text, stands in for
-- the coordinates of the key.
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY window_start, country_code, country, geo_status, region, city,
    CAST(latitude AS STRING), CAST(longitude AS STRING)
  ORDER BY pane_index DESC) = 1;
