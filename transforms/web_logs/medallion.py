"""The web-log medallion on Arrow batches (batch runs): raw batches of log lines → every
table, as a dict of table name → PCollection of ``pyarrow.Table`` batches.

Steps and the elements they move:

* ``Bronze``: a raw batch → a bronze batch and a dead-letter batch;
* ``Silver``: ``BronzeBySpan``, a bronze batch → one fragment per span (an hour by
  default: the least common multiple of the window sizes, see
  :func:`transforms.web_logs.gold.group_span`); ``SilverBySpan``, the shuffle, one element
  per fragment; ``CleanSpan``, a span → its deduplicated, geolocated, private silver rows
  (one table) and the dead letters;
* ``Gold``: a span's silver rows → every gold table's rows for the windows inside it.

Every copy of a line falls in one span (its time is part of what makes it a copy), and
every window in one span, so the one shuffle completes silver and gold.
"""
from __future__ import annotations

from datetime import datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.dead_letter import DEAD_LETTERS
from schemas.web_logs import WEB_GOLD_TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER
from transforms.batches import DEAD, concat, dead_letter_batch, keyed_tables, split_by_span
from transforms.batches import count_batches as _count
from transforms.batches import declare_tables as tables
from transforms.geo import GEO_STATUSES, shared_database
from transforms.web_logs.access_log import LogFormat
from transforms.web_logs.bronze import web_bronze_batch
from transforms.web_logs.gold import gold_tables, group_span
from transforms.web_logs.silver import clean_batch, web_silver_batch

_US = 1_000_000
_GOLD = tuple(t.name for t in WEB_GOLD_TABLES)


class WebBronzeFn(beam.DoFn):
    """A raw batch of lines → a bronze batch, and a dead-letter batch."""

    def __init__(self, clock=None, allowed_lateness_s: int | None = None,
                 max_future_s: float | None = None, log_format: LogFormat = LogFormat()):
        self._log_format = log_format
        self._clock = clock
        self._lateness = allowed_lateness_s  # streaming: judge arrival (web_bronze_batch)
        self._max_future = max_future_s

    def setup(self):
        self._now = self._clock or (lambda: datetime.now(timezone.utc))
        self._accepted = Metrics.counter("bronze", "log_lines_accepted")
        self._rejected = Metrics.counter("bronze", "log_lines_rejected")
        self._elements, self._records = _count("bronze_in")

    def process(self, raw: pa.Table):
        self._elements.inc()
        self._records.inc(raw.num_rows)
        out = web_bronze_batch(raw, self._now(), allowed_lateness_s=self._lateness,
                               max_future_s=self._max_future,
                               log_format=self._log_format)
        self._accepted.inc(out.records.num_rows)
        self._rejected.inc(len(out.dead_letters))
        if out.records.num_rows:
            yield out.records
        if out.dead_letters:
            yield TaggedOutput(DEAD, dead_letter_batch(out.dead_letters))


class SpanFragmentsFn(beam.DoFn):
    """A bronze batch → (span start µs, fragment) per span of ``span_s`` (in streaming, a
    minute: the keys of the copies' state)."""

    def __init__(self, span_s: int):
        self._span_s = span_s

    def setup(self):
        self._elements, self._records = _count("bronze_fragments")

    def process(self, bronze: pa.Table):
        for start, fragment in split_by_span(bronze, self._span_s):
            self._elements.inc()
            self._records.inc(fragment.num_rows)
            yield start, fragment


class CleanFn(beam.DoFn):
    """Deduplicated bronze rows → silver rows (geolocation, ranges, agents, privacy) and
    dead letters, counted: a fragment in streaming, a span in batch (``SilverSpanFn``)."""

    def __init__(self, policy, geo_database: str | None, clock=None):
        self._policy = policy
        self._geo_database = geo_database
        self._clock = clock

    def setup(self):
        self._now = self._clock or (lambda: datetime.now(timezone.utc))
        self._db = shared_database(self._geo_database)
        self._geo = {s: Metrics.counter("geo", s) for s in GEO_STATUSES}
        self._rejected = Metrics.counter("silver", "log_lines_rejected")
        self._duplicates = Metrics.counter("silver", "duplicate_log_lines")
        self._bots = Metrics.counter("silver", "bot_requests")

    def process(self, fragment: pa.Table):
        yield from self._emit(clean_batch(fragment, self._policy, self._db, self._now()))

    def _emit(self, out):
        for status, count in out.geo_statuses.items():
            self._geo[status].inc(count)
        if out.dead_letters:
            duplicates = sum(1 for d in out.dead_letters if d["reason"] == "duplicate_event")
            self._duplicates.inc(duplicates)
            self._rejected.inc(len(out.dead_letters) - duplicates)
            yield TaggedOutput(DEAD, dead_letter_batch(out.dead_letters))
        if out.records.num_rows:
            self._bots.inc(pa.compute.sum(out.records.column("is_bot")).as_py() or 0)
            yield out.records


