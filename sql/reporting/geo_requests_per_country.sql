-- Seed 004's geolocation query, over the enriched silver table: requests per country.
-- Silver is geolocated by the pipeline (no NET.* network-mask join), and addresses that
-- could not be located are counted as "(unknown)" with their geo_status, not dropped.
CREATE OR REPLACE VIEW `${reporting}.geo_requests_per_country`
OPTIONS(description="Requests per day and country from silver, unknowns kept") AS
SELECT
  event_date AS day,
  geo_country_code AS country_code,
  COALESCE(geo_country, '(unknown)') AS country,
  geo_status,
  COUNT(*) AS requests
FROM `${silver}.web_logs_silver`
GROUP BY day, country_code, country, geo_status;
