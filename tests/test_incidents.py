"""Alert signals → incidents and notifications: the lifecycle alone, fed in chunks as
streaming feeds it, in TestStream (early panes, late signals), and batch = streaming on the
whole medallion."""
from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream as _TestStream
from apache_beam.transforms.window import TimestampedValue

from tests.conftest import fixed_clock, run_and_collect
from transforms.bronze import RawRecord
from transforms.server_metrics.incidents import (
    END_OF_TIME,
    IncidentsFromSignals,
    IncidentTracker,
    latest_rows,
)
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.server_metrics.rules import Incidents, InhibitRule, Matcher, ServerMetricsRules
from transforms.windowing import Streaming

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
US = 1_000_000
RULES = Incidents(for_s=60, keep_firing_for_s=300, fire_at_once=("critical",))


def _us(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * US)


def sig(start_s: float, length_s: float = 60, severity: str = "warning",
        family: str = "threshold", rule: str = "high_cpu", server: str = "s1",
        value: float | None = 95.0) -> tuple:
    return (_us(start_s), _us(start_s + length_s), family, rule, severity, server,
            f"{server}-name", "web", "us-east", "cpu_usage", value)


def track(signals, rules=RULES):
    tracker = IncidentTracker(rules)
    tracker.feed(sorted(signals))
    tracker.advance(END_OF_TIME)
    return tracker


def paged(tracker) -> list[dict]:
    return [r for r in latest_rows(tracker.incidents) if r["fired_at"] is not None]


def states(tracker) -> list[tuple[str, float]]:
    return [(n["state"], (n["changed_at"] - T0).total_seconds())
            for n in tracker.notifications]


def test_a_pending_incident_that_never_fires_is_kept_and_pages_nothing():
    """Two 30-second signals 20 s apart: their starts are 20 s apart, less than for (60
    s): pending, then it lapses pending_gap (30 s) after the last one ends, unpaged."""
    tracker = track([sig(0, 30, family="matrix", rule="cpu_memory"),
                     sig(20, 30, family="matrix", rule="cpu_memory")])
    (incident,) = latest_rows(tracker.incidents)
    assert incident["fired_at"] is None and tracker.notifications == []
    assert incident["resolved_at"] == T0 + timedelta(seconds=50 + 30)
    assert incident["signal_count"] == 2


def test_an_incident_fires_after_for_and_resolves_after_keep_firing_for():
    tracker = track([sig(0), sig(60), sig(120 + 299)])  # the third starts 4m59s after 2:00
    (incident,) = paged(tracker)
    assert incident["started_at"] == T0
    # the second minute starts `for` after the first: it fires when that minute ends
    assert incident["fired_at"] == T0 + timedelta(seconds=120)
    assert incident["last_signal_at"] == T0 + timedelta(seconds=479)
    assert incident["resolved_at"] == T0 + timedelta(seconds=479 + 300)
    assert incident["signal_count"] == 3 and incident["severity"] == "warning"
    assert states(tracker) == [("firing", 120), ("resolved", 779)]
    # a signal starting after keep_firing_for of quiet opens a new incident
    assert len(paged(track([sig(0), sig(60), sig(120 + 300 + 1), sig(480 + 1)]))) == 2
    assert len(paged(track([sig(0), sig(60), sig(120 + 300), sig(480)]))) == 1


def test_an_incident_keeps_the_peak_of_each_metric_its_signals_observed():
    def at(t, metric, value):
        return sig(t, 0, family="ewma", rule=f"ewma_3sigma_{metric}", value=value)[:-2] + (
            metric, value)

    signals = [at(t, "cpu_usage", 80 + t / 10) for t in range(0, 70, 10)]
    signals += [at(35, "temperature_c", 93.5), at(45, "temperature_c", 91.0)]
    (incident,) = paged(track(signals))
    assert incident["peaks"] == "cpu_usage 86, temperature_c 93.5"


