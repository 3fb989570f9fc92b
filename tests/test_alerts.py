"""The alert feed on Pub/Sub (``--alerts-topic``), against the official emulator: every
alert of ``alert_events`` once, with attributes to filter on; streaming panes that repeat
an alert publish it once; a missing topic is one line before anything runs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.cli import main
from beam_pipelines.io.alerts import PublishAlerts, alert_key, message_of
from beam_pipelines.ops.pubsub import setup
from schemas.server_metrics import ALERT_EVENTS
from tests.conftest import streaming_pipeline
from tests.test_pubsub import names, pull_all

TestStream.__test__ = False

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)


def _alert(minute: int, pane: int = 0, rule: str = "high_cpu") -> dict:
    start = T0 + timedelta(minutes=minute)
    row = {name: None for name in ALERT_EVENTS.names}
    row.update(window_start=start, window_end=start + timedelta(minutes=1),
               metric_date=start.date(), pane_index=pane,
               pane_timing="EARLY" if pane == 0 else "ON_TIME", server_id="srv-1",
               server_name="web-server-001", family="threshold", rule=rule,
               severity="warning", metric="cpu_usage", observed_value=97.0,
               message="cpu_usage above 90 on web-server-001")
    return row


def test_a_message_carries_the_alert_and_attributes_to_filter_on():
    data, attributes = message_of(_alert(0))
    assert json.loads(data)["message"] == "cpu_usage above 90 on web-server-001"
    assert attributes == {"event_id": alert_key(_alert(0)), "family": "threshold",
                          "rule": "high_cpu", "severity": "warning", "server_id": "srv-1",
                          "event_time": "2026-01-05T10:00:00+00:00"}
    # The key ignores the pane: a later pane of the same alert is the same alert.
    assert alert_key(_alert(0, pane=3)) == alert_key(_alert(0))
    assert alert_key(_alert(1)) != alert_key(_alert(0))


def test_a_batch_run_publishes_every_alert_once(pubsub_emulator, tmp_path, capsys):
    topic, subscription = names()
    setup(topic, subscription)
    lake = tmp_path / "lake"
    assert main(["--sample-duration", "20m", "--sample-servers", "4", "--output-dir",
                 str(lake), "--alerts-topic", topic, "--no-summary"]) == 0
    messages = pull_all(subscription)
    with duckdb.connect(str(lake / "lakehouse.duckdb"), read_only=True) as con:
        alerts = con.execute("select family, rule, server_id from alert_events").fetchall()
    assert alerts and len(messages) == len(alerts)
    assert sorted((m.attributes["family"], m.attributes["rule"], m.attributes["server_id"])
                  for m in messages) == sorted(alerts)
    assert len({m.attributes["event_id"] for m in messages}) == len(messages)
    assert {json.loads(m.data)["family"] for m in messages} >= {"threshold", "matrix"}


def test_streaming_panes_that_repeat_an_alert_publish_it_once(pubsub_emulator):
    topic, subscription = names()
    setup(topic, subscription)
    stream = (TestStream()
              .add_elements([TimestampedValue(_alert(0, 0), T0.timestamp() + 59)])
              .add_elements([TimestampedValue(_alert(0, 1), T0.timestamp() + 59),
                             TimestampedValue(_alert(1, 0), T0.timestamp() + 119)])
              .advance_watermark_to(T0.timestamp() + 300)
              .add_elements([TimestampedValue(_alert(0, 2), T0.timestamp() + 59)])
              .advance_watermark_to_infinity())
    with streaming_pipeline() as p:
        p | stream | PublishAlerts(topic, streaming=True)
    messages = pull_all(subscription)
    assert sorted(json.loads(m.data)["window_start"] for m in messages) == [
        "2026-01-05T10:00:00+00:00", "2026-01-05T10:01:00+00:00"]
    first = next(json.loads(m.data) for m in messages
                 if json.loads(m.data)["window_start"].startswith("2026-01-05T10:00"))
    assert first["pane_index"] == 0  # the earliest pane pages, not a later copy


def test_a_missing_or_malformed_alerts_topic_is_one_line(pubsub_emulator, tmp_path, capsys):
    assert main(["--sample-duration", "5m", "--output-dir", str(tmp_path), "--alerts-topic",
                 "projects/test-project/topics/never-created"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert main(["--output-dir", str(tmp_path), "--alerts-topic", "alerts"]) == 2
    assert "is not a topic path" in capsys.readouterr().err
