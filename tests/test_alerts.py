"""What a pager sends on Pub/Sub (``--alerts-topic``), against the official emulator: every
notification of ``alert_notifications`` once, with attributes to filter on, in batch and
in streaming (where an early pane pages nothing); a missing topic is one line before
anything runs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.cli import main
from beam_pipelines.io.alerts import PublishAlerts, message_of, notification_key
from beam_pipelines.ops.pubsub import setup
from schemas.server_metrics import ALERT_SIGNALS
from tests.conftest import streaming_pipeline
from tests.test_pubsub import names, pull_all
from transforms.server_metrics.incidents import IncidentsFromSignals
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.windowing import Streaming

TestStream.__test__ = False

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def _signal(minute: int, timing: str = "ON_TIME", severity: str = "warning") -> dict:
    start = T0 + timedelta(minutes=minute)
    row = {name: None for name in ALERT_SIGNALS.names}
    row.update(window_start=start, window_end=start + timedelta(minutes=1),
               metric_date=start.date(), pane_index=0, pane_timing=timing,
               server_id="srv-1", server_name="web-server-001", server_type="web",
               location="us-east", family="threshold", rule="high_cpu", severity=severity,
               metric="cpu_usage", observed_value=97.0,
               message="cpu_usage above 90 on web-server-001")
    return row


def _notification(state: str = "firing") -> dict:
    at = T0 + timedelta(minutes=1)
    return {"incident_id": "srv-1/2026-01-05T10:00:00+00:00", "state": state,
            "changed_at": at, "metric_date": at.date(), "server_id": "srv-1",
            "server_name": "web-server-001", "server_type": "web", "location": "us-east",
            "severity": "warning", "message": "web-server-001: warning incident"}


def test_a_message_carries_the_notification_and_attributes_to_filter_on():
    data, attributes = message_of(_notification())
    assert json.loads(data)["message"] == "web-server-001: warning incident"
    assert attributes == {"event_id": notification_key(_notification()), "state": "firing",
                          "severity": "warning", "server_id": "srv-1",
                          "incident_id": "srv-1/2026-01-05T10:00:00+00:00",
                          "event_time": "2026-01-05T10:01:00+00:00"}
    assert notification_key(_notification("resolved")) != notification_key(_notification())


def test_a_batch_run_publishes_every_notification_once(pubsub_emulator, tmp_path):
    topic, subscription = names()
    setup(topic, subscription)
    lake = tmp_path / "lake"
    assert main(["--sample-duration", "20m", "--sample-servers", "4", "--output-dir",
                 str(lake), "--alerts-topic", topic, "--no-summary"]) == 0
    messages = pull_all(subscription)
    with connect_catalog(lake) as con:
        notes = con.execute("select incident_id, state, server_id "
                            "from alert_notifications").fetchall()
        signals = con.execute("select count(*) from alert_signals").fetchone()[0]
    assert notes and len(messages) == len(notes) < signals
    assert sorted((m.attributes["incident_id"], m.attributes["state"],
                   m.attributes["server_id"]) for m in messages) == sorted(notes)
    assert len({m.attributes["event_id"] for m in messages}) == len(messages)
    assert {m.attributes["state"] for m in messages} >= {"firing", "resolved"}


def test_streaming_pages_once_and_never_for_an_early_pane(pubsub_emulator):
    topic, subscription = names()
    setup(topic, subscription)
    stream = (TestStream()
              .add_elements([TimestampedValue(_signal(0, "EARLY", "critical"),
                                              T0.timestamp() + 59)])
              .add_elements([TimestampedValue(_signal(0), T0.timestamp() + 59),
                             TimestampedValue(_signal(1), T0.timestamp() + 119)])
              .advance_watermark_to(T0.timestamp() + 300)
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        paged = p | stream | IncidentsFromSignals(ServerMetricsRules(), Streaming())
        paged["notifications"] | PublishAlerts(topic)
    messages = pull_all(subscription)
    assert sorted(m.attributes["state"] for m in messages) == ["firing", "resolved"]
    # the early pane's critical never reached the incident
    assert {m.attributes["severity"] for m in messages} == {"warning"}


def test_a_missing_or_malformed_alerts_topic_is_one_line(pubsub_emulator, tmp_path, capsys):
    assert main(["--sample-duration", "5m", "--output-dir", str(tmp_path), "--alerts-topic",
                 "projects/test-project/topics/never-created"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert main(["--output-dir", str(tmp_path), "--alerts-topic", "alerts"]) == 2
    assert "is not a topic path" in capsys.readouterr().err
