"""Publishing what a pager sends to Pub/Sub (``--alerts-topic``), for chat and paging
integrations: an edge of the pipeline, like the sinks.

Each notification of ``alert_notifications`` (an incident firing, escalated, resolved) is
one JSON message with attributes a subscriber can filter on (``state``, ``severity``,
``server_id``, ``incident_id``), ``event_time`` and an ``event_id`` that is the
notification's key, so a consumer can drop the copies a retried bundle publishes again
(delivery is at least once). The signals themselves (``alert_signals``) are not published:
17,097 of them on the default sample against 455 notifications. Notifications exist once
each in batch and in streaming (where only on-time panes open or change an incident), so
nothing is deduplicated here.

The publisher client lives in ``setup()``; a bundle finishes only when Pub/Sub has
acknowledged all it published, so a failure fails the bundle and the runner retries it
instead of losing the page.
"""
from __future__ import annotations

import hashlib

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics

KEY_FIELDS = ("incident_id", "state", "changed_at")


def notification_key(notification: dict) -> str:
    raw = "|".join(str(notification.get(k)) for k in KEY_FIELDS)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def message_of(notification: dict) -> tuple[bytes, dict[str, str]]:
    data = orjson.dumps(notification, default=str)
    attributes = {"event_id": notification_key(notification),
                  "state": notification["state"], "severity": notification["severity"],
                  "server_id": notification["server_id"],
                  "incident_id": notification["incident_id"],
                  "event_time": notification["changed_at"].isoformat()}
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

    def process(self, notification):
        data, attributes = message_of(notification)
        self._futures.append(self._client.publish(self._topic, data, **attributes))

    def finish_bundle(self):
        for future in self._futures:
            future.result(timeout=120)  # raises: the runner retries the bundle
        self._published.inc(len(self._futures))
        self._futures = []


class PublishAlerts(beam.PTransform):
    """``alert_notifications`` rows → Pub/Sub messages on ``topic``, each once."""

    def __init__(self, topic: str):
        super().__init__()
        self._topic = topic

    def expand(self, notifications):
        return notifications | "Publish" >> beam.ParDo(PublishAlertsFn(self._topic))
