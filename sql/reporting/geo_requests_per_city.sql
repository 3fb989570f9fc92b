-- Seed 004's geolocation query, over the enriched silver table: requests per city with
-- an average point (seed 004 averaged the longitude and latitude of each city's hits).
CREATE OR REPLACE VIEW `${reporting}.geo_requests_per_city`
OPTIONS(description="Requests per day and city from silver with a point, unknowns kept") AS
SELECT
  event_date AS day,
  geo_country_code AS country_code,
  COALESCE(geo_country, '(unknown)') AS country,
  COALESCE(geo_city, '(unknown)') AS city,
  geo_status,
  COUNT(*) AS requests,
  AVG(geo_latitude) AS latitude,
  AVG(geo_longitude) AS longitude
FROM `${silver}.web_logs_silver`
GROUP BY day, country_code, country, city, geo_status;