def test_a_gap_while_pending_restarts_the_for_clock():
    """Prometheus resets a pending alert whose condition turns false: a lone spike's minute
    and another two minutes later are two lapsed incidents, not a page."""
    tracker = track([sig(0), sig(120)])
    assert [r["fired_at"] for r in latest_rows(tracker.incidents)] == [None, None]
    assert tracker.notifications == []
    # 10-second samples of a sustained anomaly, no gap over 30 s, fire after a minute
    tracker = track([sig(t, 0, family="ewma", rule="ewma_3sigma_cpu_usage")
                     for t in range(0, 70, 10)])
    (incident,) = paged(tracker)
    assert incident["fired_at"] == T0 + timedelta(seconds=60)


def test_a_rule_with_a_for_of_its_own_fires_on_its_own_signals_only():
    """Prometheus sets `for` per rule: high_memory's 5 minutes run on its own signals;
    the rules without one share the incident's `for` (a minute)."""
    rules = Incidents(for_by_rule=(("high_memory", 300),))
    memory = [sig(t, rule="high_memory") for t in range(0, 240, 60)]
    assert not paged(track(memory, rules))  # four minutes: pending, then lapsed
    (incident,) = paged(track(memory + [sig(t, rule="high_memory") for t in (240, 300)],
                              rules))
    assert incident["fired_at"] == T0 + timedelta(seconds=360)
    # high_cpu's minute after a minute fires the incident, high_memory's aside
    (mixed,) = paged(track(memory[:2] + [sig(100, rule="high_cpu"),
                                         sig(160, rule="high_cpu")], rules))
    assert mixed["fired_at"] == T0 + timedelta(seconds=220)
    assert paged(track(memory, Incidents()))  # without it, a minute is enough


def test_a_flapping_condition_is_held_by_keep_firing_for():
    """Once firing, quiet spells shorter than keep_firing_for do not resolve it: one
    incident, one page, one resolution."""
    flapping = [sig(0), sig(60)] + [sig(t) for t in range(300, 3000, 240)]
    tracker = track(flapping)
    assert len(paged(tracker)) == 1
    assert [s for s, _ in states(tracker)] == ["firing", "resolved"]


def test_a_critical_signal_fires_at_once_and_an_escalation_is_sent_once():
    rules = Incidents(for_s=60, keep_firing_for_s=300, group_interval_s=0,
                      fire_at_once=("critical",))
    tracker = track([sig(0, 10, family="ewma", rule="ewma_3sigma_cpu_usage"),
                     sig(5, 60), sig(65, 60), sig(130, 60, "critical", rule="overheating"),
                     sig(140, 60, "critical", rule="overheating")], rules)
    assert [s for s, _ in states(tracker)] == ["firing", "escalated", "resolved"]
    (incident,) = paged(tracker)
    assert incident["severity"] == "critical"
    assert incident["families"] == "ewma,threshold"
    assert incident["rules"] == "ewma_3sigma_cpu_usage,high_cpu,overheating"
    critical = track([sig(0, 0, "critical", rule="overheating")], rules)
    assert [s for s, _ in states(critical)] == ["firing", "resolved"]


def test_an_escalation_is_sent_before_a_later_signal_joins_the_incident():
    """The escalation is due at 70 (the firing one was sent at 10, group_interval 60); a
    signal of another rule at 80 joins after it was sent, so it is not in its text."""
    rules = Incidents(for_s=0, keep_firing_for_s=300, group_interval_s=60,
                      fire_at_once=("critical",))
    tracker = track([sig(0, 10), sig(20, 10), sig(40, 10, "critical"),
                     sig(80, 10, rule="overheating")], rules)
    assert states(tracker) == [("firing", 10), ("escalated", 70), ("resolved", 390)]
    escalated = tracker.notifications[1]["message"]
    assert escalated.endswith("escalated to critical at 10:01:10 UTC: high_cpu"), escalated


def test_fire_at_once_matches_labels_not_only_severity():
    """A 5σ sample is critical but one sample: only the critical threshold pages at once."""
    rules = Incidents(fire_at_once=(Matcher.of(family="threshold", severity="critical"),))
    assert not paged(track([sig(0, 0, "critical", family="ewma", rule="ewma_3sigma_cpu_usage")],
                           rules))
    assert paged(track([sig(0, 60, "critical", rule="overheating")], rules))


