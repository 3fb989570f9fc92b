"""Streaming benchmarks against the official Pub/Sub emulator.

* Sustained rate: a backlog of 200,000 events shaped like seed 000 (10 servers every 15 ms)
  is published first, then the streaming pipeline (bronze → silver → gold → lakehouse, on
  the local runner) reads it; the rate is the events over the time from its first pull to
  the end of its drain. With one event per message and with envelopes of 10. The
  reference, in the same run: the bare pull loop of the same source over the same backlog
  (pull and acknowledge, nothing else), the ceiling any pipeline reading it has here.
* Live: a publisher paced at ten times seed 000 (20 servers every 3 ms = 6,667 events/s,
  envelopes of 10) runs beside the pipeline, from its first pull on (the latency of a
  running pipeline; catching up after start-up is the backlog's figure); reported are
  the events/s reaching bronze and the latency from an event's time (when the publisher
  sent it) to its bronze row (``ingest_timestamp``), p50 and p95. Rows become visible in
  the lakehouse files up to one flush (5 s) later.

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
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io import live_sources
from beam_pipelines.io.lakehouse import clear_tables, write_catalog, write_empty_tables
from beam_pipelines.preflight import preflight
from beam_pipelines.runners import local as local_runner
from beam_pipelines.runs import build
from beam_pipelines.server_metrics import LAUNCH, TABLES
from beam_pipelines.summary import accounting
from transforms.windowing import Streaming

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


#: Set by the first pull (the poller the pipeline runs is a copy of the one given).
_PULLING = threading.Event()


class _FirstPullPoller(live_sources.PubSubPoller):
    """Tells when the pipeline has started pulling."""

    def poll(self, now):
        _PULLING.set()
        return super().poll(now)


def _run_pipeline(source, out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    clear_tables(out, TABLES)
    write_empty_tables(out, TABLES)
    live_sources.reset_drain()
    local_runner.install()
    options = PipelineOptions(["--output-dir", out], runner="BundleBasedDirectRunner",
                              streaming=True)
    plan = preflight(options, LAUNCH)  # the live generator's plan: no feed to check
    assert plan.mode == Streaming()
    p = beam.Pipeline(options=options)
    build(p, p | "ReadLive" >> source, LAUNCH, plan, drop_redeliveries=True)
    p.run().wait_until_finish()


def _publish(topic: str, seconds: float, envelope: int, pace: bool,
             start: datetime | None = None, servers: int = 10,
             interval: str = "15ms") -> subprocess.Popen:
    args = [sys.executable, "-m", "generators", "metrics", "--to", "pubsub", "--topic", topic,
            "--servers", str(servers), "--interval", interval, "--duration", f"{seconds}s",
            "--envelope", str(envelope), "--no-progress", "--pace" if pace else "--no-pace"]
    if start is not None:
        args += ["--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")]
    return subprocess.Popen(args, env={**os.environ}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _bare_pull(subscription: str, events: int) -> float:
    """Events/s of the source's own pull loop over a backlog: the reference."""
    poller = live_sources.PubSubPoller(subscription)
    poller.open()
    read, started = 0, time.perf_counter()
    while read < events:
        read += len(poller.poll(time.time()))
    poller.close()
    return events / (time.perf_counter() - started)


def _bare_pull_latency(topic: str, subscription: str, seconds: float) -> tuple[float, float]:
    """(p50, p95) seconds from event time to pull, for the source's own loop beside the
    paced publisher (late events, older by design, included as for the pipeline)."""
    import numpy as np

    from beam_pipelines.ops.pubsub import setup, teardown

    teardown(topic, subscription)
    setup(topic, subscription)
    publisher = _publish(topic, seconds, 10, pace=True, servers=20, interval="3ms")
    poller = live_sources.PubSubPoller(subscription)
    poller.open()
    lags, end = [], time.time() + seconds + 5
    while time.time() < end:
        items = poller.poll(time.time())
        now = time.time()
        lags += [now - micros / 1e6 for micros, _ in items]
    poller.close()
    publisher.communicate(timeout=120)
    teardown(topic, subscription)
    p50, p95 = np.percentile(lags, [50, 95])
    return float(p50), float(p95)


def _backlog(topic: str, subscription: str, seconds: float, envelope: int) -> int:
    from beam_pipelines.ops.pubsub import setup, teardown

    teardown(topic, subscription)
    setup(topic, subscription)
    start = datetime.now(timezone.utc) - timedelta(seconds=seconds + 5)
    publisher = _publish(topic, seconds, envelope, pace=False, start=start)
    _, err = publisher.communicate(timeout=900)
    assert publisher.returncode == 0, err
    return int(round(seconds / 0.015)) * 10


