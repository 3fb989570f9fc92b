"""The server-metrics medallion on Arrow batches (batch runs): raw batches → every table,
as a dict of table name → PCollection of ``pyarrow.Table`` batches.

Steps and the elements they move:

* ``Bronze``: a raw batch → a bronze batch and a dead-letter batch;
* ``Silver``: a bronze batch → range-checked silver fragments keyed by (server, day), and
  a dead-letter batch;
* ``SilverByServerDay``: the shuffle, one element per fragment;
* ``GoldServerDays``: a (server, day) group → its deduplicated silver and series; gathered
  groups → minutes, hours, days, threshold alerts, complete alert-matrix windows, and
  small partial results;
* ``GoldLocationDays``, ``GoldMatrixAcrossMidnight``, ``GoldDetectAnomalies``: what needs
  several groups, from those partial results (a handful of elements per server and day);
* ``GoldIncidents``: each server's signals → incidents and their notifications.

The alert feed (the signals) and the alert matrix are tables in parts, one per stage that
makes them (:class:`~transforms.batches.TableParts`): the lakehouse writes each part where
it is made, rather than after a flatten that the local runner would materialise.
"""
from __future__ import annotations

from datetime import datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from schemas.dead_letter import DEAD_LETTERS
from schemas.server_metrics import (
    ALERT_INCIDENTS,
    ALERT_NOTIFICATIONS,
    ALERT_SIGNALS,
    ALERTS,
    ANOMALIES,
    HOURLY_SERVER_METRICS,
    LOCATION_PERFORMANCE,
    SERVER_ALERT_MATRIX,
    SERVER_HEALTH_SUMMARY,
    SERVER_METRICS_BRONZE,
    SERVER_METRICS_MINUTELY,
    SERVER_METRICS_SILVER,
)
from transforms.batches import (
    DEAD,
    RowsToBatches,
    TableParts,
    concat,
    count_batches,
    dead_letter_batch,
    from_rows,
    keyed_tables,
)
from transforms.batches import declare_tables as tables
from transforms.server_metrics import gold, incidents
from transforms.server_metrics.aggregate import Segments
from transforms.server_metrics.analytics import _counters
from transforms.server_metrics.bronze import bronze_batch
from transforms.server_metrics.row_gold import SIGNAL_HOLDS, FormatLocationRowFn, LocationRollup
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.silver import deduplicate, silver_batch
from transforms.windowing import DAY

_US = 1_000_000
class BronzeFn(beam.DoFn):
    def __init__(self, clock=None, allowed_lateness_s: int | None = None,
                 max_future_s: float | None = None):
        self._clock = clock
        self._lateness = allowed_lateness_s  # streaming: judge arrival (see bronze_batch)
        self._max_future = max_future_s

    def setup(self):
        self._now = self._clock or (lambda: datetime.now(timezone.utc))
        self._accepted = Metrics.counter("bronze", "records_accepted")
        self._rejected = Metrics.counter("bronze", "records_rejected")
        self._extra = Metrics.counter("bronze", "records_with_unknown_fields")
        self._elements, self._records = count_batches("bronze_in")

    def process(self, raw: pa.Table):
        self._elements.inc()
        self._records.inc(raw.num_rows)
        out = bronze_batch(raw, self._now(), allowed_lateness_s=self._lateness,
                           max_future_s=self._max_future)
        self._accepted.inc(out.records.num_rows)
        self._rejected.inc(len(out.dead_letters))
        self._extra.inc(out.with_extra_fields)
        if out.records.num_rows:
            yield out.records
        if out.dead_letters:
            yield TaggedOutput(DEAD, dead_letter_batch(out.dead_letters))


def split_by_server_day(table: pa.Table, span_s: int = DAY):
    """A silver batch → ((server_id, span start), fragment) per server and span."""
    if not table.num_rows:
        return
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    day = micros - micros % (span_s * _US)
    encoded = table.column("server_id").combine_chunks().dictionary_encode()
    server = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.lexsort((day, server))
    seg = Segments(server[order], day[order])
    names = encoded.dictionary.to_pylist()
    for a, n, start in zip(seg.first.tolist(), seg.size.tolist(), seg.window_us.tolist(),
                           strict=True):
        # A copy, not a slice: a slice carries its parent's whole buffers.
        yield (names[server[order[a]]], start), table.take(pa.array(order[a:a + n]))


