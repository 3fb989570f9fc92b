-- Looker Studio: every alert of every detector (threshold rules, seed 002's matrix, seed
-- 003's EWMA), the latest pane of each, newest first in the report.
CREATE OR REPLACE VIEW `${reporting}.alert_signals_feed`
OPTIONS(description="Every alert: family, rule, severity, server, window or instant, message") AS
SELECT
  window_start, window_end, metric_date AS day,
  COALESCE(server_name, server_id) AS server,
  server_id, location, family, rule, severity, metric, observed_value, message
FROM `${gold}.alert_signals`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY server_id, server_name, server_type, location, window_start, family, rule
  ORDER BY pane_index DESC) = 1;
