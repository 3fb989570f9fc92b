-- Operations: rejected records per day, pipeline, layer and reason: the pipelines' and
-- the scheduled SQL's (which has a table of its own, see scheduled_dead_letters).
CREATE OR REPLACE VIEW `${reporting}.dead_letters_daily`
OPTIONS(description="Dead letters per day, pipeline, layer and reason") AS
SELECT
  DATE(processing_timestamp) AS day, pipeline, layer, step, reason,
  COUNT(*) AS records
FROM (
  SELECT pipeline, layer, step, reason, processing_timestamp FROM `${ops}.dead_letters`
  UNION ALL
  SELECT pipeline, layer, step, reason, processing_timestamp
  FROM `${ops}.scheduled_dead_letters`
)
GROUP BY day, pipeline, layer, step, reason;
