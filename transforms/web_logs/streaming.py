"""The web-log medallion on Arrow batches in streaming: live raw batches (one per poll of a
source) → every table, with event-time windows, panes and lateness.

Records travel as batch fragments, never one element per record:

* ``Bronze``: redeliveries dropped per (delivery-id shard, minute) fragment
  (:mod:`transforms.live_bronze`, shared with server metrics), then the batch parse,
  which also dead-letters a line whose minute had closed when its batch arrived;
* ``Silver``: with ``dedupe_identical_lines``, fragments per minute of the request's time;
  ``FirstCopy`` keeps, per minute,
  a 64-bit hash of every line already accepted, so a copy in a later poll is caught, and
  forgets them once no copy can pass bronze any more; then geolocation, agents and privacy
  on the fragment, as in batch;
* ``Gold``: each fragment becomes one partial :class:`transforms.web_logs.row_gold.Traffic` per
  table, window and dimension value, and from there the row-level gold
  (:func:`transforms.web_logs.row_gold.traffic_rows`) combines them in accumulating event-time
  windows: one element per (window, dimension value, fragment).

The tables and dead letters are those of the row-level streaming web-log medallion
(:class:`.row_medallion.WebLogsMedallion`) on the same input, latest pane by latest
pane: tested. Bronze, silver and the dead letters leave as Arrow tables, the gold tables as
rows (a handful per window).
"""
from __future__ import annotations

import hashlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import BytesCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.dead_letter import DEAD_LETTERS
from schemas.web_logs import WEB_GOLD_TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER
from transforms.batches import DEAD, dead_letter_batch, keyed_tables, rows_of
from transforms.batches import count_batches as _count
from transforms.batches import declare_tables as tables
from transforms.dead_letters import dead_letter
from transforms.live_bronze import StreamingBronze
from transforms.web_logs.access_log import LogFormat
from transforms.web_logs.gold import traffic_parts
from transforms.web_logs.medallion import CleanFn, SpanFragmentsFn, WebBronzeFn, visitor_hashes
from transforms.web_logs.row_gold import TrafficFromParts
from transforms.web_logs.row_silver import IDENTITY
from transforms.windowing import MINUTE, Streaming

_US = 1_000_000
#: Tables that leave this medallion as Arrow batches (the gold tables as rows).
BATCH_TABLES = frozenset({WEB_LOGS_BRONZE.name, WEB_LOGS_SILVER.name, DEAD_LETTERS.name})
_GOLD = tuple(t.name for t in WEB_GOLD_TABLES)


def line_hashes(bronze: pa.Table) -> np.ndarray:
    """A 64-bit hash of what makes a line a copy (:data:`transforms.web_logs.row_silver.IDENTITY`):
    each field written length-first, null apart, so no two different lines spell alike."""
    parts = []
    for name in IDENTITY:
        column = bronze.column(name)
        if column.type != pa.string():
            column = pc.cast(column.cast(pa.int64()) if pa.types.is_timestamp(column.type)
                             else column, pa.string())
        length = pc.cast(pc.utf8_length(column), pa.string())
        parts.append(pc.fill_null(pc.binary_join_element_wise(length, column, ":"), "-"))
    joined = pc.binary_join_element_wise(*parts, "\x1f")
    return np.fromiter((int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(),
                                       "little") for line in joined.to_pylist()),
                       np.uint64, bronze.num_rows)


