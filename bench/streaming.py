"""Streaming benchmarks against the official Pub/Sub emulator.

* Sustained rate: a backlog of N events is published first, then the streaming pipeline
  (bronze → silver → gold → lakehouse, on the local runner) reads it; the rate is N over the
  time from its first pull to the end of its drain. With one event per message and with
  envelopes of 10.
* Live: the publisher paced like seed 000 (10 servers every 15 ms = 667 events/s) runs
  beside the pipeline; reported are the events/s reaching bronze and the latency from an
  event's time (when the publisher sent it) to its bronze row (``ingest_timestamp``),
  p50 and p95. Rows become visible in the lakehouse files up to one flush (5 s) later.

Publisher, emulator and pipeline share the machine's cores, as they would on a laptop.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import duckdb
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import live_sources, local_runner
from beam_pipelines.config import load_rules
from beam_pipelines.lakehouse import clear_tables, write_catalog, write_empty_tables
from beam_pipelines.server_metrics import TABLES, build_streaming_pipeline
from beam_pipelines.summary import accounting
from transforms.windowing import StreamingConfig

_PROGRESS = {"read": 0, "first": None}
_LOCK = threading.Lock()
SEED_000_EVENTS_PER_S = 667


class _CountingPoller(live_sources.PubSubPoller):
    """Drains the pipeline once ``target`` records were pulled."""

    def __init__(self, subscription, target):
        super().__init__(subscription)
        self.target = target

    def poll(self, now):
        items = super().poll(now)
        with _LOCK:
            if items and _PROGRESS["first"] is None:
                _PROGRESS["first"] = time.perf_counter()
            _PROGRESS["read"] += len(items)
            if _PROGRESS["read"] >= self.target:
                live_sources.request_drain()
        return items


def _run_pipeline(source, out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    clear_tables(out, TABLES)
    write_empty_tables(out, TABLES)
    live_sources.reset_drain()
    local_runner.install()
    options = PipelineOptions([], runner="BundleBasedDirectRunner", streaming=True)
    p = beam.Pipeline(options=options)
    build_streaming_pipeline(p, source, out, load_rules(), StreamingConfig(),
                             drop_redeliveries=True)
    p.run().wait_until_finish()


def _publish(topic: str, seconds: float, envelope: int, pace: bool,
             start: datetime | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "generators", "metrics", "--to", "pubsub", "--topic", topic,
            "--servers", "10", "--interval", "15ms", "--duration", f"{seconds}s",
            "--envelope", str(envelope), "--no-progress", "--pace" if pace else "--no-pace"]
    if start is not None:
        args += ["--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")]
    return subprocess.Popen(args, env={**os.environ}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def bench_streaming(workdir: str, loop_rate: float, backlog_s: float = 30.0,
                    live_s: float = 30.0) -> dict:
    from beam_pipelines.pubsub import setup

    results = {}
    for envelope in (1, 10):
        topic = f"projects/bench-project/topics/stream-{envelope}"
        subscription = f"projects/bench-project/subscriptions/stream-{envelope}"
        setup(topic, subscription)
        start = datetime.now(timezone.utc) - timedelta(seconds=backlog_s + 5)
        publisher = _publish(topic, backlog_s, envelope, pace=False, start=start)
        _, err = publisher.communicate(timeout=600)
        assert publisher.returncode == 0, err
        events = int(round(backlog_s / 0.015)) * 10
        _PROGRESS.update(read=0, first=None)
        out = os.path.join(workdir, f"streaming_backlog_{envelope}")
        source = live_sources.LiveRead(_CountingPoller(subscription, events), None, 10.0)
        _run_pipeline(source, out)
        seconds = time.perf_counter() - _PROGRESS["first"]
        with duckdb.connect(write_catalog(out, TABLES)) as con:
            counts = accounting(con)
        assert counts["input"] == events, (counts["input"], events)
        rate = events / seconds
        results[f"streaming_backlog_envelope{envelope}_events_per_s"] = rate
        results[f"streaming_backlog_envelope{envelope}_ratio_to_seed000"] = (
            rate / SEED_000_EVENTS_PER_S)
        results[f"streaming_backlog_envelope{envelope}_ratio_to_loop"] = rate / loop_rate
        print(f"streaming K={envelope:<3} {rate:>9,.0f} events/s sustained over a backlog of "
              f"{events:,}  (×{rate / SEED_000_EVENTS_PER_S:.2f} seed 000's 667/s, ratio to "
              f"loop {rate / loop_rate:.3f})", flush=True)

    # Live, paced like seed 000, publisher beside the pipeline.
    topic = "projects/bench-project/topics/stream-live"
    subscription = "projects/bench-project/subscriptions/stream-live"
    setup(topic, subscription)
    out = os.path.join(workdir, "streaming_live")
    publisher = _publish(topic, live_s, 1, pace=True)
    started = time.time()
    source = live_sources.LiveRead(live_sources.PubSubPoller(subscription),
                                   started + live_s + 10, 10.0)
    _run_pipeline(source, out)
    publisher.communicate(timeout=120)
    with duckdb.connect(write_catalog(out, TABLES)) as con:
        bronze, p50, p95, first, last = con.execute("""
            select count(*),
                   quantile_cont(epoch_ms(ingest_timestamp) - epoch_ms("timestamp"), 0.5),
                   quantile_cont(epoch_ms(ingest_timestamp) - epoch_ms("timestamp"), 0.95),
                   min(ingest_timestamp), max(ingest_timestamp)
            from server_metrics_bronze""").fetchone()
    span = max(1e-9, (last - first).total_seconds())
    rate = bronze / span
    results.update({
        "streaming_live_events": bronze,
        "streaming_live_events_per_s": rate,
        "streaming_live_ratio_to_seed000": rate / SEED_000_EVENTS_PER_S,
        "streaming_live_latency_p50_s": p50 / 1000,
        "streaming_live_latency_p95_s": p95 / 1000,
    })
    print(f"streaming live {rate:>9,.0f} events/s reached bronze while publishing at "
          f"seed 000's pace (×{rate / SEED_000_EVENTS_PER_S:.2f}); event → bronze latency "
          f"p50 {p50 / 1000:.2f}s, p95 {p95 / 1000:.2f}s", flush=True)
    return results