class SilverFn(beam.DoFn):
    """A bronze batch → range-checked fragments per server and span, and a dead-letter
    batch. Batch: keyed by (server_id, span start). Streaming (``timestamped``): keyed by
    server_id and timestamped at the span's start, for event-time windows of ``span_s``."""

    def __init__(self, rules: ServerMetricsRules, span_s: int = DAY,
                 timestamped: bool = False):
        self._rules = rules
        self._span_s = span_s
        self._timestamped = timestamped

    def setup(self):
        self._rejected = Metrics.counter("silver", "records_rejected")
        self._elements, self._records = count_batches("silver_fragments")

    def process(self, bronze: pa.Table):
        out = silver_batch(bronze, self._rules)
        self._rejected.inc(len(out.dead_letters))
        for (server_id, start), fragment in split_by_server_day(out.records, self._span_s):
            self._elements.inc()
            self._records.inc(fragment.num_rows)
            if self._timestamped:
                yield TimestampedValue((server_id, fragment), Timestamp(micros=start))
            else:
                yield (server_id, start), fragment
        if out.dead_letters:
            yield TaggedOutput(DEAD, dead_letter_batch(out.dead_letters))


#: Outputs of ServerDaysFn besides the deduplicated silver records.
_DAY_OUTPUTS = (SERVER_METRICS_MINUTELY.name, HOURLY_SERVER_METRICS.name,
                SERVER_HEALTH_SUMMARY.name, ALERTS.name, SERVER_ALERT_MATRIX.name,
                ALERT_SIGNALS.name, "location_parts", "matrix_parts", "series", SIGNAL_HOLDS,
                DEAD)


class ServerDaysFn(beam.DoFn):
    """(server, day) groups of silver fragments → every table they complete, and the
    partial results that need other groups.

    Each group is deduplicated as it comes; its gold is computed with the groups before
    it once ``GATHER_ROWS`` records are gathered, or at the end of the bundle: gold's
    fixed cost is per call, and a sparse fleet (a report a minute) has many small groups.
    """

    #: Records gathered before their gold is computed: a call over more is no faster
    #: (its sorts outgrow the caches), and the bundle holds them meanwhile.
    GATHER_ROWS = 50_000

    def __init__(self, rules: ServerMetricsRules):
        self._rules = rules

    def setup(self):
        self._duplicates = Metrics.counter("silver", "duplicates_rejected")
        self._elements, self._records = count_batches("server_days")

    def start_bundle(self):
        self._gathered: list[tuple[int, pa.Table]] = []  # (day start, its records)
        self._gathered_rows = 0

    def process(self, keyed):
        (server_id, day), fragments = keyed
        prior = None
        if isinstance(fragments, dict):  # a replay: {"new": [...], "prior": [...]}
            prior = concat(list(fragments["prior"]), SERVER_METRICS_SILVER)
            fragments = fragments["new"]
        silver = concat(list(fragments), SERVER_METRICS_SILVER)
        self._elements.inc()
        self._records.inc(silver.num_rows)
        # A replayed record at a time an earlier run already has is a copy of it.
        known = (set(prior.column("timestamp").cast(pa.int64()).to_pylist())
                 if prior is not None and prior.num_rows else None)
        unique = deduplicate(silver, known)
        if unique.dead_letters:
            self._duplicates.inc(len(unique.dead_letters))
            yield TaggedOutput(DEAD, dead_letter_batch(unique.dead_letters))
        if unique.records.num_rows:
            yield unique.records
        whole = unique.records
        if known:  # gold is computed over the day's every record, earlier and new
            whole = concat([prior, unique.records], SERVER_METRICS_SILVER)
        yield TaggedOutput("series", (server_id, gold.series(whole, self._rules)))
        self._gathered.append((day, whole))
        self._gathered_rows += whole.num_rows
        if self._gathered_rows >= self.GATHER_ROWS:
            yield from self._gold()

    def finish_bundle(self):
        for out in self._gold():
            yield TaggedOutput(out.tag, GlobalWindows.windowed_value_at_end_of_window(
                out.value))

    def _gold(self):
        gathered, self._gathered, self._gathered_rows = self._gathered, [], 0
        if not gathered:
            return
        # In day order, each group sorted in time already: the order ServerDays sorts
        # into, so it need not copy the rows to reorder them.
        gathered.sort(key=lambda day_group: day_group[0])
        days = gold.ServerDays(concat([group for _, group in gathered], SERVER_METRICS_SILVER),
                               self._rules)
        tables, threshold, holds = days.tables()
        for name, table in tables.items():
            if table.num_rows:
                yield TaggedOutput(name, table)
        matrix, pieces = days.matrix()
        if matrix.num_rows:
            yield TaggedOutput(SERVER_ALERT_MATRIX.name, matrix)
        if holds is not None:
            yield TaggedOutput(SIGNAL_HOLDS, holds)
        if threshold.num_rows:
            yield TaggedOutput(ALERT_SIGNALS.name, gold.threshold_signal_table(threshold))
        labelled = gold.matrix_event_table(matrix, self._rules.alert_matrix)
        if labelled.num_rows:
            yield TaggedOutput(ALERT_SIGNALS.name, labelled)
        for piece in pieces:
            yield TaggedOutput("matrix_parts", piece)
        for part in days.day_summaries():
            yield TaggedOutput("location_parts", part)


