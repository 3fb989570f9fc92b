"""Publishing generated metrics to Pub/Sub, paced like the real fleet.

Every message carries an ``event_time`` attribute (ISO 8601; the earliest event of an
envelope) and a unique ``event_id`` attribute (seed and sequence number, so a rerun
publishes the same ids). With ``envelope > 1`` a message packs that many events as NDJSON,
``envelope=ndjson`` telling the source to split it. SIGINT and SIGTERM stop the generator,
flush everything buffered and report the counts: what was acknowledged by Pub/Sub is
exactly what was counted.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass

from generators.metrics import MetricsGenerator, iso_ms
from generators.pacing import paced
from generators.weblogs import WebLogGenerator
from schemas.messages import message_attributes


@dataclass
class PublishStats:
    messages: int = 0
    events: int = 0
    failed: int = 0
    first_error: str | None = None

    def line(self) -> str:
        text = f"published {self.messages:,} messages ({self.events:,} events)"
        if self.failed:
            text += f", {self.failed:,} failed: {self.first_error}"
        return text


class _Counter:
    """Counts acknowledgements from the client's callback threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stats = PublishStats()

    def callback(self, events: int):
        def done(future):
            error = future.exception()
            with self.lock:
                if error is None:
                    self.stats.messages += 1
                    self.stats.events += events
                else:
                    self.stats.failed += 1
                    self.stats.first_error = self.stats.first_error or str(error)[:200]
        return done


def make_publisher():
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=1000, max_bytes=4 * 1024 * 1024, max_latency=0.02),
        publisher_options=pubsub_v1.types.PublisherOptions(
            flow_control=pubsub_v1.types.PublishFlowControl(
                message_limit=50_000, byte_limit=128 * 1024 * 1024,
                limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK)))


def publish(generator: MetricsGenerator | WebLogGenerator, topic: str, *, envelope: int = 1,
            pace: bool = True, progress: bool = False, publisher=None,
            stop: threading.Event | None = None, handle_signals: bool = True) -> PublishStats:
    """Publish everything the generator renders; returns the acknowledged counts.

    ``pace``: send each record when it is due. A generator starting about now (a live
    fleet) is paced by the wall clock itself, so a record leaves at its time and one due
    while the client was starting leaves at once; one starting at another time is
    replayed at the same speed from the first record on."""
    publisher = publisher or make_publisher()
    stop = stop or threading.Event()
    counter = _Counter()
    seed = generator.config.seed
    previous = {}
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    wall0 = time.monotonic()
    seq = 0
    sent = 0
    last_report = wall0
    batch: list[str] = []
    batch_event_ms: int | None = None
    futures = []

    def send(lines, event_ms):
        nonlocal seq, sent
        attrs = message_attributes(iso_ms(event_ms), f"{seed:x}-{seq:012d}", envelope)
        data = "\n".join(lines).encode()
        future = publisher.publish(topic, data, **attrs)
        future.add_done_callback(counter.callback(len(lines)))
        futures.append(future)
        if len(futures) > 10_000:
            del futures[:5_000]  # done callbacks count them; keep memory flat
        seq += 1
        sent += 1

    def flush_partial():  # do not hold a partial envelope across a wait
        nonlocal batch, batch_event_ms
        if batch:
            send(batch, batch_event_ms)
            batch, batch_event_ms = [], None

    try:
        for _, event_ms, line in paced(generator.render_timed(), pace, stop,
                                       before_wait=flush_partial):
            batch.append(line)
            batch_event_ms = event_ms if batch_event_ms is None else min(batch_event_ms,
                                                                          event_ms)
            if len(batch) >= envelope:
                send(batch, batch_event_ms)
                batch, batch_event_ms = [], None
            if progress and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                elapsed = last_report - wall0
                print(f"\r{counter.stats.messages:,} messages acknowledged, {sent:,} sent, "
                      f"{sent / elapsed:,.0f} msg/s", end="", file=sys.stderr, flush=True)
        if batch:
            send(batch, batch_event_ms)
    finally:
        # Flush: stop() publishes every batched message and waits for the results.
        publisher.stop()
        for future in futures:
            try:
                future.result(timeout=60)
            except Exception:  # noqa: BLE001 - counted by the callback
                pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress:
            print(file=sys.stderr)
    # Callbacks may run a moment after result() returns.
    deadline = time.monotonic() + 5
    while counter.stats.messages + counter.stats.failed < sent and time.monotonic() < deadline:
        time.sleep(0.01)
    return counter.stats
