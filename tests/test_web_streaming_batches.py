"""Streaming web logs on Arrow batches give what the row-level streaming web-log medallion
gives on the same live feed: the latest pane of every gold row, every dead letter
(redeliveries, late lines, copies across polls, malformed lines), bronze and silver, with
one element per batch fragment instead of per line."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from generators.weblogs import WebLogConfig, WebLogGenerator
from schemas.web_logs import WEB_GOLD_TABLES
from tests.conftest import fixed_clock, run_and_collect
from tests.equivalence import assert_tables_equal
from tests.test_streaming import latest
from transforms.batches import live_batch
from transforms.bronze import RawRecord
from transforms.web_logs.row_medallion import WebLogsMedallion
from transforms.web_logs.row_silver import PrivacyPolicy
from transforms.web_logs.streaming import WebLogsStreamingMedallion, line_hashes
from transforms.windowing import Streaming

TestStream.__test__ = False
_US = 1_000_000
POLICY = PrivacyPolicy(salt=b"streaming")


def _rounds(count=1000, per_round=40, lag_s=20, redeliver_every=53, seed=31):
    """Generated lines with every fault, as a live source delivers them: rounds of (lines,
    the watermark they arrived under), now and then an earlier delivery again."""
    config = WebLogConfig(count=count, rate_per_s=8, seed=seed, malformed_rate=0.03,
                          duplicate_rate=0.03, late_rate=0.04,
                          start=datetime(2026, 1, 5, 9, 58, tzinfo=timezone.utc))
    timed = [(event_ms / 1000, line) for _, event_ms, line in
             WebLogGenerator(config).render_timed()]
    deliveries = [(ts, line, f"sub#{i}") for i, (ts, line) in enumerate(timed)]
    rounds, newest, watermark = [], None, None
    for i in range(0, len(deliveries), per_round):
        chunk = deliveries[i:i + per_round]
        if i and i % redeliver_every < per_round:
            chunk = chunk + [deliveries[i - per_round // 2]]
        rounds.append((chunk, watermark))
        top = max(ts for ts, _, _ in chunk)
        newest = top if newest is None or top > newest else newest
        watermark = max(watermark or 0, newest - lag_s)
    return rounds


def _latest_only(tables: dict) -> dict:
    keyed = {s.name: s for s in WEB_GOLD_TABLES}
    return {name: [{k: v for k, v in r.items() if k not in ("pane_index", "pane_timing")}
                   for r in latest(rows, keyed[name]).values()] if name in keyed else rows
            for name, rows in tables.items()}


def run_both(rounds, streaming, windows=(60, 3600), top_n=3, dedupe=True):
    rows_stream, batch_stream = TestStream(), TestStream()
    advanced = None
    for chunk, watermark in rounds:
        wm_us = None if watermark is None else round(watermark * _US)
        rows_stream = rows_stream.add_elements([TimestampedValue(
            RawRecord(line, source, watermark=wm_us), ts) for ts, line, source in chunk])
        micros = [round(ts * _US) for ts, _, _ in chunk]
        batch_stream = batch_stream.add_elements([TimestampedValue(live_batch(
            [line.encode() for _, line, _ in chunk], [s for _, _, s in chunk], micros, wm_us),
            min(micros) / _US)])
        if watermark is not None and (advanced is None or watermark > advanced):
            rows_stream = rows_stream.advance_watermark_to(watermark)
            batch_stream = batch_stream.advance_watermark_to(watermark)
            advanced = watermark
    rows_stream = rows_stream.advance_watermark_to_infinity()
    batch_stream = batch_stream.advance_watermark_to_infinity()
    row_level = run_and_collect(lambda p: p | rows_stream | WebLogsMedallion(
        POLICY, window_seconds=windows, top_n=top_n, clock=fixed_clock, mode=streaming,
        drop_redeliveries=True, dedupe_identical_lines=dedupe), streaming=True)
    batched = run_and_collect(lambda p: (p | batch_stream | WebLogsStreamingMedallion(
        POLICY, window_seconds=windows, top_n=top_n, mode=streaming, clock=fixed_clock,
        drop_redeliveries=True, dedupe_identical_lines=dedupe)), streaming=True)
    return row_level, batched


@pytest.fixture(scope="module")
def live_runs():
    return run_both(_rounds(), Streaming(allowed_lateness_s=30))


def test_a_live_feed_with_every_fault_gives_the_row_level_tables(live_runs):
    row_level, batched = live_runs
    assert_tables_equal(_latest_only(row_level), _latest_only(batched))
    reasons = Counter(d["reason"] for d in batched["dead_letters"])
    assert {"redelivered", "late", "duplicate_event", "unparseable_log_line"} <= set(reasons)


def test_a_live_feed_accounts_for_every_delivery(live_runs):
    _, batched = live_runs
    delivered = sum(len(chunk) for chunk, _ in _rounds())
    dead = Counter(d["layer"] for d in batched["dead_letters"])
    assert len(batched["web_logs_bronze"]) + dead["bronze"] == delivered
    assert len(batched["web_logs_silver"]) + dead["silver"] == len(batched["web_logs_bronze"])
    for schema in WEB_GOLD_TABLES[:4]:  # every table but the top paths adds up to silver
        minutes = [r for r in latest(batched[schema.name], schema).values()
                   if r["granularity"] == "minute"]
        assert sum(r["requests"] for r in minutes) == len(batched["web_logs_silver"])


def test_copies_across_polls_are_caught_and_other_windows_agree():
    rounds = _rounds(count=500, per_round=6, redeliver_every=11, seed=32)
    row_level, batched = run_both(rounds, Streaming(allowed_lateness_s=120),
                                  windows=(30, 300), top_n=2)
    assert_tables_equal(_latest_only(row_level), _latest_only(batched))


def test_by_default_identical_lines_are_requests_and_only_redeliveries_go():
    row_level, batched = run_both(_rounds(count=500, seed=33), Streaming(
        allowed_lateness_s=30), dedupe=False)
    assert_tables_equal(_latest_only(row_level), _latest_only(batched))
    reasons = Counter(d["reason"] for d in batched["dead_letters"])
    assert "duplicate_event" not in reasons and reasons["redelivered"] > 0


def test_line_hashes_tell_absent_from_empty_and_none():
    import pyarrow as pa

    from schemas.web_logs import WEB_LOGS_BRONZE

    base = {f.name: None for f in WEB_LOGS_BRONZE.arrow_schema()}
    base.update(client_ip="1.2.3.4", timestamp=datetime(2026, 1, 5, tzinfo=timezone.utc),
                request="GET /", status=200, ingest_timestamp=fixed_clock())
    rows = [dict(base), dict(base, referrer=""), dict(base, referrer="None"),
            dict(base, referrer="-", user_agent=None), dict(base, referrer=None,
                                                            user_agent="-"), dict(base)]
    hashes = line_hashes(pa.Table.from_pylist(rows, schema=WEB_LOGS_BRONZE.arrow_schema()))
    assert len(set(hashes.tolist())) == 5 and hashes[0] == hashes[5]


def test_elements_are_batch_fragments_on_the_streaming_hot_path():
    """A busy site (200 requests/s, polls of 2,000 lines): what bronze and silver emit
    are batches, counted on their outputs."""
    config = WebLogConfig(count=12_000, rate_per_s=200, seed=6,
                          start=datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc))
    timed = [(event_ms / 1000, line) for _, event_ms, line in
             WebLogGenerator(config).render_timed()]
    stream = TestStream()
    for i in range(0, len(timed), 2000):
        chunk = timed[i:i + 2000]
        micros = [round(ts * _US) for ts, _ in chunk]
        stream = stream.add_elements([TimestampedValue(live_batch(
            [line.encode() for _, line in chunk], [f"s#{i + j}" for j in range(len(chunk))],
            micros, None), min(micros) / _US)])
        stream = stream.advance_watermark_to(chunk[-1][0] - 10)
    stream = stream.advance_watermark_to_infinity()
    out = run_and_collect(lambda p: p | stream | WebLogsStreamingMedallion(
        POLICY, mode=Streaming(), clock=fixed_clock, drop_redeliveries=True),
        streaming=True, as_rows=False)
    bronze, silver = out["web_logs_bronze"], out["web_logs_silver"]
    assert sum(t.num_rows for t in bronze) == sum(t.num_rows for t in silver) == 12_000
    assert 12_000 / len(bronze) >= 1000, len(bronze)
    assert 12_000 / len(silver) >= 200, len(silver)
    # gold: a few elements per window, not one per line
    assert len(out["web_traffic_by_status"]) < 12_000 / 20
