"""The streaming medallion on Arrow batches gives what the row-level streaming medallion
gives: the same latest pane of every window, the same dead letters, the same lateness and
dedupe across panes, with one element per batch fragment instead of per record."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from generators.metrics import GeneratorConfig, MetricsGenerator
from schemas.server_metrics import ALERT_INCIDENTS, GOLD_TABLES, SERVER_ALERT_MATRIX
from tests.conftest import fixed_clock, run_and_collect
from tests.equivalence import assert_tables_equal
from tests.test_streaming import _events, _late_events, latest
from transforms.batches import live_batch
from transforms.bronze import RawRecord
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.streaming import ServerMetricsStreamingMedallion
from transforms.windowing import Streaming

TestStream.__test__ = False

_US = 1_000_000


def _batch(events, source="in", watermark=None):
    """Timed lines → one live raw batch, timestamped at its oldest event."""
    micros = [round(ts * _US) for ts, _ in events]
    sources = [source(i) if callable(source) else source for i in range(len(events))]
    table = live_batch([text for _, text in events], sources, micros, watermark)
    return TimestampedValue(table, min(micros) / _US)


def _latest_only(tables: dict) -> dict:
    """Windowed tables reduced to their latest pane per key, pane columns dropped."""
    keyed = {s.name: s for s in GOLD_TABLES + (SERVER_ALERT_MATRIX, ALERT_INCIDENTS)}
    out = {}
    for name, rows in tables.items():
        if name in keyed:
            rows = [{k: v for k, v in r.items() if k not in ("pane_index", "pane_timing")}
                    for r in latest(rows, keyed[name]).values()]
        elif name == "alert_signals":
            rows = [{k: v for k, v in r.items() if k not in ("pane_index", "pane_timing")}
                    for r in rows]
            rows = list({repr(sorted(r.items(), key=str)): r for r in rows}.values())
        out[name] = rows
    return out


def run_both(rules, streaming, events, late, batch_size):
    """Row-level and batch streaming medallions on the same TestStream of events."""
    rows_stream = TestStream()
    for ts, text in events:
        rows_stream = rows_stream.add_elements([TimestampedValue(RawRecord(text, "in"), ts)])
    last = max(ts for ts, _ in events)
    rows_stream = (rows_stream.advance_watermark_to(last + 60)
                   .add_elements([TimestampedValue(RawRecord(t, "in"), ts) for ts, t in late])
                   .advance_watermark_to_infinity())
    batch_stream = TestStream()
    for i in range(0, len(events), batch_size):
        batch_stream = batch_stream.add_elements([_batch(events[i:i + batch_size])])
    batch_stream = (batch_stream.advance_watermark_to(last + 60)
                    .add_elements([_batch(late)])
                    .advance_watermark_to_infinity())
    row_level = run_and_collect(lambda p: p | rows_stream | ServerMetricsMedallion(
        rules, clock=fixed_clock, mode=streaming), streaming=True)
    batched = run_and_collect(lambda p: (p | batch_stream | ServerMetricsStreamingMedallion(
        rules, streaming, clock=fixed_clock)), streaming=True)
    return row_level, batched


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_every_latest_pane_and_dead_letter_equals_the_row_level_streaming(batch_size):
    rules = ServerMetricsRules()
    row_level, batched = run_both(rules, Streaming(allowed_lateness_s=3600), _events(),
                                  _late_events(), batch_size)
    assert_tables_equal(_latest_only(row_level), _latest_only(batched))
    assert Counter(d["reason"] for d in batched["dead_letters"]) == Counter(
        {"invalid_json": 1, "invalid_timestamp": 1, "duplicate_event": 1})
    # the late event arrived after its minute fired on time: a LATE pane, as row-level
    late_rows = [r for r in batched["server_metrics_minutely"] if r["server_id"] == "c"]
    assert late_rows and all(r["pane_timing"] == "LATE" for r in late_rows)


def _live_rounds(count=1000, per_round=60, lag_s=10, redeliver_every=97):
    """Generated records with every fault (22 minutes across an hour's end), as a live
    source would deliver them: rounds of (records, the watermark they arrived under); the
    watermark trails the newest event by ``lag_s``, and now and then an earlier delivery
    comes again (same id, same time)."""
    config = GeneratorConfig(servers=3, interval_ms=4000, count=count, seed=21,
                             malformed_rate=0.03, duplicate_rate=0.02, late_rate=0.03,
                             anomaly_rate=0.02, start=datetime(2026, 1, 5, 9, 45,
                                                               tzinfo=timezone.utc))
    timed = [(event_ms / 1000, text) for _, event_ms, text in
             MetricsGenerator(config).render_timed()]
    deliveries = [(ts, text, f"sub#{i}") for i, (ts, text) in enumerate(timed)]
    rounds, newest, watermark = [], None, None
    for i in range(0, len(deliveries), per_round):
        chunk = deliveries[i:i + per_round]
        if i and i % redeliver_every < per_round:
            chunk = chunk + [deliveries[i - per_round // 2]]  # a redelivery
        rounds.append((chunk, watermark))
        top = max(ts for ts, _, _ in chunk)
        newest = top if newest is None or top > newest else newest
        target = newest - lag_s
        watermark = target if watermark is None or target > watermark else watermark
    return rounds


def run_live_both(rules, streaming, rounds):
    rows_stream, batch_stream = TestStream(), TestStream()
    for chunk, watermark in rounds:
        wm_us = None if watermark is None else round(watermark * _US)
        rows_stream = rows_stream.add_elements([TimestampedValue(
            RawRecord(text, source, watermark=wm_us), ts) for ts, text, source in chunk])
        micros = [round(ts * _US) for ts, _, _ in chunk]
        batch_stream = batch_stream.add_elements([TimestampedValue(live_batch(
            [t for _, t, _ in chunk], [s for _, _, s in chunk], micros, wm_us),
            min(micros) / _US)])
        if watermark is not None:
            rows_stream = rows_stream.advance_watermark_to(watermark)
            batch_stream = batch_stream.advance_watermark_to(watermark)
    rows_stream = rows_stream.advance_watermark_to_infinity()
    batch_stream = batch_stream.advance_watermark_to_infinity()
    row_level = run_and_collect(lambda p: p | rows_stream | ServerMetricsMedallion(
        rules, clock=fixed_clock, mode=streaming, drop_redeliveries=True), streaming=True)
    batched = run_and_collect(lambda p: (p | batch_stream | ServerMetricsStreamingMedallion(
        rules, streaming, clock=fixed_clock, drop_redeliveries=True)), streaming=True)
    return row_level, batched


@pytest.fixture(scope="module")
def live_runs():
    return run_live_both(ServerMetricsRules(), Streaming(allowed_lateness_s=60),
                         _live_rounds())


def test_a_live_feed_with_every_fault_gives_the_row_level_tables(live_runs):
    row_level, batched = live_runs
    assert_tables_equal(_latest_only(row_level), _latest_only(batched))
    reasons = Counter(d["reason"] for d in batched["dead_letters"])
    # every kind of rejection streaming knows is in this feed
    assert {"redelivered", "late", "duplicate_event", "invalid_json"} <= set(reasons), reasons
    assert len(batched["anomalies"]) > 0


def test_a_live_feed_accounts_for_every_delivery(live_runs):
    _, batched = live_runs
    delivered = sum(len(chunk) for chunk, _ in _live_rounds())
    dead = Counter(d["layer"] for d in batched["dead_letters"])
    assert len(batched["server_metrics_bronze"]) + dead["bronze"] == delivered
    assert len(batched["server_metrics_silver"]) + dead["silver"] == \
        len(batched["server_metrics_bronze"])


def test_elements_are_batch_fragments_on_every_stage_of_the_streaming_hot_path():
    """On a dense feed (10 servers reporting every 100 ms, polls of 3,000 records), what
    bronze and silver emit are batches: records per element, counted on their outputs."""
    config = GeneratorConfig(servers=10, interval_ms=100, count=12_000, seed=5,
                             start=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc))
    timed = [(event_ms / 1000, text) for _, event_ms, text in
             MetricsGenerator(config).render_timed()]
    stream = TestStream()
    for i in range(0, len(timed), 3000):
        stream = stream.add_elements([_batch(timed[i:i + 3000], lambda j, i=i: f"s#{i + j}")])
        stream = stream.advance_watermark_to(timed[min(i + 3000, len(timed)) - 1][0] - 10)
    stream = stream.advance_watermark_to_infinity()
    out = run_and_collect(lambda p: p | stream | ServerMetricsStreamingMedallion(
        ServerMetricsRules(), Streaming(), clock=fixed_clock, drop_redeliveries=True),
        streaming=True, as_rows=False)
    bronze, silver = out["server_metrics_bronze"], out["server_metrics_silver"]
    assert sum(t.num_rows for t in bronze) == sum(t.num_rows for t in silver) == 12_000
    # a poll, split only where a minute ends; a server's minute, or the part of it a pane holds
    assert 12_000 / len(bronze) >= 1000, len(bronze)
    assert 12_000 / len(silver) >= 200, len(silver)