def test_alertmanager_timers_shape_the_notifications():
    """group_wait: the firing notification waits, and what joins meanwhile is in it;
    group_interval: an escalation waits for it; repeat_interval: a long incident is
    repeated."""
    rules = Incidents(for_s=60, keep_firing_for_s=300, group_wait_s=30,
                      group_interval_s=300, repeat_interval_s=1800)
    signals = [sig(t) for t in range(0, 3600, 60)]
    signals += [sig(100, 0, family="ewma", rule="ewma_3sigma_memory_usage"),
                sig(200, 60, "critical", rule="overheating")]
    tracker = track(signals, rules)
    got = states(tracker)
    assert got[0] == ("firing", 150)  # fired at 120, + group_wait
    first = tracker.notifications[0]
    assert "ewma_3sigma_memory_usage" in first["message"]  # joined at 100, in it
    assert got[1] == ("escalated", 450)  # critical at 260, but the last was sent at 150
    assert got[2:] == [("repeated", 450 + 1800), ("resolved", 3600 + 300)]


def test_a_lone_pair_of_signals_pages_only_when_min_signals_allows():
    rules = Incidents(for_s=60, keep_firing_for_s=300, min_signals=4, pending_gap_s=120)
    assert not paged(track([sig(0, 10, family="ewma"), sig(70, 10, family="ewma")], rules))
    burst = [sig(0, 10, family="ewma", rule=r) for r in ("a", "b", "c")] + [sig(65)]
    (incident,) = paged(track(burst, rules))
    assert incident["signal_count"] == 4 and incident["fired_at"] == T0 + timedelta(seconds=125)


def test_signals_of_a_family_left_out_stay_signals():
    rules = Incidents(for_s=60, keep_firing_for_s=300, families=("threshold", "ewma"))
    tracker = track([sig(0, 30, family="matrix", rule="network_disk")] * 5, rules)
    assert tracker.incidents == [] and tracker.notifications == []
    assert paged(track([sig(0), sig(60)], rules))


@pytest.mark.parametrize("families", [("threshold", "ewma"), ("matrix",), ("ewma",),
                                      ("threshold", "matrix", "ewma")])
def test_the_batch_shuffles_only_the_signals_that_can_page_and_pages_alike(families):
    import pyarrow as pa

    from schemas.server_metrics import ALERT_SIGNALS
    from transforms.server_metrics.incidents import SIGNAL_FIELDS, signal_tuples
    from transforms.server_metrics.medallion import SignalsByServerFn

    rng = random.Random(5)
    signals = [sig(60 * i + rng.choice((0, 10)), family=rng.choice(
        ("threshold", "matrix", "ewma", "hold")), severity=rng.choice(("warning", "critical")),
        server=rng.choice(("s1", "s2"))) for i in range(300)]
    table = pa.table({name: list(values) for name, values in zip(
        SIGNAL_FIELDS, zip(*signals, strict=True), strict=True)})
    table = table.set_column(0, "window_start", table.column(0).cast(pa.timestamp("us", "UTC")))
    table = table.set_column(1, "window_end", table.column(1).cast(pa.timestamp("us", "UTC")))
    rules = Incidents(for_s=60, keep_firing_for_s=300, families=families)
    fn = SignalsByServerFn(ServerMetricsRules(incidents=rules))
    fn.setup()
    shuffled = dict(fn.process(table))
    kept = {f for part in shuffled.values() for f in part.column("family").to_pylist()}
    assert kept == set(families) | ({"hold"} if "threshold" in families else set())
    assert set(shuffled) == {"s1", "s2"}
    for server, part in shuffled.items():
        everything = track([s for s in signals if s[5] == server], rules).incidents
        assert everything and track(signal_tuples(part), rules).incidents == everything
    assert set(SIGNAL_FIELDS) <= set(ALERT_SIGNALS.names)