class MergeMatrixParts(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, acc, part):
        return gold.merge_matrix_accumulators([a for a in (acc, part) if a is not None])

    def merge_accumulators(self, accs):
        return gold.merge_matrix_accumulators([a for a in accs if a is not None])

    def extract_output(self, acc):
        return acc


class MatrixAcrossMidnightFn(beam.DoFn):
    """Windows whose parts came from two days → their matrix rows and alert events, one
    table of each per bundle: such windows are a few per server and midnight, and a
    table per window cost ~0.6 ms each."""

    def __init__(self, rules: ServerMetricsRules):
        self._matrix = rules.alert_matrix

    def start_bundle(self):
        self._merged: list = []

    def process(self, keyed_acc):
        self._merged.append(keyed_acc)

    def finish_bundle(self):
        merged, self._merged = self._merged, []
        if not merged:
            return
        table = gold.partial_matrix_rows(merged, self._matrix)
        yield GlobalWindows.windowed_value_at_end_of_window(table)
        events = gold.matrix_event_table(table, self._matrix)
        if events.num_rows:
            yield TaggedOutput(ALERT_SIGNALS.name,
                               GlobalWindows.windowed_value_at_end_of_window(events))


class ScoreServerSeriesFn(beam.DoFn):
    """A server's series (one fragment per day) → its anomalies and their alert events."""

    def __init__(self, rules: ServerMetricsRules):
        self._rules = rules

    def setup(self):
        self._counters = _counters()

    def process(self, keyed):
        server_id, fragments = keyed
        series = pa.concat_tables(list(fragments))
        anomalies, events = gold.anomaly_tables(series, server_id, self._rules, self._counters)
        if anomalies.num_rows:
            yield anomalies
        if events.num_rows:
            yield TaggedOutput(ALERT_SIGNALS.name, events)


def split_by_server(table: pa.Table, columns=None):
    """A batch → (server_id, its rows) per server (``columns``: only those)."""
    if columns is not None:
        table = table.select(list(columns))
    if not table.num_rows:
        return
    encoded = table.column("server_id").combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1))
    for j, server_id in enumerate(encoded.dictionary.to_pylist()):
        yield server_id, table.take(pa.array(order[bounds[j]:bounds[j + 1]]))


class SignalsByServerFn(beam.DoFn):
    """Alert signals (``alert_signals`` batches) → (server_id, that server's signals that
    can page). The tracker passes over the families left out of ``incidents.families``
    without a trace (a threshold rule's holds go with ``threshold``): they are not shuffled.
    """

    def __init__(self, rules: ServerMetricsRules):
        self._families = sorted(incidents.paging_families(rules.incidents))

    def setup(self):
        self._paging = pa.array(self._families, pa.string())

    def process(self, events: pa.Table):
        paging = pc.is_in(events.column("family"), value_set=self._paging)
        if not pc.all(paging).as_py():
            events = events.filter(paging)
        yield from split_by_server(events, incidents.SIGNAL_FIELDS)


class IncidentsFn(beam.DoFn):
    """A server's signals of the whole run → its incidents (each once, its final state)
    and notifications. A bounded input ends with the watermark at the end of time, so
    every incident has resolved by then, as in streaming after a drain."""

    def __init__(self, rules: ServerMetricsRules):
        self._rules = rules.incidents

    def process(self, keyed):
        _, parts = keyed
        found, notifications = incidents.incidents_of_server(
            self._rules, incidents.signal_tuples(pa.concat_tables(list(parts))))
        if found:
            yield from_rows(found, ALERT_INCIDENTS)
            yield TaggedOutput(ALERT_NOTIFICATIONS.name,
                               from_rows(notifications, ALERT_NOTIFICATIONS))


