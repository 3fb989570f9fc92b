-- Looker Studio: the feed reports built on this view's name read. It listed every alert
-- signal (17,000 rows for a 20-server sample); it is the incident feed now, what a pager
-- sent (the signals are in alert_signals_feed).
CREATE OR REPLACE VIEW `${reporting}.alert_events_feed`
OPTIONS(description="The incident feed (as incidents_feed): one row per incident that paged, its latest state") AS
SELECT * FROM `${reporting}.incidents_feed`;
