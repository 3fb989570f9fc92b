"""Alert signals → incidents and notifications: the lifecycle alone, fed in chunks as
streaming feeds it, in TestStream (early panes, late signals), and batch = streaming on the
whole medallion."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as _TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.conftest import fixed_clock, run_and_collect
from transforms.bronze import RawRecord
from transforms.medallion import ServerMetricsMedallion
from transforms.rules import Incidents, ServerMetricsRules
from transforms.server_metrics.incidents import (
    END_OF_TIME,
    IncidentsFromSignals,
    IncidentTracker,
    latest_rows,
)
from transforms.windowing import StreamingConfig

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
US = 1_000_000
RULES = Incidents(for_s=60, keep_firing_for_s=300, fire_at_once=("critical",))


def _us(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * US)


def sig(start_s: float, length_s: float = 60, severity: str = "warning",
        family: str = "threshold", rule: str = "high_cpu", server: str = "s1") -> tuple:
    return (_us(start_s), _us(start_s + length_s), family, rule, severity, server,
            f"{server}-name", "web", "us-east")


def track(signals, rules=RULES):
    tracker = IncidentTracker(rules)
    tracker.feed(sorted(signals))
    tracker.advance(END_OF_TIME)
    return tracker


def test_a_pending_incident_that_never_fires_pages_nothing():
    """Two 30-second signals 20 s apart span 50 s < for (60 s): pending, then resolved."""
    tracker = track([sig(0, 30, family="matrix", rule="cpu_memory"),
                     sig(20, 30, family="matrix", rule="cpu_memory")])
    assert tracker.incidents == [] and tracker.notifications == []


def test_an_incident_fires_after_for_and_resolves_after_keep_firing_for():
    tracker = track([sig(0), sig(60), sig(120 + 299)])  # the third starts 4m59s after 2:00
    (incident,) = latest_rows(tracker.incidents)
    assert incident["started_at"] == T0
    assert incident["fired_at"] == T0 + timedelta(seconds=60)  # the first signal spans 60 s
    assert incident["last_signal_at"] == T0 + timedelta(seconds=479)
    assert incident["resolved_at"] == T0 + timedelta(seconds=479 + 300)
    assert incident["signal_count"] == 3 and incident["severity"] == "warning"
    assert [(n["state"], n["changed_at"]) for n in tracker.notifications] == [
        ("firing", T0 + timedelta(seconds=60)), ("resolved", T0 + timedelta(seconds=779))]
    # a signal starting after keep_firing_for of quiet opens a new incident
    assert len(latest_rows(track([sig(0), sig(60 + 300 + 1)]).incidents)) == 2
    assert len(latest_rows(track([sig(0), sig(60 + 300)]).incidents)) == 1


def test_a_critical_signal_fires_at_once_and_an_escalation_is_sent_once():
    tracker = track([sig(0, 10, family="ewma", rule="ewma_3sigma_cpu_usage"),
                     sig(5, 60), sig(30, 60, "critical", rule="overheating"),
                     sig(40, 60, "critical", rule="overheating")])
    assert [n["state"] for n in tracker.notifications] == ["firing", "escalated", "resolved"]
    (incident,) = latest_rows(tracker.incidents)
    assert incident["severity"] == "critical"
    assert incident["families"] == "ewma,threshold"
    assert incident["rules"] == "ewma_3sigma_cpu_usage,high_cpu,overheating"
    critical = track([sig(0, 0, "critical", rule="overheating")])
    assert [n["state"] for n in critical.notifications] == ["firing", "resolved"]


def test_a_lone_pair_of_signals_pages_only_when_min_signals_allows():
    """Noise gives a 3σ value now and one a minute later; a fault, a burst. With
    ``min_signals`` 4 the pair stays pending (then resolves unpaged), the burst pages."""
    rules = Incidents(for_s=60, keep_firing_for_s=300, min_signals=4)
    assert track([sig(0, 10, family="ewma"), sig(70, 10, family="ewma")], rules).incidents \
        == []
    burst = [sig(0, 10, family="ewma", rule=r) for r in ("a", "b", "c")] + [sig(65)]
    (incident,) = latest_rows(track(burst, rules).incidents)
    assert incident["signal_count"] == 4 and incident["fired_at"] == T0 + timedelta(seconds=125)


def test_signals_of_a_family_left_out_stay_signals():
    rules = Incidents(for_s=60, keep_firing_for_s=300, families=("threshold", "ewma"))
    tracker = track([sig(0, 30, family="matrix", rule="network_disk")] * 5, rules)
    assert tracker.incidents == [] and tracker.notifications == []
    assert latest_rows(track([sig(0), sig(60)], rules).incidents)


def test_servers_have_incidents_of_their_own():
    tracker = IncidentTracker(RULES)
    tracker.feed(sorted([sig(0, server="a"), sig(30, server="a"), sig(10, server="b")]))
    # the tracker is per server: the caller keys by server, so feed them apart
    assert tracker.open.identity[0] == "a"


@pytest.mark.parametrize("seed", range(5))
def test_fed_in_chunks_as_streaming_feeds_it_gives_the_same_incidents(seed):
    """Streaming feeds the signals starting before each watermark in order, then advances
    to it; any cut gives what the whole run at once gives."""
    rng = random.Random(seed)
    signals, t = [], 0.0
    for _ in range(300):
        t += rng.expovariate(1 / 30) if rng.random() < 0.8 else rng.expovariate(1 / 900)
        signals.append(sig(t, rng.choice([0, 30, 60]),
                           rng.choice(["warning"] * 9 + ["critical"]),
                           rule=rng.choice(["high_cpu", "cpu_memory", "overheating"])))
    signals.sort()
    whole = track(signals)
    tracker, state, rows, notes = None, None, [], []
    cuts = sorted(rng.sample(range(len(signals)), 40)) + [len(signals)]
    last = 0
    for cut in cuts:
        horizon = signals[cut][0] if cut < len(signals) else END_OF_TIME
        tracker = IncidentTracker(RULES, state)
        tracker.feed(signals[last:cut])
        tracker.advance(horizon)
        state, last = tracker.open, cut
        rows += tracker.incidents
        notes += tracker.notifications
    assert latest_rows(rows) == latest_rows(whole.incidents)
    assert notes == whole.notifications
    assert len(latest_rows(rows)) > 10


# ---- streaming ----------------------------------------------------------------------
def _row(signal: tuple, pane_timing: str = "ON_TIME") -> dict:
    start, end, family, rule, severity, server, name, kind, location = signal
    at = lambda us: datetime.fromtimestamp(us / US, timezone.utc)  # noqa: E731
    return {"window_start": at(start), "window_end": at(end), "metric_date": at(start).date(),
            "pane_index": 0, "pane_timing": pane_timing, "server_id": server,
            "server_name": name, "server_type": kind, "location": location,
            "family": family, "rule": rule, "severity": severity, "metric": "cpu_usage",
            "observed_value": 1.0, "message": "m"}


def _stream(rounds, rules=None):
    """rounds: [(rows, watermark seconds or None)] → collected incidents, notifications."""
    rules = rules or ServerMetricsRules(incidents=RULES)
    stream = _TestStream()
    for rows, watermark in rounds:
        stream = stream.add_elements([TimestampedValue(r, r["window_end"].timestamp())
                                      for r in rows])
        if watermark is not None:
            stream = stream.advance_watermark_to((T0 + timedelta(seconds=watermark))
                                                 .timestamp())
    stream = stream.advance_watermark_to_infinity()
    return run_and_collect(lambda p: p | stream | IncidentsFromSignals(rules, streaming=True),
                           streaming=True)


def _latest(rows):
    out = {}
    for r in rows:
        if r["incident_id"] not in out or r["pane_index"] > out[r["incident_id"]]["pane_index"]:
            out[r["incident_id"]] = r
    return sorted(({**r, "pane_index": 0} for r in out.values()),
                  key=lambda r: r["incident_id"])


def test_streaming_gives_what_the_tracker_gives_as_the_watermark_moves():
    signals = [sig(0), sig(50), sig(100, 30, family="matrix", rule="cpu_memory"),
               sig(900), sig(950, 0, "critical", rule="overheating"), sig(2000, 10)]
    rounds = [([_row(s) for s in signals[:3]], 200), ([_row(s) for s in signals[3:5]], 1100),
              ([_row(signals[5])], None)]
    out = _stream(rounds)
    whole = track(signals)
    assert _latest(out["incidents"]) == latest_rows(whole.incidents)
    key = lambda n: (n["incident_id"], n["changed_at"], n["state"])  # noqa: E731
    assert sorted(out["notifications"], key=key) == sorted(whole.notifications, key=key)
    # the first incident was written when it fired and again when it resolved
    first = [r for r in out["incidents"] if r["started_at"] == T0]
    assert [r["pane_index"] for r in sorted(first, key=lambda r: r["pane_index"])] == [0, 1]
    assert first[0]["resolved_at"] is None and first[1]["resolved_at"] is not None


def test_early_panes_never_open_or_escalate_an_incident():
    early = [_row(sig(0, 60, "critical", rule="overheating"), "EARLY"),
             _row(sig(10, 60), "EARLY")]
    out = _stream([(early, 500)])
    assert out["incidents"] == [] and out["notifications"] == []
    # and an on-time pane of the same window does
    out = _stream([(early + [_row(sig(0, 60, "critical", rule="overheating"))], 500)])
    assert [n["state"] for n in out["notifications"]] == ["firing", "resolved"]


@pytest.mark.parametrize("timing", ["ON_TIME", "LATE"])
def test_a_signal_after_its_time_was_taken_or_of_a_late_pane_changes_nothing(timing):
    """A signal whose start the tracker has already passed cannot be put in order, and a
    late pane's arrival order is no run's to reproduce: counted, not applied (the incident
    already resolved stays as it was)."""
    first = [_row(sig(0)), _row(sig(50))]
    stale = [_row(sig(30, 60, "critical", rule="overheating"), timing)]
    out = _stream([(first, 1000), (stale, None)])
    assert [n["state"] for n in out["notifications"]] == ["firing", "resolved"]
    assert {r["severity"] for r in out["incidents"]} == {"warning"}
    # a late pane alone opens nothing
    assert _stream([([_row(sig(0, 120, "critical"), "LATE")], None)])["incidents"] == []


# ---- the whole medallion: batch = streaming ------------------------------------------
def test_batch_and_streaming_give_the_same_incidents():
    from tests.test_streaming import _events

    rules, events = ServerMetricsRules(), _events()

    def batch(p):
        raw = p | beam.Create([RawRecord(text, "in") for _, text in events])
        return raw | ServerMetricsMedallion(rules, clock=fixed_clock)

    stream = _TestStream()
    for ts, text in events:
        stream = stream.add_elements([TimestampedValue(RawRecord(text, "in"), ts)])
    stream = stream.advance_watermark_to_infinity()

    def streaming(p):
        return p | stream | ServerMetricsMedallion(
            rules, clock=fixed_clock, streaming=StreamingConfig(allowed_lateness_s=3600))

    b, s = run_and_collect(batch), run_and_collect(streaming, streaming=True)
    assert b["alert_incidents"] and b["alert_notifications"]
    assert _latest(s["alert_incidents"]) == _latest(b["alert_incidents"])
    key = lambda n: (n["incident_id"], n["changed_at"], n["state"])  # noqa: E731
    assert sorted(s["alert_notifications"], key=key) == sorted(b["alert_notifications"],
                                                               key=key)
    # every notification is of an incident; each fired once and resolved once
    ids = {r["incident_id"] for r in b["alert_incidents"]}
    assert {n["incident_id"] for n in b["alert_notifications"]} == ids
    states = [n["state"] for n in b["alert_notifications"]]
    assert states.count("firing") == states.count("resolved") == len(ids)