class SilverSpanFn(CleanFn):
    """A span's bronze fragments → its silver rows (one table: the whole span), copies
    dropped first when asked, and dead letters."""

    def __init__(self, policy, geo_database: str | None, clock=None,
                 dedupe_identical_lines: bool = False):
        super().__init__(policy, geo_database, clock)
        self._dedupe = dedupe_identical_lines

    def setup(self):
        super().setup()
        self._elements, self._records = _count("spans")

    def process(self, keyed):
        _, fragments = keyed
        bronze = concat(list(fragments), WEB_LOGS_BRONZE)
        self._elements.inc()
        self._records.inc(bronze.num_rows)
        yield from self._emit(web_silver_batch(bronze, self._policy, self._db, self._now(),
                                               self._dedupe))


def visitor_hashes(silver: pa.Table) -> np.ndarray:
    """``visitor_id`` (16 hex digits) as the 64-bit integers the sketch counts."""
    if not silver.num_rows:
        return np.empty(0, np.uint64)
    text = "".join(silver.column("visitor_id").to_pylist())
    return np.frombuffer(bytes.fromhex(text), dtype=">u8").astype(np.uint64)


class GoldSpanFn(beam.DoFn):
    """A span's silver rows → every gold table's rows for the windows inside the span."""

    def __init__(self, window_seconds: tuple[int, ...], top_n: int):
        self._windows = window_seconds
        self._top_n = top_n

    def process(self, silver: pa.Table):
        tables = gold_tables(silver, visitor_hashes(silver), self._windows, self._top_n)
        for name, table in tables.items():
            if table.num_rows:
                yield TaggedOutput(name, table)


class WebSilverBySpan(beam.PTransform):
    """Bronze batches → silver: fragments per span, the one shuffle, then per span the
    deduplicated, geolocated, private rows (``records``) and ``dead_letters``."""

    def __init__(self, policy, geo_database: str | None, span_s: int, clock=None,
                 dedupe_identical_lines: bool = False):
        super().__init__()
        self._policy = policy
        self._geo_database = geo_database
        self._span_s = span_s
        self._clock = clock
        self._dedupe = dedupe_identical_lines

    def expand(self, bronze):
        return (bronze
                | "BronzeBySpan" >> beam.ParDo(SpanFragmentsFn(self._span_s)
                                               ).with_output_types(keyed_tables(int))
                | "SilverBySpan" >> beam.GroupByKey()
                | "CleanSpan" >> beam.ParDo(SilverSpanFn(
                    self._policy, self._geo_database, self._clock,
                    self._dedupe)).with_outputs(DEAD, main="records"))


def _whole_span(_, parts) -> pa.Table:
    return concat([*parts["prior"], *parts["new"]], WEB_LOGS_SILVER)


class WebLogsBatchMedallion(beam.PTransform):
    """Raw batches of log lines → {table name: PCollection of Arrow tables}: bronze,
    silver, every gold table and all dead letters."""

    def __init__(self, policy, geo_database: str | None = None,
                 window_seconds: tuple[int, ...] = (60, 3600), top_n: int = 20, clock=None,
                 dedupe_identical_lines: bool = False,
                 max_future_s: float | None = None, log_format: LogFormat = LogFormat(),
                 prior_silver: beam.PCollection | None = None,
                 rechecked_bronze: beam.PCollection | None = None):
        super().__init__()
        #: a replay: silver tables an earlier run wrote (gold is computed over them and
        #: the new rows), and silver's dead letters' bronze rows, which re-enter at silver
        self._prior = prior_silver
        self._rechecked = rechecked_bronze
        self._log_format = log_format
        self._dedupe = dedupe_identical_lines
        self._max_future = max_future_s  # None: no event is too far ahead
        self._policy = policy
        self._geo_database = geo_database
        self._windows = tuple(window_seconds)
        self._span_s = group_span(self._windows)
        self._top_n = top_n
        self._clock = clock

    def expand(self, raw):
        bronze = raw | "Bronze" >> beam.ParDo(WebBronzeFn(
            self._clock, max_future_s=self._max_future,
            log_format=self._log_format)).with_outputs(DEAD, main="records")
        to_silver = bronze.records
        if self._rechecked is not None:
            to_silver = (tables(bronze.records, self._rechecked)
                         | "WithRecheckedBronze" >> beam.Flatten())
        silver = to_silver | "Silver" >> WebSilverBySpan(
            self._policy, self._geo_database, self._span_s, self._clock, self._dedupe)
        to_gold = silver.records
        if self._prior is not None:  # each span whole: its earlier rows and its new ones
            spans = {name: rows | f"{name.title()}Spans" >> beam.ParDo(SpanFragmentsFn(
                self._span_s)).with_output_types(keyed_tables(int))
                for name, rows in (("new", silver.records), ("prior", self._prior))}
            to_gold = (spans
                       | "SilverWithPrior" >> beam.CoGroupByKey()
                       | "WholeSpans" >> beam.MapTuple(_whole_span).with_output_types(pa.Table))
        gold = to_gold | "Gold" >> beam.ParDo(GoldSpanFn(
            self._windows, self._top_n)).with_outputs(*_GOLD)
        dead = (tables(bronze[DEAD], silver[DEAD]) | "AllDeadLetters" >> beam.Flatten())
        tables(bronze.records, silver.records, *(gold[name] for name in _GOLD))
        return {WEB_LOGS_BRONZE.name: bronze.records,
                WEB_LOGS_SILVER.name: silver.records,
                **{name: gold[name] for name in _GOLD},
                DEAD_LETTERS.name: dead}
