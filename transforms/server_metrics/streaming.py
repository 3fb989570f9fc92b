"""The server-metrics medallion on Arrow batches in streaming: live raw batches (one per
poll of a source) → every table, with event-time windows, panes and lateness.

Records travel as batch fragments, never one element per record:

* ``DropRedeliveries`` (:mod:`transforms.live_bronze`): a raw batch → fragments per
  (delivery-id shard, minute of declared event time), whose state remembers the ids seen;
* ``Bronze`` and ``Silver``: whole batches, as in batch runs; bronze also judges each
  record's lateness against the watermark its batch arrived under;
* ``Silver/ByServerMinute``: fragments per (server, minute) in one-minute event-time
  windows that fire early, on time and late; ``GateAndDeduplicate`` keeps, per server
  and window, the event times already seen (so a copy in a later pane is caught) and,
  once the window is closed, dead-letters what still comes as ``late``;
* gold: each deduplicated fragment becomes one summary per server identity and minute,
  and from there the row-level gold (:func:`.row_gold.gold_from_minute_deltas`) runs
  on one element per (server, minute, pane); the alert matrix gets one accumulator per
  server and period, the detector one fragment per server and metric.

The tables, panes and dead letters are those of the row-level streaming medallion
(:class:`transforms.server_metrics.row_medallion.ServerMetricsMedallion`) on the same input: tested.
Bronze, silver and the dead letters leave as Arrow tables, every other table as rows
(a handful per server and minute).
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import BooleanCoder, PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.dead_letter import DEAD_LETTERS
from schemas.server_metrics import (
    ALERT_INCIDENTS,
    ALERT_NOTIFICATIONS,
    ALERT_SIGNALS,
    ALERTS,
    ANOMALIES,
    SERVER_ALERT_MATRIX,
    SERVER_METRICS_BRONZE,
    SERVER_METRICS_SILVER,
)
from transforms.batches import (
    DEAD,
    ArrowTableCoder,
    ReplayedSilverFn,
    concat,
    count_batches,
    dead_letter_batch,
    keyed_tables,
    rows_of,
)
from transforms.batches import declare_tables as tables
from transforms.dead_letters import dead_letter
from transforms.live_bronze import StreamingBronze
from transforms.server_metrics.aggregate import IDENTITY, Measures, Segments, identity_codes
from transforms.server_metrics.analytics import (
    AlertSignals,
    MatrixFromParts,
    _counters,
    score_table_in_order,
)
from transforms.server_metrics.incidents import IncidentsFromSignals
from transforms.server_metrics.medallion import BronzeFn, SilverFn
from transforms.server_metrics.row_gold import SIGNAL_HOLDS, gold_from_minute_deltas
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.silver import deduplicate
from transforms.windowing import MINUTE, Streaming, schedule_flush

_US = 1_000_000
#: Tables that leave this medallion as Arrow batches (the others as rows).
BATCH_TABLES = frozenset({SERVER_METRICS_BRONZE.name, SERVER_METRICS_SILVER.name,
                          DEAD_LETTERS.name})


# ---- silver ------------------------------------------------------------------------------
class GateAndDeduplicateFn(beam.DoFn):
    """One pane of a server's minute (its fragments) → the deduplicated fragment, and
    dead letters: copies (of this pane or an earlier one) and, after the window closed
    (its end plus the allowed lateness), everything as ``late``: the batch form of
    :class:`.row_silver.GateAndDeduplicateFn`, with the same state and words."""

    SEEN = ReadModifyWriteStateSpec("seen", PickleCoder())
    CLOSED = ReadModifyWriteStateSpec("closed", BooleanCoder())
    CLOSE = TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, allowed_lateness_s: int):
        self._lateness = Duration(seconds=allowed_lateness_s)
        self._lateness_s = allowed_lateness_s

    def setup(self):
        self._duplicates = Metrics.counter("silver", "duplicates_rejected")
        self._late = Metrics.counter("silver", "late_rejected")
        self._elements, self._records = count_batches("silver_panes")

    def process(self, keyed, window=beam.DoFn.WindowParam,
                seen=beam.DoFn.StateParam(SEEN), closed=beam.DoFn.StateParam(CLOSED),
                close=beam.DoFn.TimerParam(CLOSE)):
        _, fragments = keyed
        records = concat(list(fragments), SERVER_METRICS_SILVER)
        self._elements.inc()
        self._records.inc(records.num_rows)
        if closed.read():
            start, end = window.start.to_utc_datetime(), window.end.to_utc_datetime()
            message = (f"arrived after its window {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC "
                       f"closed (allowed lateness {self._lateness_s}s)")
            self._late.inc(records.num_rows)
            yield TaggedOutput(DEAD, dead_letter_batch([
                dead_letter(layer="silver", step="DeduplicateEvents", reason="late",
                            message=message, payload=row, source=row.get("source"),
                            event_timestamp=row["timestamp"])
                for row in rows_of(records)]))
            return
        close.set(window.end + self._lateness)
        known = seen.read() or set()
        unique = deduplicate(records, known)
        if unique.dead_letters:
            self._duplicates.inc(len(unique.dead_letters))
            yield TaggedOutput(DEAD, dead_letter_batch(unique.dead_letters))
        if unique.records.num_rows:
            known.update(unique.records.column("timestamp").cast(pa.int64()).to_pylist())
            seen.write(known)
            yield unique.records

    @on_timer(CLOSE)
    def close_window(self, seen=beam.DoFn.StateParam(SEEN),
                     closed=beam.DoFn.StateParam(CLOSED)):
        closed.write(True)
        seen.clear()


# ---- gold --------------------------------------------------------------------------------
def _identity_runs(fragment: pa.Table):
    """A deduplicated fragment (one server, one minute) sorted by server identity:
    (measures, segments of one identity each, their identities)."""
    codes = identity_codes(fragment)
    order = np.argsort(codes, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        fragment, codes = fragment.take(pa.array(order)), codes[order]
    measures = Measures(fragment)
    seg = Segments(codes, np.zeros(len(codes), np.int64))
    firsts = fragment.take(pa.array(seg.first)).select(list(IDENTITY)).to_pylist()
    return measures, seg, [tuple(row[k] for k in IDENTITY) for row in firsts]


class MinuteDeltasFn(beam.DoFn):
    """A deduplicated fragment → ((server identity, minute start), summary of this pane),
    what the row-level gold makes of its records: the summary counts rule breaches too."""

    def __init__(self, rules: ServerMetricsRules):
        self._rules = tuple(rules.alert_rules)

    def process(self, fragment: pa.Table):
        if not fragment.num_rows:
            return
        measures, seg, identities = _identity_runs(fragment)
        minute = int(measures.micros[0] - measures.micros[0] % (MINUTE * _US))
        table = measures.table
        breaches = []
        for rule in self._rules:
            v = table.column(rule.metric).to_numpy()
            above = rule.above is not None
            hit, held = rule.masks(v, table.column("server_id"), table.column("server_type"))
            breaches.append((rule, above, seg.count(hit),
                             seg.extreme(np.where(hit, v, np.nan), above),
                             None if held is None else seg.count(held)))
        for j, (first, size) in enumerate(zip(seg.first.tolist(), seg.size.tolist(),
                                              strict=True)):
            summary = measures.summary(slice(first, first + size))
            for rule, above, counts, extremes, held in breaches:
                if counts[j]:
                    summary.breaches[rule.name] = [int(counts[j]), float(extremes[j]), above]
                if held is not None and held[j]:
                    summary.holds[rule.name] = int(held[j])
            yield identities[j] + (minute,), summary


class MatrixPartsFn(beam.DoFn):
    """A deduplicated fragment → (server identity, matrix accumulator) per period of the
    sliding windows, timestamped at the period's start (so each lands in every window
    holding that period)."""

    def __init__(self, rules: ServerMetricsRules):
        self._period_us = rules.alert_matrix.period_s * _US

    def process(self, fragment: pa.Table):
        if not fragment.num_rows:
            return
        measures, by_identity, identities = _identity_runs(fragment)
        micros = measures.micros
        period = micros - micros % self._period_us
        ids = by_identity.ids
        order = np.lexsort((period, ids))
        seg = Segments(ids[order], period[order])
        cpu, mem = measures.cpu[order], measures.memory[order]
        columns = (seg.size, seg.sum(cpu), seg.count(~np.isnan(cpu)), seg.sum(mem),
                   seg.count(~np.isnan(mem)),
                   seg.extreme(measures.network_in[order], True),
                   seg.extreme(measures.disk_io[order], True))
        owner = ids[order][seg.first].tolist()
        for j, start in enumerate(seg.window_us.tolist()):
            count, cpu_sum, cpu_n, mem_sum, mem_n, net, disk = (c[j] for c in columns)
            acc = [int(count), float(cpu_sum), int(cpu_n), float(mem_sum), int(mem_n),
                   None if net == -np.inf else float(net),
                   None if disk == -np.inf else float(disk)]
            yield TimestampedValue((identities[owner[j]], acc), Timestamp(micros=start))


class SeriesPartsFn(beam.DoFn):
    """A deduplicated fragment → ((server_id, metric), its values with their time and
    identity) for each metric the detector watches; a missing sensor is not a zero."""

    def __init__(self, rules: ServerMetricsRules):
        self._metrics = rules.anomaly_detection.metrics

    def process(self, fragment: pa.Table):
        if not fragment.num_rows:
            return
        server_id = fragment.column("server_id")[0].as_py()
        base = pa.table({"micros": fragment.column("timestamp").cast(pa.int64()),
                         **{k: fragment.column(k) for k in IDENTITY[1:]}})
        for metric in self._metrics:
            values = fragment.column(metric)
            part = base.append_column("value", values).filter(values.is_valid())
            if part.num_rows:
                yield (server_id, metric), part


class EwmaBatchDetectorFn(beam.DoFn):
    """Streaming: ``((server_id, metric), values)`` fragments → anomaly rows: the batch
    form of :class:`.analytics.EwmaDetectorFn`, with the same state, timer and
    scoring (``score_table_in_order``: ``score_in_order`` on arrays), so the same
    answers."""

    #: What its flush emits at a drain must not fall behind the watermark downstream.
    HOLD_OUTPUT_AT_TIMERS = True
    PENDING = BagStateSpec("pending", ArrowTableCoder())
    MODEL = ReadModifyWriteStateSpec("model", PickleCoder())
    FLUSH_AT = ReadModifyWriteStateSpec("flush_at", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, rules: ServerMetricsRules):
        self._rules = rules.anomaly_detection
        self._every = self._rules.flush_every_s * _US

    def setup(self):
        self._counters = _counters()

    def process(self, keyed, pending=beam.DoFn.StateParam(PENDING),
                flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH)):
        _, part = keyed
        pending.add(part)
        schedule_flush(int(pc.min(part.column("micros")).as_py()), self._every, flush_at, flush)

    @on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                 pending=beam.DoFn.StateParam(PENDING), model=beam.DoFn.StateParam(MODEL),
                 flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH)):
        parts = list(pending.read())
        if not parts:
            return
        values = pa.concat_tables(parts)
        micros = values.column("micros").to_numpy()
        order = np.argsort(micros, kind="stable")
        values, micros = values.take(pa.array(order)), micros[order]
        ready = int(np.searchsorted(micros, fired.micros, side="left"))
        pending.clear()
        flush_at.clear()
        if ready < len(micros):
            pending.add(values.slice(ready).combine_chunks())
            schedule_flush(int(micros[ready]), self._every, flush_at, flush)
        rows, state = score_table_in_order(self._rules, key, values.slice(0, ready),
                                           model.read(), self._counters)
        model.write(state)
        yield from rows


# ---- the layers and the medallion --------------------------------------------------------
class StreamingSilver(beam.PTransform):
    """Bronze batches → {"records": deduplicated fragments of one server and minute, in
    one-minute windows, "dead_letters": [batches in the global window]}."""

    def __init__(self, rules: ServerMetricsRules, streaming: Streaming):
        super().__init__()
        self._rules = rules
        self._streaming = streaming

    def expand(self, bronze):
        streaming = self._streaming
        check = SilverFn(self._rules, span_s=MINUTE, timestamped=True)
        checked = bronze | "CheckServerMetrics" >> beam.ParDo(check).with_output_types(
            keyed_tables(str)).with_outputs(DEAD, main="fragments")
        gated = (checked.fragments
                 | "MinuteWindows" >> streaming.windows(MINUTE, accumulate=False)
                 | "ByServerMinute" >> beam.GroupByKey()
                 | "GateAndDeduplicate" >> beam.ParDo(GateAndDeduplicateFn(
                     streaming.allowed_lateness_s)).with_outputs(
                         DEAD, main="records"))
        tables(gated.records)
        return {"records": gated.records, "dead_letters": [
            checked[DEAD], gated[DEAD] | "DeadToGlobal" >> beam.WindowInto(GlobalWindows())]}


class StreamingGold(beam.PTransform):
    """Deduplicated silver fragments → every gold and analytics table, as rows."""

    def __init__(self, rules: ServerMetricsRules, streaming: Streaming):
        super().__init__()
        self._rules = rules
        self._streaming = streaming

    def expand(self, silver):
        rules, streaming = self._rules, self._streaming
        deltas = silver | "MinuteDeltas" >> beam.ParDo(MinuteDeltasFn(rules))
        gold = gold_from_minute_deltas(deltas, rules, streaming)
        holds = gold.pop(SIGNAL_HOLDS)
        matrix = (silver
                  | "MatrixParts" >> beam.ParDo(MatrixPartsFn(rules))
                  | "AlertMatrix" >> MatrixFromParts(rules.alert_matrix, streaming))
        anomalies = (silver
                     | "SeriesGlobal" >> beam.WindowInto(GlobalWindows())
                     | "SeriesParts" >> beam.ParDo(SeriesPartsFn(rules)).with_output_types(
                         keyed_tables(beam.typehints.Tuple[str, str]))
                     | "DetectAnomalies" >> beam.ParDo(EwmaBatchDetectorFn(rules)))
        events = ((gold[ALERTS.name], matrix, anomalies)
                  | "AlertSignals" >> AlertSignals(rules.alert_matrix))
        paged = (events, holds) | "Incidents" >> IncidentsFromSignals(rules, streaming)
        return {**gold, SERVER_ALERT_MATRIX.name: matrix, ANOMALIES.name: anomalies,
                ALERT_SIGNALS.name: events, ALERT_INCIDENTS.name: paged["incidents"],
                ALERT_NOTIFICATIONS.name: paged["notifications"]}


class ServerMetricsStreamingMedallion(beam.PTransform):
    """Live raw batches → {table name: PCollection}: Arrow tables for :data:`BATCH_TABLES`,
    rows for the others, in the global window.

    ``redelivery_shards``: keys per minute of the redelivery state. Each splits a poll's
    batch once more before bronze; one suits a single process, a runner spreading keys
    over many workers wants a few. ``replayed_silver``: Arrow tables of silver rows an
    earlier run wrote, fed to gold (not to silver) so a resumed run's windows are whole."""

    def __init__(self, rules: ServerMetricsRules | None = None,
                 mode: Streaming = Streaming(), clock=None,
                 drop_redeliveries: bool = False, redelivery_shards: int = 1,
                 max_future_s: float | None = None,
                 replayed_silver: beam.PCollection | None = None):
        super().__init__()
        self._replayed = replayed_silver
        self._max_future = max_future_s
        self._rules = rules or ServerMetricsRules()
        self._streaming = mode
        self._clock = clock
        self._drop_redeliveries = drop_redeliveries
        self._shards = redelivery_shards

    def expand(self, raw):
        rules, streaming = self._rules, self._streaming
        parse = BronzeFn(self._clock, allowed_lateness_s=streaming.allowed_lateness_s,
                         max_future_s=self._max_future)
        bronze = raw | "Bronze" >> StreamingBronze(
            "ParseServerMetrics", parse, self._drop_redeliveries, self._shards)
        silver = bronze["records"] | "Silver" >> StreamingSilver(rules, streaming)
        to_gold = silver["records"]
        if self._replayed is not None:
            replayed = (self._replayed
                        | "ReplayByMinute" >> beam.ParDo(ReplayedSilverFn())
                        | "ReplayMinuteWindows" >> streaming.windows(MINUTE, accumulate=False))
            to_gold = (to_gold, tables(replayed)[0]) | "WithReplay" >> beam.Flatten()
            tables(to_gold)
        gold = to_gold | "Gold" >> StreamingGold(rules, streaming)
        silver_rows = silver["records"] | "SilverToGlobal" >> beam.WindowInto(GlobalWindows())
        dead = (tables(*bronze["dead_letters"], *silver["dead_letters"])
                | "AllDeadLetters" >> beam.Flatten())
        tables(bronze["records"], silver_rows, dead)
        return {
            SERVER_METRICS_BRONZE.name: bronze["records"],
            SERVER_METRICS_SILVER.name: silver_rows,
            **gold,
            DEAD_LETTERS.name: dead,
        }