def test_one_incident_per_server_by_default_or_per_rule_when_grouped_so():
    """One spike that moves several metrics is one incident; group_by [server_id, rule]
    gives each rule its own."""
    signals = [sig(t, 60, rule=r) for t in (0, 60, 120) for r in ("high_cpu", "high_memory")]
    (one,) = paged(track(signals))
    assert one["rules"] == "high_cpu,high_memory" and one["signal_count"] == 6
    by_rule = paged(track(signals, Incidents(group_by=("server_id", "rule"))))
    assert sorted(r["rules"] for r in by_rule) == ["high_cpu", "high_memory"]
    assert len({r["incident_id"] for r in by_rule}) == 2
    assert all("/high_" in r["incident_id"] for r in by_rule)


def test_an_overheating_critical_inhibits_ewma_temperature_warnings_on_its_server():
    rules = Incidents(group_by=("server_id", "rule"), inhibit_rules=(InhibitRule(
        Matcher.of(rule="overheating"), Matcher.of(rule="ewma_3sigma_temperature_c")),))
    heat = [sig(t, 60, "critical", rule="overheating") for t in range(0, 600, 60)]
    temp = [sig(t, 0, family="ewma", rule="ewma_3sigma_temperature_c")
            for t in range(5, 600, 10)]
    tracker = track(heat + temp, rules)
    assert {r["rules"] for r in paged(tracker)} == {"overheating"}
    assert tracker.inhibited == len(temp)
    # another server's, or after the source has been quiet for keep_firing_for, is not
    other = [sig(t, 0, family="ewma", rule="ewma_3sigma_temperature_c", server="s2")
             for t in range(5, 200, 10)]
    tracker = IncidentTracker(rules)
    tracker.feed(sorted(heat + other))
    assert tracker.inhibited == 0
    after = [sig(t, 0, family="ewma", rule="ewma_3sigma_temperature_c")
             for t in range(600 + 301, 1000, 10)]
    assert track(heat + after, rules).inhibited == 0
    # the source is active until exactly keep_firing_for after its end (600 s + 300 s)
    at_edge = sig(900, 0, family="ewma", rule="ewma_3sigma_temperature_c")
    past_edge = (at_edge[0] + 1, at_edge[1] + 1, *at_edge[2:])
    assert track(heat + [at_edge], rules).inhibited == 1
    assert track(heat + [past_edge], rules).inhibited == 0
    # without the rule, both page
    assert len(paged(track(heat + temp, Incidents(group_by=("server_id", "rule"))))) == 2


def test_the_rules_file_declares_grouping_inhibition_and_timers(tmp_path):
    from beam_pipelines.config import load_rules
    from beam_pipelines.errors import UserError

    rules = load_rules(None).incidents
    assert rules.group_by == ("server_id",) and rules.group_wait_s == 30
    assert rules.inhibit_rules[0].source.matches({"rule": "overheating"})
    assert not rules.fires_at_once({"family": "ewma", "severity": "critical"})
    assert rules.fires_at_once({"family": "threshold", "severity": "critical"})
    assert {r.name: r.hysteresis for r in load_rules(None).alert_rules} == {
        "high_cpu": 5, "high_memory": 2, "overheating": 3}
    bad = tmp_path / "r.yaml"
    for text, message in (
            ("incidents: {group_by: [rule]}", "server_id among them"),
            ("incidents: {inhibit_rules: [{source: {rule: a}}]}", "a source and a target"),
            ("incidents: {inhibit_rules: [{source: {rul: a}, target: {rule: b}}]}",
             "unknown key(s) rul"),
            ("incidents: {inhibit_rules: [{source: {rule: a}, target: {rule: b}, "
             "equal: [rule]}]}", "must include server_id"),
            ("incidents: {fire_at_once: [fatal]}", "unknown severity fatal"),
            ("incidents: {for_by_rule: {high_memory: 5x}}", "'5x' is not a duration"),
            ("anomaly_detection: {severity_at: {critical: 2}}", "score >= threshold"),
            ("alert_rules: [{name: a, metric: cpu_usage, above: 9, hysteresis: -1}]",
             "hysteresis must not be negative")):
        bad.write_text(text)
        with pytest.raises(UserError, match=re.escape(message)):
            load_rules(str(bad))


