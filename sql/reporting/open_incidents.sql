-- Looker Studio: the incidents still firing (no resolution yet), oldest first: what an
-- operator on call looks at.
CREATE OR REPLACE VIEW `${reporting}.open_incidents`
OPTIONS(description="Incidents still open: server, severity, since, rules, signals, peaks") AS
SELECT
  incident_id, started_at, fired_at, metric_date AS day,
  COALESCE(server_name, server_id) AS server,
  server_id, location, severity, families, rules, signal_count, last_signal_at, peaks
FROM `${gold}.alert_incidents`
WHERE fired_at IS NOT NULL  -- one that lapsed while pending never paged
QUALIFY ROW_NUMBER() OVER (PARTITION BY incident_id ORDER BY pane_index DESC) = 1
  AND resolved_at IS NULL;