def bench_streaming(workdir: str, loop_rate: float | None, backlog_events: int = 200_000,
                    live_s: float = 30.0) -> dict:

    results = {}
    backlog_s = backlog_events / SEED_000_EVENTS_PER_S
    for envelope in (1, 10):
        topic = f"projects/bench-project/topics/stream-{envelope}"
        subscription = f"projects/bench-project/subscriptions/stream-{envelope}"
        events = _backlog(topic, subscription, backlog_s, envelope)
        bare = _bare_pull(subscription, events)
        events = _backlog(topic, subscription, backlog_s, envelope)
        _PROGRESS.update(read=0, first=None)
        out = os.path.join(workdir, f"streaming_backlog_{envelope}")
        source = live_sources.LiveRead(_CountingPoller(subscription, events), None, 10.0,
                                       batches=True)
        _run_pipeline(source, out)
        seconds = time.perf_counter() - _PROGRESS["first"]
        with connect_catalog(write_catalog(out, TABLES), read_only=False) as con:
            counts = accounting(con)
        assert counts["input"] == events, (counts["input"], events)
        rate = events / seconds
        key = f"streaming_backlog_envelope{envelope}"
        results.update({f"{key}_events_per_s": rate, f"{key}_bare_pull_events_per_s": bare,
                        f"{key}_ratio_to_bare_pull": rate / bare,
                        f"{key}_ratio_to_seed000": rate / SEED_000_EVENTS_PER_S})
        if loop_rate:
            results[f"{key}_ratio_to_loop"] = rate / loop_rate
        print(f"streaming K={envelope:<3} {rate:>9,.0f} events/s sustained over a backlog of "
              f"{events:,}  (×{rate / bare:.2f} the bare pull loop's {bare:,.0f}/s; "
              f"×{rate / SEED_000_EVENTS_PER_S:.1f} seed 000's 667/s; target ≥ 10,000/s: "
              f"{'✓' if rate >= 10_000 else '✗'})", flush=True)

    results.update(bench_live(workdir, live_s))
    return results


def bench_live(workdir: str, live_s: float = 30.0) -> dict:
    """Live, paced at ten times seed 000, the publisher beside the pipeline; the reference
    is the bare pull loop beside the same publisher: the latency of the path to the
    source."""
    from beam_pipelines.ops.pubsub import setup

    results = {}
    topic = "projects/bench-project/topics/stream-live"
    subscription = "projects/bench-project/subscriptions/stream-live"
    bare_p50, bare_p95 = _bare_pull_latency(topic, subscription, live_s)
    setup(topic, subscription)
    out = os.path.join(workdir, "streaming_live")
    # The publisher starts once the pipeline pulls: the latency of a running pipeline, not
    # of its start-up (a backlog's catch-up is the sustained figure above).
    poller = _FirstPullPoller(subscription)
    publishing = {}
    _PULLING.clear()

    def publish_then_drain():
        if _PULLING.wait(120):
            publishing["process"] = _publish(topic, live_s, 10, pace=True, servers=20,
                                             interval="3ms")
            publishing["process"].communicate(timeout=live_s + 120)
            time.sleep(5)  # what is in flight reaches bronze
        live_sources.request_drain()

    starter = threading.Thread(target=publish_then_drain, daemon=True)
    starter.start()
    _run_pipeline(live_sources.LiveRead(poller, None, 10.0, batches=True), out)
    starter.join(timeout=30)
    assert publishing["process"].returncode == 0
    with connect_catalog(write_catalog(out, TABLES), read_only=False) as con:
        bronze, p50, p95, first, last = con.execute("""
            select count(*),
                   quantile_cont(epoch_ms(ingest_timestamp) - epoch_ms("timestamp"), 0.5),
                   quantile_cont(epoch_ms(ingest_timestamp) - epoch_ms("timestamp"), 0.95),
                   min(ingest_timestamp), max(ingest_timestamp)
            from server_metrics_bronze""").fetchone()
    span = max(1e-9, (last - first).total_seconds())
    rate = bronze / span
    paced = 20 / 0.003
    results.update({
        "streaming_live_events": bronze,
        "streaming_live_events_per_s": rate,
        "streaming_live_ratio_to_publisher": rate / paced,
        "streaming_live_latency_p50_s": p50 / 1000,
        "streaming_live_latency_p95_s": p95 / 1000,
        "streaming_live_bare_pull_latency_p50_s": bare_p50,
        "streaming_live_bare_pull_latency_p95_s": bare_p95,
    })
    print(f"streaming live {rate:>9,.0f} events/s reached bronze beside a publisher paced at "
          f"{paced:,.0f}/s, ten times seed 000 (×{rate / paced:.2f}); event → bronze latency "
          f"p50 {p50 / 1000:.2f}s, p95 {p95 / 1000:.2f}s (target ≤ 2s: "
          f"{'✓' if p95 / 1000 <= 2 else '✗'}; the bare pull loop's: p50 {bare_p50:.2f}s, "
          f"p95 {bare_p95:.2f}s)", flush=True)
    return results