def test_ewma_severity_follows_the_score():
    from transforms.server_metrics.rules import AnomalyDetection

    rules = AnomalyDetection()
    assert [rules.severity_of(s) for s in (3.0, 4.99, 5.0, 40.0)] == [
        "warning", "warning", "critical", "critical"]
    assert rules.severities([3.0, 5.0]).to_pylist() == ["warning", "critical"]
    assert AnomalyDetection(severity_at=()).severity_of(50.0) == "warning"


def test_servers_have_incidents_of_their_own():
    tracker = IncidentTracker(RULES)
    tracker.feed(sorted([sig(0, server="a"), sig(30, server="a"), sig(10, server="b")]))
    # the tracker is per server: the caller keys by server, so feed them apart
    (incident,) = tracker.open.values()
    assert incident.identity[0] == "a"


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
    # every timer and option in play: group_wait, group_interval, repeat_interval, grouping
    # by rule (odd seeds) and an inhibition
    rules = Incidents(for_s=60, keep_firing_for_s=300, group_wait_s=30, group_interval_s=120,
                      repeat_interval_s=600, fire_at_once=("critical",),
                      for_by_rule=(("cpu_memory", 30),),
                      group_by=("server_id", "rule") if seed % 2 else ("server_id",),
                      inhibit_rules=(InhibitRule(Matcher.of(rule="overheating"),
                                                 Matcher.of(rule="high_cpu")),))
    whole = track(signals, rules)
    assert {"firing", "escalated", "repeated", "resolved"} <= {
        n["state"] for n in whole.notifications}
    assert whole.inhibited
    tracker, state, rows, notes = None, None, [], []
    cuts = sorted(rng.sample(range(len(signals)), 40)) + [len(signals)]
    last = 0
    for cut in cuts:
        horizon = signals[cut][0] if cut < len(signals) else END_OF_TIME
        tracker = IncidentTracker(rules, state)
        tracker.feed(signals[last:cut])
        tracker.advance(horizon)
        state, last = tracker.state, cut
        rows += tracker.incidents
        notes += tracker.notifications
    assert latest_rows(rows) == latest_rows(whole.incidents)
    assert notes == whole.notifications
    assert len(latest_rows(rows)) > 10


class _Exhaustive(IncidentTracker):
    """The tracker looking for the next change at every signal (no quiet bound)."""

    @property
    def _quiet_until(self):
        return None

    @_quiet_until.setter
    def _quiet_until(self, _):
        pass


@pytest.mark.parametrize("seed", range(6))
def test_signals_found_quiet_skip_nothing_that_was_due(seed):
    """A signal the tracker finds with nothing due skips the search for the next change;
    a signal that opens, fires or escalates an incident may bring that change sooner.
    Bursts of overlapping signals, timers shorter and longer than the pending gap: the same
    rows and notifications as a tracker that searches at every signal."""
    rng = random.Random(100 + seed)
    signals, t = [], 0.0
    for _ in range(400):
        t += rng.expovariate(1 / 8) if rng.random() < 0.85 else rng.expovariate(1 / 400)
        signals.append(sig(t, rng.choice([5, 20, 60, 120]),
                           rng.choice(["info"] * 3 + ["warning"] * 6 + ["critical"]),
                           rule=rng.choice(["high_cpu", "cpu_memory", "overheating"])))
    signals.sort()
    wait = (0, 10, 45)[seed % 3]
    rules = Incidents(for_s=(20, 60)[seed % 2], keep_firing_for_s=90, pending_gap_s=30,
                      group_wait_s=wait, group_interval_s=40, repeat_interval_s=200,
                      fire_at_once=("critical",), for_by_rule=(("cpu_memory", 10),),
                      group_by=("server_id", "rule") if seed % 2 else ("server_id",),
                      inhibit_rules=(InhibitRule(Matcher.of(rule="overheating"),
                                                 Matcher.of(rule="high_cpu")),))
    quick, exhaustive = IncidentTracker(rules), _Exhaustive(rules)
    for tracker in (quick, exhaustive):
        tracker.feed(signals)
        tracker.advance(END_OF_TIME)
    assert quick.incidents == exhaustive.incidents
    assert quick.notifications == exhaustive.notifications
    assert {"firing", "escalated", "resolved"} <= {n["state"] for n in quick.notifications}


