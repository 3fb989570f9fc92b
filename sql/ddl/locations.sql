-- Generated from schemas/ by `make schema-docs`; do not edit by hand.
CREATE TABLE IF NOT EXISTS `${ops}.locations` (
  location STRING NOT NULL OPTIONS(description="Location name, e.g. us-east"),
  latitude FLOAT64 NOT NULL OPTIONS(description="Latitude (°)"),
  longitude FLOAT64 NOT NULL OPTIONS(description="Longitude (°)")
)
OPTIONS(description="Coordinates of each data-centre location, for maps.");