class ServerMetricsBatchMedallion(beam.PTransform):
    """Raw batches → {table name: PCollection of Arrow tables}, every table of the
    server-metrics medallion and all dead letters; ``alert_signals`` and
    ``server_alert_matrix`` as :class:`~transforms.batches.TableParts` (``whole`` makes
    each one PCollection)."""

    def __init__(self, rules: ServerMetricsRules | None = None, clock=None,
                 max_future_s: float | None = None,
                 prior_silver: beam.PCollection | None = None,
                 rechecked_bronze: beam.PCollection | None = None):
        super().__init__()
        #: a replay of silver's dead letters: their bronze rows (already in bronze), which
        #: re-enter at silver
        self._rechecked = rechecked_bronze
        #: a replay: silver tables an earlier run wrote, which gold is computed over
        #: together with the new records (silver itself is then only the new rows)
        self._prior = prior_silver
        self._rules = rules or ServerMetricsRules()
        self._clock = clock
        self._max_future = max_future_s  # None: no event is too far ahead

    def expand(self, raw):
        rules = self._rules
        bronze = raw | "Bronze" >> beam.ParDo(BronzeFn(
            self._clock, max_future_s=self._max_future)).with_outputs(
            DEAD, main="records")
        to_silver = bronze.records
        if self._rechecked is not None:
            to_silver = (tables(bronze.records, self._rechecked)
                         | "WithRecheckedBronze" >> beam.Flatten())
        checked = to_silver | "Silver" >> beam.ParDo(SilverFn(rules)).with_output_types(
            keyed_tables(beam.typehints.Tuple[str, int])).with_outputs(DEAD, main="fragments")
        if self._prior is None:
            grouped = checked.fragments | "SilverByServerDay" >> beam.GroupByKey()
        else:
            prior = self._prior | "PriorByServerDay" >> beam.FlatMap(
                split_by_server_day).with_output_types(keyed_tables(
                    beam.typehints.Tuple[str, int]))
            grouped = ({"new": checked.fragments, "prior": prior}
                       | "SilverByServerDay" >> beam.CoGroupByKey())
        days = (grouped
                | "GoldServerDays" >> beam.ParDo(ServerDaysFn(rules)).with_output_types(
                    pa.Table).with_outputs(
                    *_DAY_OUTPUTS, main="silver"))
        locations = (days.location_parts
                     | "GoldLocationDays" >> beam.CombinePerKey(LocationRollup())
                     | "GoldLocationRows" >> beam.ParDo(FormatLocationRowFn(rules))
                     | "GoldLocationBatches" >> RowsToBatches(LOCATION_PERFORMANCE))
        midnight = (days.matrix_parts
                    | "GoldMatrixAcrossMidnight" >> beam.CombinePerKey(MergeMatrixParts())
                    | "GoldMatrixRows" >> beam.ParDo(MatrixAcrossMidnightFn(rules)).with_outputs(
                        ALERT_SIGNALS.name, main="rows"))
        tables(days.series, element_type=keyed_tables(str))
        anomalies = (days.series
                     | "GoldSeriesByServer" >> beam.GroupByKey()
                     | "GoldDetectAnomalies" >> beam.ParDo(ScoreServerSeriesFn(rules)).with_outputs(
                         ALERT_SIGNALS.name, main="rows"))
        signals = (days[ALERT_SIGNALS.name], midnight[ALERT_SIGNALS.name],
                   anomalies[ALERT_SIGNALS.name])
        # The signals and the matrix are tables in parts, each written where it is made:
        # a flatten would be one more copy of all of them (see TableParts).
        events = TableParts(tables(*signals))
        tables(days[SIGNAL_HOLDS])
        # Each part is keyed by server where it is made: flattening the parts first would
        # be one more copy of every signal (the local runner materialises a flatten of
        # several inputs), where this copies only the signals that page.
        by_server = SignalsByServerFn(rules)
        paging = tuple(
            part | f"GoldPagingSignals{name}" >> beam.ParDo(by_server).with_output_types(
                keyed_tables(str))
            for name, part in zip(("OfDays", "AcrossMidnight", "OfAnomalies", "Holds"),
                                  (*signals, days[SIGNAL_HOLDS]), strict=True))
        paged = (paging | "GoldSignalsByServer" >> beam.Flatten()
                 | "GoldGroupSignals" >> beam.GroupByKey()
                 | "GoldIncidents" >> beam.ParDo(IncidentsFn(rules)).with_output_types(
                     pa.Table).with_outputs(ALERT_NOTIFICATIONS.name, main="incidents"))
        matrix = TableParts(tables(days[SERVER_ALERT_MATRIX.name], midnight.rows))
        dead = (tables(bronze[DEAD], checked[DEAD], days[DEAD])
                | "AllDeadLetters" >> beam.Flatten())
        tables(bronze.records, days.silver, anomalies.rows, locations,
               *(days[name] for name in _DAY_OUTPUTS[:4]))
        return {
            SERVER_METRICS_BRONZE.name: bronze.records,
            SERVER_METRICS_SILVER.name: days.silver,
            SERVER_METRICS_MINUTELY.name: days[SERVER_METRICS_MINUTELY.name],
            HOURLY_SERVER_METRICS.name: days[HOURLY_SERVER_METRICS.name],
            SERVER_HEALTH_SUMMARY.name: days[SERVER_HEALTH_SUMMARY.name],
            LOCATION_PERFORMANCE.name: locations,
            ALERTS.name: days[ALERTS.name],
            SERVER_ALERT_MATRIX.name: matrix,
            ANOMALIES.name: anomalies.rows,
            ALERT_SIGNALS.name: events,
            ALERT_INCIDENTS.name: paged.incidents,
            ALERT_NOTIFICATIONS.name: paged[ALERT_NOTIFICATIONS.name],
            DEAD_LETTERS.name: dead,
        }