# ---- streaming ----------------------------------------------------------------------
def _row(signal: tuple, pane_timing: str = "ON_TIME") -> dict:
    start, end, family, rule, severity, server, name, kind, location, metric, value = signal
    at = lambda us: datetime.fromtimestamp(us / US, timezone.utc)  # noqa: E731
    return {"window_start": at(start), "window_end": at(end), "metric_date": at(start).date(),
            "pane_index": 0, "pane_timing": pane_timing, "server_id": server,
            "server_name": name, "server_type": kind, "location": location,
            "family": family, "rule": rule, "severity": severity, "metric": metric,
            "observed_value": value, "message": "m"}


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
    return run_and_collect(lambda p: p | stream | IncidentsFromSignals(rules, Streaming()),
                           streaming=True)


def _latest(rows):
    out = {}
    for r in rows:
        if r["incident_id"] not in out or r["pane_index"] > out[r["incident_id"]]["pane_index"]:
            out[r["incident_id"]] = r
    return sorted(({**r, "pane_index": 0} for r in out.values()),
                  key=lambda r: r["incident_id"])


def test_streaming_gives_what_the_tracker_gives_as_the_watermark_moves():
    signals = [sig(0), sig(60), sig(100, 30, family="matrix", rule="cpu_memory"),
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


def test_streaming_keeps_a_pending_incident_that_lapses_and_pages_nothing():
    """A lone minute, then another after a gap: two incidents that lapse pending, each
    written once when it lapses, and not one notification."""
    out = _stream([([_row(sig(0))], 200), ([_row(sig(300))], None)])
    assert out["notifications"] == []
    assert sorted((r["started_at"], r["fired_at"], r["resolved_at"], r["pane_index"])
                  for r in out["incidents"]) == [
        (T0, None, T0 + timedelta(seconds=90), 0),
        (T0 + timedelta(seconds=300), None, T0 + timedelta(seconds=390), 0)]


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
    first = [_row(sig(0)), _row(sig(60))]
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
            rules, clock=fixed_clock, mode=Streaming(allowed_lateness_s=3600))

    b, s = run_and_collect(batch), run_and_collect(streaming, streaming=True)
    assert b["alert_incidents"] and b["alert_notifications"]
    assert _latest(s["alert_incidents"]) == _latest(b["alert_incidents"])
    key = lambda n: (n["incident_id"], n["changed_at"], n["state"])  # noqa: E731
    assert sorted(s["alert_notifications"], key=key) == sorted(b["alert_notifications"],
                                                               key=key)
    # every notification is of an incident; each fired once and resolved once
    ids = {r["incident_id"] for r in b["alert_incidents"] if r["fired_at"] is not None}
    assert ids, "nothing paged: the test shows nothing"
    assert {n["incident_id"] for n in b["alert_notifications"]} == ids
    states = [n["state"] for n in b["alert_notifications"]]
    assert states.count("firing") == states.count("resolved") == len(ids)


# ---- hysteresis, in every engine -------------------------------------------------------
def test_a_hold_keeps_only_a_firing_incident_of_its_rule_open():
    hold = lambda t, rule="high_cpu": sig(t, 60, family="hold", rule=rule)  # noqa: E731
    tracker = track([sig(0), sig(60), hold(120), hold(180), hold(240)])
    (incident,) = paged(tracker)
    assert incident["resolved_at"] == T0 + timedelta(seconds=300 + 300)
    assert incident["signal_count"] == 2  # a hold is no signal
    # a hold opens nothing, fires nothing, and another rule's keeps nothing open
    assert track([hold(t) for t in range(0, 600, 60)]).incidents == []
    (other,) = paged(track([sig(0), sig(60), hold(120, "high_memory")]))
    assert other["resolved_at"] == T0 + timedelta(seconds=120 + 300)
    # nor does one of a pending incident
    assert track([sig(0), hold(60), hold(120)]).notifications == []


