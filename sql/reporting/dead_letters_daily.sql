-- Operations: rejected records per day, pipeline, layer and reason.
CREATE OR REPLACE VIEW `${reporting}.dead_letters_daily`
OPTIONS(description="Dead letters per day, pipeline, layer and reason") AS
SELECT
  DATE(processing_timestamp) AS day, pipeline, layer, step, reason,
  COUNT(*) AS records
FROM `${ops}.dead_letters`
GROUP BY day, pipeline, layer, step, reason;
