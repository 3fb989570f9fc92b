"""Streaming semantics with TestStream: windows, early firings, lateness, dedupe, parity."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import apache_beam as beam
import pytest
from apache_beam.coders import PickleCoder
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.io.live_sources import Poller
from schemas.server_metrics import GOLD_TABLES
from tests.conftest import NOW, fixed_clock, line, run_and_collect
from transforms.bronze import RawRecord, event_time
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_gold import ServerMetricsGold
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.server_metrics.row_silver import CleanServerMetrics, to_silver
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.windowing import Streaming

TestStream.__test__ = False  # a Beam transform, not a test class

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc).timestamp()
LATENESS = 120
STREAMING = Streaming(allowed_lateness_s=LATENESS, early_firing_s=5)
RULES = ServerMetricsRules()


def bronze(server="a", second=0.0, cpu=50.0):
    ts = datetime.fromtimestamp(T0 + second, timezone.utc).isoformat()
    return to_bronze(RawRecord(line(server_id=server, timestamp=ts, cpu_usage=cpu)), NOW)


def stamped(record):
    return TimestampedValue(record, event_time(record["timestamp"]))


def silver_stream():
    return (TestStream()
            .add_elements([stamped(bronze("a", 1)), stamped(bronze("a", 2)),
                           stamped(bronze("a", 2))])                 # a copy in the same pane
            .advance_watermark_to(T0 + 70)                           # minute 10:00 on time
            .add_elements([stamped(bronze("a", 3)),                  # late, within lateness
                           stamped(bronze("a", 1))])                 # a copy, a pane later
            .advance_watermark_to(T0 + 60 + LATENESS + 1)            # 10:00 is now closed
            .add_elements([stamped(bronze("a", 4))])                 # too late
            .advance_watermark_to_infinity())


def test_silver_lateness_and_dedupe_across_panes():
    found = run_and_collect(lambda p: p | silver_stream()
                            | CleanServerMetrics(RULES, mode=STREAMING), streaming=True)
    kept = sorted(r["timestamp"].second for r in found["records"])
    assert kept == [1, 2, 3]
    reasons = Counter((d["reason"], d["event_timestamp"].second) for d in found["dead_letters"])
    assert reasons == Counter({("duplicate_event", 2): 1, ("duplicate_event", 1): 1,
                               ("late", 4): 1})
    late = next(d for d in found["dead_letters"] if d["reason"] == "late")
    assert late["layer"] == "silver" and "allowed lateness 120s" in late["message"]


def test_accounting_holds_in_streaming():
    found = run_and_collect(lambda p: p | silver_stream()
                            | CleanServerMetrics(RULES, mode=STREAMING), streaming=True)
    assert len(found["records"]) + len(found["dead_letters"]) == 6


def latest(rows, schema):
    best = {}
    for row in rows:
        key = tuple(row[k] for k in schema.key)
        if key not in best or row["pane_index"] > best[key]["pane_index"]:
            best[key] = row
    return best


def test_gold_panes_on_time_then_late_update():
    rows = lambda secs: [stamped(to_silver(bronze("a", s, cpu), RULES)) for s, cpu in secs]  # noqa
    stream = (TestStream()
              .add_elements(rows([(1, 10.0), (30, 20.0)]))
              .advance_watermark_to(T0 + 61)                 # minute and nothing else closes
              .add_elements(rows([(50, 90.5)]))              # late for 10:00, within lateness
              .advance_watermark_to_infinity())
    found = run_and_collect(lambda p: p | stream | ServerMetricsGold(RULES, STREAMING),
                            streaming=True)
    minute = [r for r in found["server_metrics_minutely"]]
    timings = [r["pane_timing"] for r in sorted(minute, key=lambda r: r["pane_index"])]
    assert "ON_TIME" in timings and timings[-1] == "LATE"
    on_time = next(r for r in minute if r["pane_timing"] == "ON_TIME")
    assert on_time["record_count"] == 2
    final = latest(minute, GOLD_TABLES[0])
    [row] = final.values()
    assert row["record_count"] == 3 and row["max_cpu_usage"] == 90.5
    hour = list(latest(found["hourly_server_metrics"], GOLD_TABLES[1]).values())
    assert len(hour) == 1 and hour[0]["record_count"] == 3
    # the late record crossed the high-utilisation threshold: the alert arrives late
    assert {a["rule"] for a in found["alerts"]} == {"high_cpu"}


def test_early_firings_fill_the_minute_table_before_the_watermark():
    rows = [stamped(to_silver(bronze("a", s), RULES)) for s in (1, 2)]
    stream = (TestStream()
              .add_elements(rows)
              .advance_processing_time(10)                   # past the early-firing delay
              .advance_watermark_to(T0 + 30)
              .advance_processing_time(10)
              .advance_watermark_to_infinity())
    found = run_and_collect(lambda p: p | stream | ServerMetricsGold(RULES, STREAMING),
                            streaming=True)
    timings = {r["pane_timing"] for r in found["server_metrics_minutely"]}
    assert "EARLY" in timings and "ON_TIME" in timings


def test_window_boundaries_in_streaming():
    rows = [stamped(to_silver(bronze("a", s), RULES)) for s in (59.999, 60.0, 3599.999, 3600)]
    stream = TestStream().add_elements(rows).advance_watermark_to_infinity()
    found = run_and_collect(lambda p: p | stream | ServerMetricsGold(RULES, STREAMING),
                            streaming=True)
    minutes = latest(found["server_metrics_minutely"], GOLD_TABLES[0])
    assert sorted((k[-1].strftime("%H:%M"), r["record_count"]) for k, r in minutes.items()) \
        == [("10:00", 1), ("10:01", 1), ("10:59", 1), ("11:00", 1)]
    hours = latest(found["hourly_server_metrics"], GOLD_TABLES[1])
    assert sorted(r["record_count"] for r in hours.values()) == [1, 3]


# ---- batch / stream parity on the whole medallion --------------------------------------
def _events():
    """Two servers, ten minutes every 20 s, with malformed lines, copies and late events."""
    raws = []
    for i in range(30):
        for server in ("a", "b"):
            ts = datetime.fromtimestamp(T0 + 20 * i, timezone.utc).isoformat()
            raws.append((T0 + 20 * i, line(server_id=server, timestamp=ts,
                                           cpu_usage=float(30 + (i * 7) % 65),
                                           memory_usage=float(40 + (i * 11) % 59))))
    raws.append((T0 + 100, '{"server_id": "a", "timestamp": '))          # malformed
    raws.append((T0 + 200, line(server_id="b", timestamp="not a time")))  # malformed
    raws.append((T0 + 220, raws[10][1]))                                  # a copy, later
    return raws


def _late_events():
    ts = datetime.fromtimestamp(T0 + 130, timezone.utc).isoformat()
    return [(T0 + 130, line(server_id="c", timestamp=ts, cpu_usage=95.0))]


def _normalise(rows, schema):
    return sorted(
        (tuple((k, v) for k, v in row.items() if k not in ("pane_index", "pane_timing"))
         for row in latest(rows, schema).values()), key=repr)


def run_batch_and_streaming(rules: ServerMetricsRules):
    """The same events (malformed, copied and late ones among them) through the whole
    medallion in batch and in TestStream streaming: (batch tables, streaming tables)."""
    events, late = _events(), _late_events()

    def batch(p):
        raw = p | beam.Create([RawRecord(text, "in") for _, text in events + late])
        return raw | ServerMetricsMedallion(rules, clock=fixed_clock)

    stream = TestStream()
    for ts, text in events:
        stream = stream.add_elements([TimestampedValue(RawRecord(text, "in"), ts)])
    stream = (stream.advance_watermark_to(T0 + 20 * 30 + 60)   # every minute closed on time
                    .add_elements([TimestampedValue(RawRecord(t, "in"), ts) for ts, t in late])
                    .advance_watermark_to_infinity())

    def streaming(p):
        return p | stream | ServerMetricsMedallion(rules, clock=fixed_clock,
                                                   mode=Streaming(allowed_lateness_s=3600))

    return run_and_collect(batch), run_and_collect(streaming, streaming=True)


def test_batch_and_streaming_give_identical_gold_tables():
    b, s = run_batch_and_streaming(ServerMetricsRules())
    for schema in GOLD_TABLES:
        assert _normalise(b[schema.name], schema) == _normalise(s[schema.name], schema), \
            schema.name
    assert sorted(map(repr, b["server_metrics_silver"])) == \
        sorted(map(repr, s["server_metrics_silver"]))
    reasons = lambda t: Counter(d["reason"] for d in t["dead_letters"])  # noqa: E731
    assert reasons(b) == reasons(s) == Counter({"invalid_json": 1, "invalid_timestamp": 1,
                                                 "duplicate_event": 1})
    # the late event made it into streaming's gold as a LATE pane, as in batch
    late_rows = [r for r in s["server_metrics_minutely"] if r["server_id"] == "c"]
    assert late_rows and all(r["pane_timing"] == "LATE" for r in late_rows)


@pytest.mark.parametrize("kwargs, message", [
    ({"allowed_lateness_s": -1}, "negative"), ({"early_firing_s": 0}, "positive")])
def test_streaming_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Streaming(**kwargs)


# ---- the streaming edges: redeliveries, arrival lateness, the live source's watermark ----
def test_redeliveries_are_dead_lettered_once_seen():
    payload = line(server_id="a", timestamp="2026-01-05T10:00:01Z")
    first = RawRecord(payload, "sub#m1")
    stream = (TestStream()
              .add_elements([TimestampedValue(first, T0 + 1),
                             TimestampedValue(RawRecord(payload, "sub#m2"), T0 + 1)])
              .add_elements([TimestampedValue(first, T0 + 1)])       # the same delivery id
              .advance_watermark_to_infinity())
    from transforms.server_metrics.row_bronze import ValidateServerMetrics

    found = run_and_collect(lambda p: p | stream | ValidateServerMetrics(
        clock=fixed_clock, drop_redeliveries=True), streaming=True)
    assert sorted(r["source"] for r in found["records"]) == ["sub#m1", "sub#m2"]
    (dead,) = found["dead_letters"]
    assert (dead["reason"], dead["step"], dead["source"], dead["payload"]) == (
        "redelivered", "DropRedeliveries", "sub#m1", payload)


@pytest.mark.parametrize("watermark_s, late", [
    (60 + LATENESS - 1, False),  # 10:00 closes at 10:01 + lateness: not yet
    (60 + LATENESS, True),       # closed exactly when it arrived
    (None, False),               # file sources carry no watermark: never judged late
])
def test_arrival_after_the_minute_closed_is_late(watermark_s, late):
    from transforms.server_metrics.row_bronze import ParseServerMetricFn

    fn = ParseServerMetricFn(clock=fixed_clock, allowed_lateness_s=LATENESS)
    fn.setup()
    raw = RawRecord(line(server_id="a", timestamp="2026-01-05T10:00:59Z"), "sub#1",
                    watermark=None if watermark_s is None else int((T0 + watermark_s) * 1e6))
    (out,) = list(fn.process(raw))
    if late:
        assert out.tag == "dead_letter" and out.value["reason"] == "late"
        assert out.value["layer"] == "bronze" and "arrived when the watermark" in \
            out.value["message"]
    else:
        assert out.value["server_id"] == "a"


class _FakePoller(Poller):
    """A source as LiveRead sees it (the Poller protocol), polled round by round."""

    name = "fake"

    def __init__(self, rounds):
        self.rounds = list(rounds)
        self.closed = False

    def open(self):
        pass

    def close(self):
        self.closed = True

    def poll(self, now):
        return self.rounds.pop(0) if self.rounds else []


def test_live_source_watermark_trails_the_newest_event_and_drains():
    from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

    from beam_pipelines.io.live_sources import LiveRead

    def item(second):
        return int((T0 + second) * 1e6), RawRecord("{}", f"s#{second}")

    poller = _FakePoller([[item(10), item(30), item(20)], [item(5)], []])
    read = LiveRead(poller, stop_at=T0 + 100, max_out_of_orderness_s=10, idle_after_s=5,
                    pause_s=0)
    out, watermark, done = read.read(T0 + 31)
    assert [v.timestamp for v in out] == [Timestamp(T0 + 10), Timestamp(T0 + 30),
                                          Timestamp(T0 + 20)]
    assert watermark == Timestamp(T0 + 20) and not done          # newest 30 s minus 10 s
    assert out[0].value.watermark is None                        # nothing to judge against
    out, watermark, _ = read.read(T0 + 32)                       # an older event: late
    assert out[0].value.watermark == Timestamp(T0 + 20).micros   # judged at arrival
    assert watermark == Timestamp(T0 + 20)                       # never moves back
    _, watermark, _ = read.read(T0 + 40)                         # idle for 8 s
    assert watermark == Timestamp(T0 + 30)                       # wall clock minus 10 s
    assert read.read(T0 + 100) == ([], MAX_TIMESTAMP, True) and poller.closed


def test_a_live_source_says_how_it_is_doing_every_heartbeat(capsys):
    from beam_pipelines.io import live_sources
    from beam_pipelines.io.live_sources import LiveRead

    live_sources.reset_drain()
    live_sources.set_heartbeat(10)
    try:
        items = [(int((T0 + s) * 1e6), RawRecord("{}", f"s#{s}")) for s in range(30)]
        poller = _FakePoller([items[:10], items[10:]])
        read = LiveRead(poller, stop_at=T0 + 100, max_out_of_orderness_s=5, pause_s=0)
        read.read(T0 + 10)
        read.read(T0 + 15)
        assert capsys.readouterr().out == ""           # not yet
        read.read(T0 + 31)
        line = capsys.readouterr().out.strip()
        assert line == ("… 30 records read (1/s over the last 21s), watermark 5s behind the "
                        "wall clock"), line
    finally:
        live_sources.set_heartbeat(0)
        live_sources.reset_drain()


def test_a_source_that_is_quiet_but_not_caught_up_holds_its_watermark():
    """An outage, or pulls held back while the writers catch up, is not idleness: a
    backlog may wait behind it, and the wall clock would make all of it late."""
    from apache_beam.utils.timestamp import Timestamp

    from beam_pipelines.io.live_sources import LiveRead

    poller = _FakePoller([[(int((T0 + 10) * 1e6), RawRecord("{}", "s#1"))]])
    read = LiveRead(poller, stop_at=T0 + 100, max_out_of_orderness_s=5, idle_after_s=5,
                    pause_s=0)
    _, watermark, _ = read.read(T0 + 11)
    assert watermark == Timestamp(T0 + 5)
    poller.caught_up = False
    for second in (20, 30, 40):
        _, watermark, _ = read.read(T0 + second)
        assert watermark == Timestamp(T0 + 5)
    poller.caught_up = True                                        # drained, for 5 s now
    read.read(T0 + 41)
    _, watermark, _ = read.read(T0 + 46)
    assert watermark == Timestamp(T0 + 41)


@pytest.mark.parametrize("batches", [False, True])
def test_an_event_far_in_the_future_never_moves_the_watermark(batches):
    """One record dated 2099 in a live feed: without the guard the watermark jumps to it
    and every later record of today is late; with --max-future it stays with the feed."""
    from apache_beam.utils.timestamp import Timestamp

    from beam_pipelines.io.live_sources import LiveRead

    def item(second):
        return int((T0 + second) * 1e6), RawRecord("{}", f"s#{second}")

    year_2099 = (int(4_070_908_800 * 1e6), RawRecord("{}", "s#2099"))
    for guard, expected in ((300.0, Timestamp(T0 + 20)), (None, None)):
        poller = _FakePoller([[item(10), year_2099, item(30)]])
        read = LiveRead(poller, stop_at=T0 + 100, max_out_of_orderness_s=10, pause_s=0,
                        batches=batches, max_future_s=guard)
        out, watermark, _ = read.read(T0 + 31)
        assert len(out) == (1 if batches else 3)  # the record still goes to bronze
        if expected is not None:
            assert watermark == expected
        else:
            assert watermark == Timestamp(T0 + 31)  # capped by the wall clock, far ahead


def test_bronze_dead_letters_an_event_beyond_max_future_in_both_engines():
    from datetime import timedelta

    from tests.conftest import NOW, line
    from transforms.batches import raw_lines
    from transforms.server_metrics.bronze import bronze_batch
    from transforms.server_metrics.row_bronze import ParseServerMetricFn

    soon = (NOW + timedelta(minutes=4)).isoformat()
    later = (NOW + timedelta(minutes=6)).isoformat()
    raw = raw_lines([line(timestamp=soon).encode(), line(timestamp=later).encode()], "f")
    out = bronze_batch(raw, NOW, max_future_s=300)
    assert out.records.num_rows == 1
    (dead,) = out.dead_letters
    assert dead["reason"] == "future_event" and "--max-future" in dead["message"]
    fn = ParseServerMetricFn(clock=lambda: NOW, max_future_s=300)
    fn.setup()
    (row_level,) = list(fn.process(RawRecord(line(timestamp=later).encode(), "f")))
    assert row_level.value["message"] == dead["message"]
    assert bronze_batch(raw, NOW).records.num_rows == 2  # no limit unless one is given


class _TimerChainFn(beam.DoFn):
    """Sets a timer at 20 s; each firing emits and sets the next, 10 s later, three times."""

    HOLD_OUTPUT_AT_TIMERS = True
    TIMER = TimerSpec("t", TimeDomain.WATERMARK)
    COUNT = ReadModifyWriteStateSpec("n", PickleCoder())

    def process(self, keyed, timer=beam.DoFn.TimerParam(TIMER)):
        timer.set(Timestamp(20))

    @on_timer(TIMER)
    def fire(self, ts=beam.DoFn.TimestampParam, timer=beam.DoFn.TimerParam(TIMER),
             count=beam.DoFn.StateParam(COUNT)):
        n = (count.read() or 0) + 1
        count.write(n)
        yield float(ts)
        if n < 3:
            timer.set(Timestamp(float(ts) + 10))


@pytest.mark.parametrize("advances", [[], [15], [25], [25, 35, 45]])
def test_what_timers_emit_when_the_watermark_jumps_is_not_dropped(advances):
    """A drain (or the end of a test stream) jumps the watermark to the end of time: a
    stateful step's timers still fire, and what they emit must reach a global window
    downstream. The local runner holds the output watermark of a step that asks for it at
    its earliest timer (fix 5 of beam_pipelines.runners.local); without it these are
    dropped as late."""
    stream = TestStream().add_elements([TimestampedValue(("k", 1), 10)])
    for watermark in advances:
        stream = stream.advance_watermark_to(watermark)
    stream = stream.advance_watermark_to_infinity()
    out = run_and_collect(lambda p: {"fired": p | stream | beam.ParDo(_TimerChainFn())},
                          streaming=True)
    assert sorted(out["fired"]) == [20.0, 30.0, 40.0]