def _hovering_cpu() -> list[tuple[float, str]]:
    """One server reporting every 20 s for 30 minutes: CPU 95 for three minutes, 88 (above
    90 − 5 but not 90) for twelve, then 50."""
    from tests.conftest import line

    events = []
    for i in range(90):
        minute = i // 3
        cpu = 95.0 if minute < 3 else 88.0 if minute < 15 else 50.0
        ts = T0 + timedelta(seconds=20 * i)
        events.append((ts.timestamp(), line(server_id="a", timestamp=ts.isoformat(),
                                            cpu_usage=cpu, memory_usage=40.0,
                                            temperature_c=50.0)))
    return events


@pytest.mark.parametrize("hysteresis, resolved_min", [(5.0, 15 + 5), (0.0, 3 + 5)])
def test_hysteresis_holds_a_hovering_value_in_one_incident_in_every_engine(
        tmp_path, hysteresis, resolved_min):
    """A value that falls below the threshold but not below the clear level keeps the
    incident firing: in the row-level and the Arrow batch medallions, and in the row-level
    and the batch streaming ones; without hysteresis it resolves five minutes after the
    last breach."""
    from beam_pipelines.io.sources import ReadRawBatches, resolve_inputs
    from tests.test_streaming_batches import run_both
    from transforms.server_metrics.medallion import ServerMetricsBatchMedallion
    from transforms.server_metrics.rules import AlertRule

    rules = ServerMetricsRules(
        alert_rules=(AlertRule("high_cpu", "cpu_usage", "warning", above=90,
                               hysteresis=hysteresis),),
        incidents=Incidents(families=("threshold",)))
    events = _hovering_cpu()
    (tmp_path / "m.jsonl").write_text("".join(text + "\n" for _, text in events))
    files = resolve_inputs([str(tmp_path / "m.jsonl")])
    rows = run_and_collect(lambda p: p | beam.Create([RawRecord(t, "in") for _, t in events])
                           | ServerMetricsMedallion(rules, clock=fixed_clock))

    def arrow(p):
        tables = (p | ReadRawBatches(files)
                  | ServerMetricsBatchMedallion(rules, clock=fixed_clock))
        return {"alert_incidents": tables["alert_incidents"]}

    late = [(events[3][0], events[3][1].replace('"a"', '"z"'))]  # another server's, late
    streamed, streamed_batches = run_both(rules, Streaming(allowed_lateness_s=3600),
                                          events, late, 10)
    expected = T0 + timedelta(minutes=resolved_min)
    for engine in (rows, run_and_collect(arrow), streamed, streamed_batches):
        (incident,) = [r for r in _latest(engine["alert_incidents"])
                       if r["fired_at"] is not None]
        assert incident["resolved_at"] == expected
        assert incident["signal_count"] == 3


@pytest.mark.parametrize("above", [True, False])
def test_breach_and_hold_are_one_definition_for_rows_and_columns(above):
    """A rule above 90 with hysteresis 5 holds from 85; one below 10 holds up to 15. The
    row-level crossing and the column masks agree, per-type thresholds included."""
    import numpy as np

    from transforms.server_metrics.rules import AlertRule

    if above:
        rule = AlertRule("hot", "cpu_usage", above=90, hysteresis=5, by_type=(("db", 95),))
        values = [95.0, 91.0, 88.0, 85.0, 50.0, 96.0, 92.0, float("nan")]
        want = [2, 2, 1, 0, 0, 2, 1, 0]
    else:
        rule = AlertRule("idle", "cpu_usage", below=10, hysteresis=5, by_type=(("db", 20),))
        values = [5.0, 9.0, 12.0, 15.0, 50.0, 19.0, 22.0, float("nan")]
        want = [2, 2, 1, 0, 0, 2, 1, 0]
    types = ["web"] * 5 + ["db", "db", "web"]
    ids = [f"s{i}" for i in range(len(values))]
    breach, held = rule.masks(np.array(values), ids, types)
    assert [2 if b else 1 if h else 0 for b, h in zip(breach, held, strict=True)] == want
    assert [rule.crossing(v, i, t) if v == v else 0
            for v, i, t in zip(values, ids, types, strict=True)] == want
    assert rule.masks(np.array(values), ids, types)[1] is not None
    assert AlertRule("x", "cpu_usage", above=90).masks(np.array(values), ids, types)[1] is None