class FirstCopyFn(beam.DoFn):
    """A fragment of one minute → its lines not seen before; the others are
    ``duplicate_event`` dead letters, worded as the row-level streaming dedupe
    (:class:`transforms.dedupe.FirstSeenFn`) words them. A minute's hashes are forgotten
    once no line of it can pass bronze any more (its end plus the allowed lateness), with a
    minute to spare, as the row-level state remembers a line."""

    SEEN = ReadModifyWriteStateSpec("seen", BytesCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, policy, allowed_lateness_s: int):
        self._policy = policy
        self._remember_us = (60 + allowed_lateness_s + 60) * _US

    def setup(self):
        self._rejected = Metrics.counter("silver", "duplicate_event_rejected")
        self._elements, self._records = _count("silver_fragments")

    def process(self, keyed, seen=beam.DoFn.StateParam(SEEN),
                forget=beam.DoFn.TimerParam(FORGET)):
        minute, fragment = keyed
        self._elements.inc()
        self._records.inc(fragment.num_rows)
        hashes = line_hashes(fragment)
        known = np.frombuffer(seen.read() or b"", dtype=np.uint64)
        _, first = np.unique(hashes, return_index=True)
        new = np.zeros(len(hashes), dtype=bool)
        new[first] = True  # the first of this fragment's copies, in arrival order
        new &= ~np.isin(hashes, known)
        seen.write(np.concatenate([known, hashes[new]]).tobytes())
        forget.set(Timestamp(micros=minute + MINUTE * _US + self._remember_us))
        if new.all():
            yield fragment
            return
        copies = rows_of(fragment.filter(pa.array(~new)))
        self._rejected.inc(len(copies))
        yield TaggedOutput(DEAD, dead_letter_batch([dead_letter(
            layer="silver", step="DeduplicateRequests",
            reason="duplicate_event", message="this log line was already received",
            payload=self._policy.redact(row), source=row.get("source"),
            event_timestamp=row["timestamp"]) for row in copies]))
        if new.any():
            yield fragment.filter(pa.array(new))

    @on_timer(FORGET)
    def forget(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class TrafficPartsFn(beam.DoFn):
    """A silver fragment → per gold table and window size (the output ``table/seconds``)
    its partial traffic per (window, dimension value), timestamped at the window's start."""

    def __init__(self, window_seconds: tuple[int, ...]):
        self._windows = window_seconds

    def process(self, silver: pa.Table):
        visitors = visitor_hashes(silver)
        for name in _GOLD:
            for seconds in self._windows:
                for key, traffic in traffic_parts(name, silver, visitors, seconds):
                    yield TaggedOutput(f"{name}/{seconds}", TimestampedValue(
                        (key, traffic), Timestamp(micros=key[1])))


class StreamingWebSilver(beam.PTransform):
    """Bronze batches → {"records": deduplicated silver fragments, "dead_letters": […]}."""

    def __init__(self, policy, geo_database: str | None, streaming: Streaming,
                 clock=None, dedupe_identical_lines: bool = False):
        super().__init__()
        self._policy = policy
        self._geo_database = geo_database
        self._streaming = streaming
        self._clock = clock
        self._dedupe = dedupe_identical_lines

    def expand(self, bronze):
        dead = []
        if self._dedupe:
            unique = (bronze
                      | "SilverByMinute" >> beam.ParDo(SpanFragmentsFn(MINUTE)).with_output_types(
                          keyed_tables(int))
                      | "FirstCopy" >> beam.ParDo(FirstCopyFn(
                          self._policy, self._streaming.allowed_lateness_s)
                      ).with_outputs(DEAD, main="records"))
            tables(unique.records)
            bronze = unique.records
            dead.append(unique[DEAD])
        clean = bronze | "Clean" >> beam.ParDo(CleanFn(
            self._policy, self._geo_database, self._clock)).with_outputs(
            DEAD, main="records")
        tables(clean.records)
        return {"records": clean.records, "dead_letters": dead + [clean[DEAD]]}


class StreamingWebGold(beam.PTransform):
    """Silver fragments → every gold table, as rows in the global window."""

    def __init__(self, window_seconds: tuple[int, ...], streaming: Streaming,
                 top_n: int):
        super().__init__()
        self._windows = window_seconds
        self._streaming = streaming
        self._top_n = top_n

    def expand(self, silver):
        outputs = [f"{name}/{s}" for name in _GOLD for s in self._windows]
        parts = silver | "TrafficParts" >> beam.ParDo(TrafficPartsFn(self._windows)
                                                      ).with_outputs(*outputs)
        return {name: tuple(parts[f"{name}/{s}"] for s in self._windows)
                | f"Traffic_{name}" >> TrafficFromParts(name, self._windows, self._streaming,
                                                        self._top_n)
                for name in _GOLD}


class WebLogsStreamingMedallion(beam.PTransform):
    """Live raw batches of log lines → {table name: PCollection}: Arrow tables for
    :data:`BATCH_TABLES`, rows for the gold tables, in the global window."""

    def __init__(self, policy, geo_database: str | None = None,
                 window_seconds: tuple[int, ...] = (60, 3600), top_n: int = 20,
                 mode: Streaming = Streaming(), clock=None,
                 drop_redeliveries: bool = False, redelivery_shards: int = 1,
                 dedupe_identical_lines: bool = False,
                 max_future_s: float | None = None,
                 replayed_silver: beam.PCollection | None = None,
                 log_format: LogFormat = LogFormat()):
        super().__init__()
        self._log_format = log_format
        self._replayed = replayed_silver  # an earlier run's silver, for gold only
        self._dedupe = dedupe_identical_lines
        self._max_future = max_future_s
        self._policy = policy
        self._geo_database = geo_database
        self._windows = tuple(window_seconds)
        self._top_n = top_n
        self._streaming = mode
        self._clock = clock
        self._drop_redeliveries = drop_redeliveries
        self._shards = redelivery_shards

    def expand(self, raw):
        streaming = self._streaming
        parse = WebBronzeFn(self._clock, allowed_lateness_s=streaming.allowed_lateness_s,
                            max_future_s=self._max_future, log_format=self._log_format)
        bronze = raw | "Bronze" >> StreamingBronze(
            "ParseAccessLogs", parse, self._drop_redeliveries, self._shards)
        silver = bronze["records"] | "Silver" >> StreamingWebSilver(
            self._policy, self._geo_database, streaming, self._clock, self._dedupe)
        to_gold = silver["records"]
        if self._replayed is not None:
            to_gold = (to_gold, self._replayed) | "WithReplay" >> beam.Flatten()
            tables(to_gold)
        gold = to_gold | "Gold" >> StreamingWebGold(self._windows, streaming, self._top_n)
        dead = (tables(*bronze["dead_letters"], *silver["dead_letters"])
                | "AllDeadLetters" >> beam.Flatten())
        tables(bronze["records"], dead)
        return {WEB_LOGS_BRONZE.name: bronze["records"], WEB_LOGS_SILVER.name: silver["records"],
                **gold, DEAD_LETTERS.name: dead}
