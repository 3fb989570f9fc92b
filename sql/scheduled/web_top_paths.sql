-- web_top_paths: the 20 busiest paths per window, ranked (ties by path), per minute and per hour of event time
-- (granularity 'minute' and 'hour': the pipeline's default --windows), from silver.
-- unique_visitors is exact here (COUNT DISTINCT) and visitor_sketch is left null: the
-- pipeline's DataSketches HLL sketch is exact up to about 300 visitors a row and within
-- about 1.6 % (one standard error) above; the README shows how to merge its sketches.
-- Scheduled every 15 minutes; replaces, in one atomic MERGE, the partitions of
-- DATE(run_time) - 2 days … DATE(run_time). ${silver} and ${gold} are validated ids.
MERGE `${gold}.web_top_paths` AS target
USING (
  WITH silver AS (
    SELECT * FROM `${silver}.web_logs_silver`
    WHERE DATE(timestamp) BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  ),
  windowed AS (
    SELECT *, 'minute' AS granularity, TIMESTAMP_TRUNC(timestamp, MINUTE) AS window_start,
      TIMESTAMP_ADD(TIMESTAMP_TRUNC(timestamp, MINUTE), INTERVAL 1 MINUTE) AS window_end
    FROM silver
    UNION ALL
    SELECT *, 'hour' AS granularity, TIMESTAMP_TRUNC(timestamp, HOUR) AS window_start,
      TIMESTAMP_ADD(TIMESTAMP_TRUNC(timestamp, HOUR), INTERVAL 1 HOUR) AS window_end
    FROM silver
  )
  , traffic AS (
    SELECT
      window_start, window_end, granularity,
      COALESCE(path, request) AS path,
      COUNT(*) AS requests,
      SUM(COALESCE(bytes, 0)) AS bytes,
      COUNTIF(status BETWEEN 400 AND 499) AS errors_4xx,
      COUNTIF(status >= 500) AS errors_5xx,
      (COUNTIF(status BETWEEN 400 AND 499) + COUNTIF(status >= 500)) / COUNT(*) AS error_rate,
      COUNTIF(is_bot) AS bot_requests,
      COUNT(DISTINCT visitor_id) AS unique_visitors,
      CAST(NULL AS BYTES) AS visitor_sketch
    FROM windowed
    GROUP BY window_start, window_end, granularity, COALESCE(path, request)
  )
  SELECT
    window_start, window_end, granularity,
    0 AS pane_index,
    'ON_TIME' AS pane_timing,
    path, requests, bytes, errors_4xx, errors_5xx, error_rate, bot_requests, unique_visitors,
    visitor_sketch,
    ROW_NUMBER() OVER (PARTITION BY granularity, window_start
                       ORDER BY requests DESC, path) AS `rank`
  FROM traffic
  WHERE TRUE
  -- 20: the pipeline's default --top-paths.
  QUALIFY `rank` <= 20
) AS fresh
ON FALSE
WHEN NOT MATCHED BY SOURCE
  AND DATE(target.window_start)
    BETWEEN DATE_SUB(DATE(@run_time), INTERVAL 2 DAY) AND DATE(@run_time)
  THEN DELETE
WHEN NOT MATCHED THEN INSERT (
  window_start, window_end, granularity, pane_index, pane_timing, path, requests, bytes,
  errors_4xx, errors_5xx, error_rate, bot_requests, unique_visitors, visitor_sketch, `rank`
) VALUES (
  window_start, window_end, granularity, pane_index, pane_timing, path, requests, bytes,
  errors_4xx, errors_5xx, error_rate, bot_requests, unique_visitors, visitor_sketch, `rank`
);
