-- Looker Studio: one row per incident (what a pager sent), its latest state (streaming
-- writes an incident when it fires, escalates and resolves), newest first in the report.
CREATE OR REPLACE VIEW `${reporting}.incidents_feed`
OPTIONS(description="Incidents: server, severity, started, fired, resolved (null while open), minutes, rules, signals, peaks") AS
SELECT
  incident_id, started_at, fired_at, resolved_at, metric_date AS day,
  COALESCE(server_name, server_id) AS server,
  server_id, location, severity,
  IF(resolved_at IS NULL, 'open', 'resolved') AS status,
  TIMESTAMP_DIFF(COALESCE(resolved_at, last_signal_at), started_at, SECOND) / 60 AS minutes,
  families, rules, signal_count, last_signal_at, peaks
FROM `${gold}.alert_incidents`
WHERE fired_at IS NOT NULL  -- one that lapsed while pending never paged
QUALIFY ROW_NUMBER() OVER (PARTITION BY incident_id ORDER BY pane_index DESC) = 1;
