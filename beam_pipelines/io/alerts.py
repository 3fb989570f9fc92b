"""Publishing the alert feed to Pub/Sub (``--alerts-topic``), for chat and paging
integrations: an edge of the pipeline, like the sinks.

Each alert of ``alert_events`` is one JSON message with attributes a subscriber can filter
on (``family``, ``rule``, ``severity``, ``server_id``), ``event_time`` and an ``event_id``
that is the alert's key, so a consumer can drop the copies a retried bundle publishes
again (delivery is at least once). In streaming a window that fires again (early, on
time, late) repeats its alerts: only the first pane that carries an alert publishes it
(a first-seen dedupe in Beam state), so a page goes out once, as early as possible.

The publisher client lives in ``setup()``; a bundle finishes only when Pub/Sub has
acknowledged all it published, so a failure fails the bundle and the runner retries it
instead of losing the alert.
"""
from __future__ import annotations

import hashlib

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from transforms.dedupe import FirstSeenFn

KEY_FIELDS = ("server_id", "window_start", "family", "rule")


def alert_key(alert: dict) -> str:
    raw = "|".join(str(alert.get(k)) for k in KEY_FIELDS)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def message_of(alert: dict) -> tuple[bytes, dict[str, str]]:
    data = orjson.dumps(alert, default=str)
    attributes = {"event_id": alert_key(alert), "family": alert["family"],
                  "rule": alert["rule"], "severity": alert["severity"],
                  "server_id": alert["server_id"],
                  "event_time": alert["window_start"].isoformat()}
    return data, attributes


class PublishAlertsFn(beam.DoFn):
    def __init__(self, topic: str):
        self._topic = topic

    def setup(self):
        from google.cloud import pubsub_v1

        self._client = pubsub_v1.PublisherClient()
        self._published = Metrics.counter("alerts", "published")

    def start_bundle(self):
        self._futures = []

    def process(self, alert):
        data, attributes = message_of(alert)
        self._futures.append(self._client.publish(self._topic, data, **attributes))

    def finish_bundle(self):
        for future in self._futures:
            future.result(timeout=120)  # raises: the runner retries the bundle
        self._published.inc(len(self._futures))
        self._futures = []


class PublishAlerts(beam.PTransform):
    """``alert_events`` rows → Pub/Sub messages on ``topic``, each alert once."""

    def __init__(self, topic: str, streaming: bool):
        super().__init__()
        self._topic = topic
        self._streaming = streaming

    def expand(self, alerts):
        if self._streaming:
            alerts = (alerts
                      | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
                      | "KeyByAlert" >> beam.Map(lambda a: (alert_key(a), a)).with_output_types(
                          beam.typehints.Tuple[str, beam.typehints.Any])
                      | "FirstPane" >> beam.ParDo(FirstSeenFn(
                          pipeline="server_metrics", layer="sink", step="PublishAlerts",
                          reason="duplicate_event", what="alert",
                          remember_s=86400)).with_outputs("dead_letter", main="alerts")
                      ).alerts
        return alerts | "Publish" >> beam.ParDo(PublishAlertsFn(self._topic))
