-- Looker Studio: the alert table. One row per server, minute and rule (latest pane).
CREATE OR REPLACE VIEW `${reporting}.alerts_feed`
OPTIONS(description="Alerts: server, window, rule, severity and message (latest pane)") AS
SELECT
  window_start, window_end, metric_date AS day,
  COALESCE(server_name, server_id) AS server,
  server_id, location, rule, severity, metric,
  threshold, observed_value, breach_count, message
FROM `${gold}.alerts`
WHERE TRUE
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY server_id, server_name, server_type, location, window_start, rule
  ORDER BY pane_index DESC) = 1;
