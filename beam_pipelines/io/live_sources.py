"""Unbounded sources for streaming runs on the local runner: a Pub/Sub subscription, or the
metrics generator itself when no service is at hand.

Both are one root transform, :class:`LiveRead`, around a *poller* that returns whatever is
available now. ``LiveRead`` owns what every live source needs:

* the watermark: the newest event time seen minus ``max_out_of_orderness`` (records
  further behind are late), never ahead of the wall clock, and moved up to the wall clock
  when the source has been idle for ``idle_after_s`` so the last windows close;
* a bounded run: at ``stop_at`` (or when :func:`request_drain` is called, e.g. on Ctrl-C)
  it stops polling and its watermark goes to the end of time, so every window fires its
  final pane and the pipeline finishes on its own: a drain, not a cancel.

Why not Beam's own sources: on the DirectRunner, ``ReadFromPubSub`` pulls 10 messages at a
time, puts the watermark at the wall clock and never ends; an unbounded splittable DoFn
(``PeriodicImpulse`` included) fails there in streaming mode (Beam 2.77: the streaming
GroupByKey override is applied before the SDF's own GroupByKey exists, and
``defer_remainder`` is not supported). So ``LiveRead`` is executed by a small evaluator
installed into the DirectRunner by :func:`beam_pipelines.runners.local.install`, like its built-in
Pub/Sub read.
On Dataflow the native Pub/Sub source (with ``id_label``) is used instead, see
:func:`read_pubsub`.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Duration, Timestamp

from schemas.messages import (
    ENVELOPE_ATTRIBUTE,
    ENVELOPE_NDJSON,
    EVENT_ID_ATTRIBUTE,
    EVENT_TIME_ATTRIBUTE,
    split_envelope,
)
from transforms.bronze import RawRecord, micros_of

log = logging.getLogger(__name__)

_DRAIN = threading.Event()


def request_drain() -> None:
    """Ask every live source of this process to stop reading; windows then close."""
    _DRAIN.set()


def drain_requested() -> bool:
    return _DRAIN.is_set()


def reset_drain() -> None:
    _DRAIN.clear()
    _READ[0] = 0
    _FAILURE[0] = None


#: Why a live source gave up (an outage longer than allowed), which ends the run with
#: exit 2 once it has drained; None while all is well.
_FAILURE: list = [None]


def source_failure() -> str | None:
    return _FAILURE[0]


#: Seconds between two heartbeat lines of a live source (0: none).
_HEARTBEAT = [0.0]


def set_heartbeat(seconds: float) -> None:
    _HEARTBEAT[0] = max(0.0, seconds)


def heartbeat_line(read: int, since_read: int, seconds: float, watermark, now: float) -> str:
    """One line: what the source read, how fast, and how far its watermark trails."""
    lag = "no watermark yet" if watermark is None else \
        f"watermark {max(0.0, now - watermark.micros / 1e6):,.0f}s behind the wall clock"
    line = (f"… {read:,} records read ({since_read / max(seconds, 1e-9):,.0f}/s over the "
            f"last {seconds:.0f}s), {lag}")
    from beam_pipelines.io import delivery

    ledger = delivery.current()
    if ledger is not None:
        line += f", {ledger.held_messages():,} messages awaiting their writes"
    return line


def _give_up(reason: str) -> None:
    _FAILURE[0] = reason
    request_drain()


#: Records every live source of this process handed to the pipeline since the last
#: ``reset_drain``: the summary's input count, kept apart from what the layers wrote.
_READ = [0]


def records_read() -> int:
    return _READ[0]


class Poller:
    """What :class:`LiveRead` asks of a source: ``open``, ``poll(now)`` → ``[(micros,
    RawRecord)]`` and ``close``; ``has_more`` (poll again at once) and ``caught_up`` (no
    backlog behind); at the end, ``stop_reading`` then ``pending`` until it holds nothing
    more. A source that holds nothing of its own keeps these defaults."""

    has_more = False
    caught_up = True

    def stop_reading(self) -> None:
        pass

    def pending(self) -> bool:
        return False


class LiveRead(beam.PTransform):
    """Root transform: the RawRecords ``poller.poll(now)`` returns, as ``(event_time_micros,
    record)`` pairs, timestamped with their event time and stamped with the watermark
    they arrived under.

    With ``batches``, each poll is one element instead: a live raw batch
    (:func:`transforms.batches.live_batch`) timestamped with its oldest event time.

    With ``max_future_s``, a record dated further ahead of the wall clock does not move the
    watermark (bronze dead-letters it ``future_event``): one record dated 2099 would
    otherwise make every record after it late."""

    def __init__(self, poller, stop_at: float | None = None,
                 max_out_of_orderness_s: float = 10.0, idle_after_s: float = 5.0,
                 pause_s: float = 0.1, batches: bool = False,
                 max_future_s: float | None = None):
        super().__init__()
        self.max_future_s = max_future_s
        self.batches = batches
        self.poller = poller
        self.stop_at = stop_at
        self.lag = Duration(seconds=max_out_of_orderness_s)
        self.idle_after_s = idle_after_s
        self.pause_s = pause_s
        #: ``--archive`` (see :func:`with_archive`), and the writer made from it at the
        #: first round
        self.archive_dir: str | None = None
        self.archive = None

    def expand(self, pbegin):
        return pvalue.PCollection(pbegin.pipeline, is_bounded=False)

    def get_windowing(self, inputs):
        return beam.Windowing(GlobalWindows())

    def read(self, now: float):
        """One round: ``(elements, watermark, finished)``; the state lives on the transform
        (the runner makes a new evaluator for every round)."""
        state = self.__dict__.setdefault("_state", {"newest": None, "last_data": now,
                                                    "watermark": None, "open": False,
                                                    "lock": threading.Lock()})
        with state["lock"]:
            if _DRAIN.is_set() or (self.stop_at is not None and now >= self.stop_at):
                # The poller stops reading, then hands over what it still holds (TCP's
                # queue) before the run ends.
                if state["open"] and not state.get("draining"):
                    self.poller.stop_reading()
                    state["draining"] = True
                if not (state["open"] and self.poller.pending()):
                    if state["open"]:
                        self.poller.close()
                        state["open"] = False
                    return [], MAX_TIMESTAMP, True
            if not state["open"]:
                self.poller.open()
                state["open"] = True
            items = self.poller.poll(now)
            if self.archive is None and self.archive_dir:
                from beam_pipelines.io.archive import ArchiveWriter

                self.archive = ArchiveWriter(self.archive_dir)
            if self.archive is not None:
                self.archive.write(items)  # durably, before anything is handed on
            _READ[0] += len(items)
            out = []
            newest = state["newest"]
            arrival = state["watermark"]  # what these records are judged late against
            limit = (None if self.max_future_s is None
                     else round((now + self.max_future_s) * 1_000_000))
            if self.batches:
                if items:
                    out.append(self._batch(items, arrival))
                    top = max((m for m, _ in items if limit is None or m <= limit),
                              default=None)
                    if top is not None and (newest is None or top > newest.micros):
                        newest = Timestamp(micros=top)
            else:
                for micros, record in items:
                    ts = Timestamp(micros=micros)
                    if arrival is not None:
                        record = record._replace(watermark=arrival.micros)
                    if (newest is None or ts > newest) and (limit is None or micros <= limit):
                        newest = ts
                    out.append(GlobalWindows.windowed_value(record, timestamp=ts))
            state["newest"] = newest
            if items:
                state["last_data"] = now
            wall = Timestamp.of(now)
            # Idle means caught up, not merely quiet: a source that cannot reach its
            # service, or that holds back while its writers catch up, may have a backlog
            # behind it, which moving to the wall clock would make late.
            caught_up = self.poller.caught_up
            if not caught_up:
                state["last_data"] = now
            if now - state["last_data"] >= self.idle_after_s:
                target = wall - self.lag
            elif newest is not None:
                target = min(newest - self.lag, wall)
            else:
                target = None
            current = state["watermark"]
            if target is not None and (current is None or target > current):
                state["watermark"] = current = target
            self._beat(state, now, current)
            if not items and not self.poller.has_more:
                time.sleep(self.pause_s)  # nothing due: do not spin
            return out, current, False

    @staticmethod
    def _beat(state: dict, now: float, watermark) -> None:
        """Every ``set_heartbeat`` seconds, a line on stdout: a long run is not silent."""
        every = _HEARTBEAT[0]
        if not every:
            return
        last = state.setdefault("beat", (now, _READ[0]))
        if now - last[0] >= every:
            print(heartbeat_line(_READ[0], _READ[0] - last[1], now - last[0], watermark, now),
                  flush=True)
            state["beat"] = (now, _READ[0])

    @staticmethod
    def _batch(items, arrival):
        from transforms.batches import live_batch

        micros = [m for m, _ in items]
        table = live_batch([r.payload for _, r in items], [r.source for _, r in items], micros,
                           arrival.micros if arrival is not None else None)
        return GlobalWindows.windowed_value(table, timestamp=Timestamp(micros=min(micros)))


# ---- Pub/Sub ------------------------------------------------------------------------------
def raw_records(data: bytes, attributes: dict | None, origin: str) -> list[RawRecord]:
    """One Pub/Sub message → the RawRecords it carries: one, or one per line of an NDJSON
    envelope. Each keeps its own bytes, so a bad event is dead-lettered verbatim."""
    attributes = attributes or {}
    source = f"{origin}#{attributes.get(EVENT_ID_ATTRIBUTE, '')}"
    if attributes.get(ENVELOPE_ATTRIBUTE) == ENVELOPE_NDJSON:
        return [RawRecord(event, f"{source}/{i}", attributes=attributes) for i, event in
                split_envelope(data, attributes)]
    return [RawRecord(data, source, attributes=attributes)]


#: Fractional seconds finer than microseconds: Beam's parser keeps them.
_FINER_THAN_US = re.compile(r"[.,]\d{7}")


def event_time_micros(text: str) -> int:
    """An RFC 3339 event time → exact microseconds since the epoch: Python's own parser for
    a time with a zone and at most microseconds (what publishers send; dateutil's, which
    Beam's ``from_rfc3339`` uses, costs ~25 µs a message), Beam's for anything else."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None and not _FINER_THAN_US.search(text):
        return micros_of(parsed)
    return Timestamp.from_rfc3339(text).micros


def _micros(attributes: dict, publish_time) -> int:
    """A message's event time: its attribute, else when it was published (a protobuf
    ``Timestamp``)."""
    text = attributes.get(EVENT_TIME_ATTRIBUTE)
    if text:
        try:
            return event_time_micros(text)
        except ValueError:
            pass  # bronze reads the record's own timestamp; the attribute is a hint
    return publish_time.ToMicroseconds()


class PubSubPoller(Poller):
    """Synchronous pulls of up to ``max_messages``.

    With a :class:`~beam_pipelines.io.delivery.DeliveryLedger` (the local lakehouse), a
    message is acknowledged once every record it carried is in a terminal table, its ack
    deadline extended while it waits, and pulling pauses while too many records wait.
    Without one (another sink), it is acknowledged once handed downstream: a crash in
    between loses it."""

    def __init__(self, subscription: str, max_messages: int = 1000,
                 batch_records: int = 5000, batch_s: float = 0.5,
                 max_outage_s: float = 300.0):
        self.subscription = subscription
        self.max_messages = max_messages
        self.batch_records = batch_records
        self.batch_s = batch_s
        self.has_more = False
        self._client = None
        self._ledger = None
        self._deadline_s = 10
        self._pending: list[str] = []
        self._health = ServiceHealth(f"Pub/Sub {subscription}", max_outage_s)
        #: The last pull succeeded and found nothing: the subscription is drained for now.
        self.caught_up = False

    def open(self):
        from google.cloud import pubsub_v1

        from beam_pipelines.io import delivery

        self._client = pubsub_v1.SubscriberClient()
        self._ledger = delivery.current()
        if self._ledger is not None:
            delivery.settle_at_finish(delivery.acknowledger(self.subscription))
            # A held message keeps the subscription's deadline, renewed at half of it: a
            # run that dies leaves its messages to be redelivered as soon as usual.
            try:
                self._deadline_s = self._client.get_subscription(
                    subscription=self.subscription, retry=None,
                    timeout=5.0).ack_deadline_seconds or 10
            except Exception:  # noqa: BLE001 - the pulls will report the outage
                self._deadline_s = 10

    def close(self):
        self._settle()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _settle(self):
        """Acknowledge what is done, renew what still waits; an acknowledgement that
        fails is retried next round (or, if its id has lapsed, the message comes back
        and is recognised as already written)."""
        from google.api_core import exceptions

        from beam_pipelines.io import delivery

        if self._client is None:
            return
        if self._ledger is None:
            done, self._pending = self._pending, []
        else:
            done = self._ledger.take_ready()
        try:
            delivery.acknowledge(self._client, self.subscription, done)
            if self._ledger is not None:
                delivery.extend(self._client, self.subscription,
                                self._ledger.overdue(self._deadline_s / 2), self._deadline_s)
        except (exceptions.ServiceUnavailable, exceptions.DeadlineExceeded,
                exceptions.RetryError):
            if self._ledger is None:
                self._pending = done + self._pending
            else:
                self._ledger.requeue(done)
        except exceptions.GoogleAPICallError:
            pass  # ids the service no longer knows (it restarted): nothing left to ack

    def poll(self, now: float):
        """Pulls until ``batch_records`` records or ``batch_s`` seconds: a pull returns a
        few hundred messages at most, and the local runner's cost is per bundle."""
        self._settle()
        if self._ledger is not None and self._ledger.saturated():
            self.has_more = self.caught_up = False  # back-pressure: writers catch up first
            return []
        items = []
        deadline = time.monotonic() + self.batch_s
        while True:
            pulled = self._pull(items)
            if not pulled or len(items) >= self.batch_records or time.monotonic() >= deadline:
                break
        self.has_more = len(items) >= self.batch_records
        return items

    def _pull(self, items: list) -> int:
        from google.api_core import exceptions

        self.caught_up = False
        if not self._health.due():
            return 0
        if self._client is None:  # dropped after a failure: a new channel, no old backoff
            from google.cloud import pubsub_v1

            self._client = pubsub_v1.SubscriberClient()
        try:
            # One attempt: the client's own retries would block this round for a minute;
            # ServiceHealth retries instead, and says so.
            response = self._client.pull(subscription=self.subscription,
                                         max_messages=self.max_messages, timeout=2.0,
                                         retry=None)
        except exceptions.DeadlineExceeded:
            self.caught_up = True
            return 0  # nothing to pull within the timeout: not an outage
        except exceptions.NotFound:
            self._health.failed("the subscription does not exist")
            return 0
        except (exceptions.GoogleAPICallError, exceptions.RetryError) as exc:
            self._health.failed(f"the service is unreachable ({type(exc).__name__})")
            # gRPC's channel backs off reconnecting for up to two minutes: start afresh.
            self._client.close()
            self._client = None
            return 0
        self._health.succeeded()
        # The protobuf under the client's wrapper: its fields are read without a
        # conversion per access (a third of the pull loop's time, one event per message).
        response = type(response).pb(response)
        self.caught_up = not response.received_messages
        for received in response.received_messages:
            message = received.message
            attributes = dict(message.attributes)
            micros = _micros(attributes, message.publish_time)
            if not attributes.get(EVENT_ID_ATTRIBUTE):  # not from our publisher
                attributes[EVENT_ID_ATTRIBUTE] = message.message_id
            records = raw_records(message.data, attributes, self.subscription)
            if self._ledger is not None:
                records = self._ledger.admit(received.ack_id, records)
            else:
                self._pending.append(received.ack_id)
            items.extend((micros, record) for record in records)
        return len(response.received_messages)


class ServiceHealth:
    """A source's outages: retried with exponential backoff (0.5 s up to 5 s), one line
    on stderr at each change of state, and after ``max_outage_s`` the run gives up: it
    drains, prints its summary and exits 2."""

    def __init__(self, what: str, max_outage_s: float, first_s: float = 0.5,
                 longest_s: float = 5.0, clock=time.monotonic, say=None):
        self.what = what
        self.max_outage_s = max_outage_s
        self.first_s = first_s
        self.longest_s = longest_s
        self._clock = clock
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._since = None     # when the outage began
        self._problem = None   # what is wrong now
        self._next_try = 0.0
        self._wait = first_s

    def due(self) -> bool:
        """Whether to try now (False while backing off)."""
        return self._since is None or self._clock() >= self._next_try

    def failed(self, problem: str) -> None:
        now = self._clock()
        if self._since is None:
            self._since, self._wait = now, self.first_s
        if problem != self._problem:
            self._problem = problem
            self._say(f"{self.what}: {problem}; retrying with backoff (gives up after "
                      f"{self.max_outage_s:g}s)")
        if now - self._since >= self.max_outage_s:
            _give_up(f"{self.what}: {problem} for {now - self._since:.0f}s "
                     f"(--max-source-outage {self.max_outage_s:g}s)")
            return
        self._next_try = now + self._wait
        self._wait = min(self._wait * 2, self.longest_s)

    def succeeded(self) -> None:
        if self._since is not None:
            self._say(f"{self.what}: reading again after {self._clock() - self._since:.0f}s")
        self._since = self._problem = None


def read_pubsub(subscription: str, stop_at: float | None, max_out_of_orderness_s: float,
                dataflow: bool = False, batches: bool = False,
                max_future_s: float | None = None,
                max_outage_s: float = 300.0) -> beam.PTransform:
    """RawRecords from a subscription, timestamped with their ``event_time`` attribute
    (``batches``: live raw batches instead)."""
    if dataflow:
        return _DataflowPubSub(subscription, batches)
    return LiveRead(PubSubPoller(subscription, max_outage_s=max_outage_s), stop_at,
                    max_out_of_orderness_s,
                    batches=batches, max_future_s=max_future_s)


class _DataflowPubSub(beam.PTransform):
    """Dataflow's native source: event-time watermark from the attribute, and ``id_label``
    dedupe of redeliveries in the service (the portable dedupe runs as well). With
    ``batches``, the records of a bundle become live raw batches."""

    def __init__(self, subscription: str, batches: bool = False):
        super().__init__()
        self._subscription = subscription
        self._batches = batches
        self.archive_dir: str | None = None  # --archive (see with_archive)

    def expand(self, begin):
        subscription = self._subscription
        records = (begin
                   | "ReadFromPubSub" >> beam.io.ReadFromPubSub(
                       subscription=subscription, with_attributes=True,
                       timestamp_attribute=EVENT_TIME_ATTRIBUTE, id_label=EVENT_ID_ATTRIBUTE)
                   | "SplitEnvelopes" >> beam.FlatMap(
                       lambda m: raw_records(m.data, m.attributes, subscription)))
        archive_beside(records, self.archive_dir)
        if not self._batches:
            return records
        return records | "BatchRecords" >> beam.ParDo(BatchRecordsFn())


def archive_beside(records, directory: str | None) -> None:
    """Dataflow: the raw archive as a step beside the records, fused with the read."""
    if directory:
        from beam_pipelines.io.archive import ArchiveRecords

        records | "ArchiveRaw" >> ArchiveRecords(directory)


def with_archive(source: beam.PTransform, directory: str | None) -> beam.PTransform:
    """A live source that also keeps every record it reads in the raw archive: locally
    :class:`LiveRead` writes each round before handing it on, on Dataflow the source adds a
    step beside its records (:func:`archive_beside`)."""
    source.archive_dir = directory or None
    return source


class BatchRecordsFn(beam.DoFn):
    """Timestamped RawRecords → live raw batches of at most ``max_records``, one per
    bundle at least, each timestamped at its oldest record: never behind what the records
    themselves held the watermark at."""

    def __init__(self, max_records: int = 5000):
        self._max = max_records

    def start_bundle(self):
        self._items = []

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        self._items.append((timestamp.micros, record))
        if len(self._items) >= self._max:
            items, self._items = self._items, []
            yield LiveRead._batch(items, None)

    def finish_bundle(self):
        if self._items:
            items, self._items = self._items, []
            yield LiveRead._batch(items, None)


# ---- the generator ------------------------------------------------------------------------
class GeneratorPoller(Poller):
    """A generator (``generator(config)``: metrics or web logs) paced by the wall clock:
    ``poll`` returns every record due by ``now`` (late ones carry their older event
    time)."""

    def __init__(self, generator, config, origin: str = "generator",
                 max_records: int = 5000):
        self.generator = generator
        self.config = config
        self.origin = origin
        self.max_records = max_records
        self.has_more = False
        self._records = None
        self._next = None
        self._emitted = 0

    def open(self):
        if self._records is None:
            self._records = self.generator(self.config).render_timed()
            self._next = next(self._records, None)

    def close(self):
        pass

    def poll(self, now: float):
        due_ms = now * 1000
        items = []
        while (self._next is not None and self._next[0] <= due_ms
               and len(items) < self.max_records):
            _, event_ms, record = self._next
            items.append((event_ms * 1000, RawRecord(record, f"{self.origin}#{self._emitted}")))
            self._emitted += 1
            self._next = next(self._records, None)
        self.has_more = len(items) >= self.max_records
        return items


def generate_live(generator, config, stop_at: float | None,
                  max_out_of_orderness_s: float, batches: bool = False,
                  max_future_s: float | None = None) -> beam.PTransform:
    """Records of ``generator(config)`` in real time, timestamped with their event time."""
    return LiveRead(GeneratorPoller(generator, config), stop_at, max_out_of_orderness_s,
                    batches=batches, max_future_s=max_future_s)


def live_start(interval_s: float) -> datetime:
    """Now, rounded down to the reporting interval: the first tick of a live generator."""
    now = time.time()
    return datetime.fromtimestamp(now - now % interval_s, tz=timezone.utc)
