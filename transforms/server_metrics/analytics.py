"""Gold analytics of the reference systems, on silver server metrics, batch and streaming.

* ``ServerAlertMatrix`` — seed 002: per server, sliding windows (30 s every 10 s), average
  CPU and memory, maximum network_in and disk_io, and the six labels.
* ``DetectAnomalies`` — seed 003: an EWMA + 3σ detector per server and metric, scoring
  each key's values in event-time order. Streaming keeps the detector in Beam state
  (correct in parallel; kept across restarts and updates on Dataflow) and buffers values
  until the watermark passes them; batch groups each key's values and sorts them. Both
  score through ``score_in_order``, so they agree.
* ``AlertSignals`` — every alert of every family (threshold rules, matrix, EWMA) in one
  feed, the table chat and paging integrations read.
"""
from __future__ import annotations

import math
from datetime import timedelta
from itertools import islice

import apache_beam as beam
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindows, SlidingWindows

from schemas.server_metrics import (
    ALERT_INCIDENTS,
    ALERT_NOTIFICATIONS,
    ALERT_SIGNALS,
    ANOMALIES,
    SERVER_ALERT_MATRIX,
)
from transforms.bronze import utc_of
from transforms.server_metrics.incidents import IncidentsFromSignals
from transforms.server_metrics.rules import AlertMatrix, AnomalyDetection
from transforms.windowing import BATCH, Mode, Streaming, bucket, pane_columns, schedule_flush

_MICROS = 1_000_000


def _identity(record) -> tuple:
    return (record["server_id"], record["server_name"], record["server_type"],
            record["location"])


# --- seed 002: the sliding-window alert matrix -------------------------------------------

class KeyBySlidingWindowsFn(beam.DoFn):
    """Batch: a record → one copy per sliding window holding it, keyed by (server, window
    start): the explicit form of ``SlidingWindows`` (see ``windowing.bucket``)."""

    def __init__(self, window_s: int, period_s: int):
        self._window, self._period = window_s * _MICROS, period_s * _MICROS

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        last = bucket(timestamp.micros, self._period // _MICROS)
        for start in range(last, timestamp.micros - self._window, -self._period):
            yield _identity(record) + (start,), record


def _record_identity(record: dict):
    return _identity(record), record


class KeyByWindowStartFn(beam.DoFn):
    """Streaming: after ``SlidingWindows``, key each copy by (server identity, its window's
    start). ``split``: element → (server identity, value): a record keeps itself; a part
    of a window (streaming on batches) is such a pair already."""

    def __init__(self, split=_record_identity):
        self._split = split

    def process(self, element, window=beam.DoFn.WindowParam):
        identity, value = self._split(element)
        yield identity + (window.start.micros,), value


class MatrixCombineFn(beam.CombineFn):
    """Records → (count, CPU sum and count, memory sum and count, max network_in, max
    disk_io); nulls are left out of the averages and maxima, never counted as 0."""

    def create_accumulator(self):
        return [0, 0.0, 0, 0.0, 0, None, None]

    def add_input(self, acc, record):
        acc[0] += 1
        cpu, memory = record.get("cpu_usage"), record.get("memory_usage")
        if cpu is not None:
            acc[1] += cpu
            acc[2] += 1
        if memory is not None:
            acc[3] += memory
            acc[4] += 1
        for i, name in ((5, "network_in"), (6, "disk_io")):
            value = record.get(name)
            if value is not None and (acc[i] is None or value > acc[i]):
                acc[i] = value
        return acc

    def merge_accumulators(self, accs):
        merged = self.create_accumulator()
        for acc in accs:
            for i in range(5):
                merged[i] += acc[i]
            for i in (5, 6):
                if acc[i] is not None and (merged[i] is None or acc[i] > merged[i]):
                    merged[i] = acc[i]
        return merged

    def extract_output(self, acc):
        return acc


class FormatMatrixRowFn(beam.DoFn):
    def __init__(self, matrix: AlertMatrix):
        self._matrix = matrix

    def process(self, keyed, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (server_id, server_name, server_type, location, start), acc = keyed
        count, cpu_sum, cpu_n, mem_sum, mem_n, network_in, disk_io = acc
        avg_cpu = cpu_sum / cpu_n if cpu_n else None
        avg_memory = mem_sum / mem_n if mem_n else None
        begin = utc_of(start)
        index, timing = pane_columns(window, pane)
        yield {
            "window_start": begin, "window_end": begin + timedelta(seconds=self._matrix.window_s),
            "metric_date": begin.date(), "pane_index": index, "pane_timing": timing,
            "server_id": server_id, "server_name": server_name, "server_type": server_type,
            "location": location, "record_count": count, "avg_cpu_usage": avg_cpu,
            "avg_memory_usage": avg_memory, "max_network_in": network_in,
            "max_disk_io": disk_io,
            "cpu_memory_alert": self._matrix.cpu_memory_label(avg_cpu, avg_memory),
            "network_disk_alert": self._matrix.network_disk_label(network_in, disk_io),
        }


class ServerAlertMatrix(beam.PTransform):
    """Silver records → ``server_alert_matrix`` rows, one per server and sliding window."""

    def __init__(self, matrix: AlertMatrix, mode: Mode = BATCH):
        super().__init__()
        self._matrix = matrix
        self._mode = mode

    def expand(self, silver):
        m = self._matrix
        return (silver
                | "KeyByWindow" >> self._mode.choose(
                    batch=beam.ParDo(KeyBySlidingWindowsFn(m.window_s, m.period_s)),
                    streaming=KeyBySlidingWindows(m, self._mode))
                | "CombineWindow" >> beam.CombinePerKey(MatrixCombineFn())
                | "MatrixRows" >> beam.ParDo(FormatMatrixRowFn(m)))


class KeyBySlidingWindows(beam.PTransform):
    """Streaming: elements into the matrix's sliding windows, each copy keyed by its
    window (``split`` as :class:`KeyByWindowStartFn` takes it)."""

    def __init__(self, matrix: AlertMatrix, mode: Streaming, split=_record_identity):
        super().__init__()
        self._matrix = matrix
        self._mode = mode
        self._split = split

    def expand(self, elements):
        m = self._matrix
        return (elements
                | "SlidingWindows" >> self._mode.windows(
                    m.window_s, accumulate=True,
                    window_fn=SlidingWindows(m.window_s, m.period_s))
                | "KeyByWindowStart" >> beam.ParDo(KeyByWindowStartFn(self._split)))


class MergeMatrixAccumulators(MatrixCombineFn):
    """Accumulators of parts of a window (one per batch fragment) → the window's."""

    def add_input(self, acc, other):
        return self.merge_accumulators((acc, other))


class MatrixFromParts(beam.PTransform):
    """Streaming on batches: ``(server identity, accumulator)`` parts, each timestamped
    within one period of the sliding windows → ``server_alert_matrix`` rows, fired as
    :class:`ServerAlertMatrix` fires."""

    def __init__(self, matrix: AlertMatrix, mode: Streaming):
        super().__init__()
        self._matrix = matrix
        self._mode = mode

    def expand(self, parts):
        m = self._matrix
        return (parts
                | "KeyByWindow" >> KeyBySlidingWindows(m, self._mode, split=_as_pair)
                | "CombineWindow" >> beam.CombinePerKey(MergeMatrixAccumulators())
                | "MatrixRows" >> beam.ParDo(FormatMatrixRowFn(m)))


def _as_pair(part):
    return part  # (server identity, accumulator)


# --- seed 003: EWMA + 3 sigma, in keyed state --------------------------------------------

class Detector:
    """The state of one (server, metric) and how a value is scored. Pure, so the DoFn,
    the benchmark and the quality test share it."""

    __slots__ = ("rules", "floor", "ewma", "variance", "count", "warm_sum")

    def __init__(self, rules: AnomalyDetection, metric: str, state: tuple | None = None):
        self.rules = rules
        self.floor = rules.floor(metric)
        self.ewma, self.variance, self.count, self.warm_sum = state or (None, None, 0, 0.0)

    @property
    def state(self) -> tuple:
        return self.ewma, self.variance, self.count, self.warm_sum

    def score(self, value: float) -> tuple[float, float, float] | None:
        """(expected, std, score) against the state before ``value``, then the update; None
        while warming up."""
        r = self.rules
        if self.ewma is None:
            self.ewma, self.count = value, 1
            return None
        residual = value - self.ewma
        result = None
        if self.count < r.warmup:
            # Warm-up: the variance starts as the mean of the first residuals.
            self.warm_sum += residual * residual
            if self.count + 1 >= r.warmup:
                self.variance = self.warm_sum / self.count
        else:
            std = max(math.sqrt(self.variance), self.floor)
            score = abs(residual) / std
            result = (self.ewma, std, score)
            # A spike must neither blind the detector (variance) nor drag the expected
            # value after it, which would make the next normal values alarm: both take
            # the residual clipped at the threshold.
            limit = r.threshold * std
            residual = max(-limit, min(limit, residual))
            self.variance += r.variance_alpha * (residual * residual - self.variance)
        self.ewma += r.alpha * residual  # seed 003: ewma ← α·v + (1 − α)·ewma
        self.count += 1
        return result


def scan_series(rules: AnomalyDetection, metric: str, values: list[float],
                state: tuple | None = None) -> tuple[list[tuple], tuple]:
    """``Detector.score`` over a whole series in one tight loop (the batch path scores
    millions of values): the same operations in the same order, so the same numbers.
    Returns the anomalies as (position, expected, std, score) and the detector's state.

    The warm-up and the scoring are two loops, so the one that runs over nearly every
    value tests neither the first value nor the warm-up, and counts at the end."""
    alpha, var_alpha = rules.alpha, rules.variance_alpha
    threshold, warmup, floor = rules.threshold, rules.warmup, rules.floor(metric)
    ewma, variance, count, warm_sum = state or (None, None, 0, 0.0)
    hits = []
    n, i = len(values), 0
    if ewma is None and n:
        ewma, count, i = values[0], 1, 1
    while i < n and count < warmup:
        residual = values[i] - ewma
        warm_sum += residual * residual
        if count + 1 >= warmup:
            variance = warm_sum / count
        ewma += alpha * residual
        count += 1
        i += 1
    sqrt = math.sqrt
    first = i  # n when the warm-up took every value: the loop below then runs no time
    for i, value in enumerate(islice(values, first, None), first):
        residual = value - ewma
        std = sqrt(variance)
        if std < floor:
            std = floor
        size = abs(residual)
        score = size / std
        if score >= threshold:
            hits.append((i, ewma, std, score))
        limit = threshold * std
        if size > limit:  # clipped, as the detector's max(-limit, min(limit, residual))
            residual = limit if residual > 0 else -limit
        variance += var_alpha * (residual * residual - variance)
        ewma += alpha * residual
    return hits, (ewma, variance, count + n - first, warm_sum)


class EwmaDetectorFn(beam.DoFn):
    """Streaming: ``((server_id, metric), (micros, server_name, server_type, location,
    value))`` → anomaly rows. Values wait in a bag until the watermark passes them (the
    flush timer, at the next ``flush_every_s`` boundary of event time), then are sorted
    and scored from the detector's state, so arrival order does not matter. A value
    older than what was already scored cannot be put in order: it is counted
    (``anomalies/out_of_order``) and left unscored, not guessed at."""

    #: What its flush emits at a drain must not fall behind the watermark downstream.
    HOLD_OUTPUT_AT_TIMERS = True
    PENDING = BagStateSpec("pending", PickleCoder())
    MODEL = ReadModifyWriteStateSpec("model", PickleCoder())
    FLUSH_AT = ReadModifyWriteStateSpec("flush_at", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, rules: AnomalyDetection):
        self._rules = rules
        self._every = rules.flush_every_s * _MICROS

    def setup(self):
        self._counters = _counters()

    def process(self, keyed, pending=beam.DoFn.StateParam(PENDING),
                flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH)):
        _, value = keyed
        pending.add(value)
        schedule_flush(value[0], self._every, flush_at, flush)

    @on_timer(FLUSH)
    def on_flush(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                 pending=beam.DoFn.StateParam(PENDING), model=beam.DoFn.StateParam(MODEL),
                 flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH)):
        values = sorted(pending.read())
        ready = [v for v in values if v[0] < fired.micros]
        waiting = values[len(ready):]
        pending.clear()
        for v in waiting:
            pending.add(v)
        flush_at.clear()
        if waiting:
            schedule_flush(waiting[0][0], self._every, flush_at, flush)
        rows, state = score_in_order(self._rules, key, ready, model.read(), self._counters)
        model.write(state)
        yield from rows


def score_in_order(rules: AnomalyDetection, key, values, state, counters):
    """Score one (server, metric)'s ``values`` (sorted by event time) from ``state`` (None
    at first): (anomaly rows, the state after them). Shared by the streaming DoFn and the
    batch one, so both give the same answers."""
    server_id, metric = key
    saved, last = state or (None, -1)
    detector = Detector(rules, metric, saved)
    scored, out_of_order, rows = 0, 0, []
    for micros, server_name, server_type, location, value in values:
        if micros <= last:
            out_of_order += 1
            continue
        last = micros
        scored += 1
        outcome = detector.score(rules.scaled_one(metric, value))
        if outcome is None or outcome[2] < rules.threshold:
            continue
        expected, std, score = outcome
        expected, std = rules.in_unit(metric, expected, std)
        when = utc_of(micros)
        rows.append({"timestamp": when, "metric_date": when.date(), "server_id": server_id,
                     "server_name": server_name, "server_type": server_type,
                     "location": location, "metric": metric, "value": value,
                     "expected": expected, "std": std, "score": score, "rule": "ewma_3sigma",
                     "severity": rules.severity_of(score)})
    counters["values_scored"].inc(scored)
    counters["out_of_order"].inc(out_of_order)
    counters["anomalies"].inc(len(rows))
    return rows, (detector.state, last)


def score_table_in_order(rules: AnomalyDetection, key, table, state, counters):
    """:func:`score_in_order` over a table of one (server, metric)'s values (``micros``,
    the identity, ``value``), sorted by ``micros``: the same values skipped (at or before
    the last one scored), the same state and the same rows, but scored in
    :func:`scan_series`'s one loop, with rows made of the anomalies alone. The streaming
    detector scores a flush of every server's values at once; one by one, it held the
    process long enough to delay the records arriving meanwhile."""
    import numpy as np

    server_id, metric = key
    saved, last = state or (None, -1)
    micros = table.column("micros").to_numpy()
    before = np.concatenate(([last], micros[:-1])) if len(micros) else micros
    kept = np.flatnonzero(micros > np.maximum(before, last))
    values = table.column("value").to_numpy(zero_copy_only=False)[kept]
    hits, saved = scan_series(rules, metric,
                              np.asarray(rules.scaled(metric, values), np.float64).tolist(),
                              saved)
    rows = []
    if hits:
        at = kept[[h[0] for h in hits]]
        found = table.take(at).to_pylist()
        for row, (_, expected, std, score) in zip(found, hits, strict=True):
            expected, std = rules.in_unit(metric, expected, std)
            when = utc_of(row["micros"])
            rows.append({"timestamp": when, "metric_date": when.date(), "server_id": server_id,
                         "server_name": row["server_name"], "server_type": row["server_type"],
                         "location": row["location"], "metric": metric, "value": row["value"],
                         "expected": expected, "std": std, "score": score,
                         "rule": "ewma_3sigma", "severity": rules.severity_of(score)})
    if len(kept):
        last = int(micros[kept[-1]])
    counters["values_scored"].inc(len(kept))
    counters["out_of_order"].inc(len(micros) - len(kept))
    counters["anomalies"].inc(len(rows))
    return rows, (saved, last)


def _counters() -> dict:
    return {name: Metrics.counter("anomalies", name)
            for name in ("values_scored", "out_of_order", "anomalies")}


class ScoreSeriesFn(beam.DoFn):
    """Batch: ``((server_id, metric), values)`` after a GroupByKey → anomaly rows. Every
    value is there, so sorting them is the event-time order (the streaming DoFn's state
    and timers would cost a state access per value here for the same answer)."""

    def __init__(self, rules: AnomalyDetection):
        self._rules = rules

    def setup(self):
        self._counters = _counters()

    def process(self, keyed):
        key, values = keyed
        rows, _ = score_in_order(self._rules, key, sorted(values), None, self._counters)
        yield from rows


class DetectAnomalies(beam.PTransform):
    """Silver records → ``anomalies`` rows, the same in batch and streaming."""

    def __init__(self, rules: AnomalyDetection, mode: Mode = BATCH):
        super().__init__()
        self._rules = rules
        self._mode = mode

    def expand(self, silver):
        metrics = self._rules.metrics

        def per_metric(record, timestamp=beam.DoFn.TimestampParam):
            for metric in metrics:
                value = record.get(metric)
                if value is not None:  # a missing sensor is not a zero
                    yield ((record["server_id"], metric),
                           (timestamp.micros, record["server_name"], record["server_type"],
                            record["location"], value))

        keyed = (silver
                 # One state per key for the whole run, not per window of an upstream step.
                 | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
                 # A typed key: state and grouping need a deterministic key coder.
                 | "PerServerAndMetric" >> beam.FlatMap(per_metric).with_output_types(
                     beam.typehints.Tuple[beam.typehints.Tuple[str, str], beam.typehints.Any]))
        # Batch scores each series whole; streaming keeps the detector in state.
        return keyed | "ScoreInEventTimeOrder" >> self._mode.choose(
            batch=("SeriesPerKey" >> beam.GroupByKey()
                   | "Score" >> beam.ParDo(ScoreSeriesFn(self._rules))),
            streaming=beam.ParDo(EwmaDetectorFn(self._rules)))


# --- one alert feed ----------------------------------------------------------------------

def _event(row: dict, **fields) -> dict:
    event = {name: row.get(name) for name in ALERT_SIGNALS.names}
    event.update(fields)
    return event


def threshold_events(alert: dict):
    yield _event(alert, family="threshold")


def matrix_events(row: dict, matrix: AlertMatrix):
    who = row["server_name"] or row["server_id"]
    span = f"{row['window_start']:%Y-%m-%d %H:%M:%S}–{row['window_end']:%H:%M:%S} UTC"
    if row["cpu_memory_alert"]:
        yield _event(row, family="matrix", rule="cpu_memory", severity=matrix.severity,
                     metric="cpu_usage,memory_usage", observed_value=row["avg_cpu_usage"],
                     message=f"{row['cpu_memory_alert']} on {who}: avg cpu "
                             f"{_fmt(row['avg_cpu_usage'])} %, avg memory "
                             f"{_fmt(row['avg_memory_usage'])} %, {span}")
    if row["network_disk_alert"]:
        yield _event(row, family="matrix", rule="network_disk", severity=matrix.severity,
                     metric="network_in,disk_io", observed_value=row["max_network_in"],
                     message=f"{row['network_disk_alert']} on {who}: max network_in "
                             f"{_fmt(row['max_network_in'])} kB/s, max disk_io "
                             f"{_fmt(row['max_disk_io'])} IOPS, {span}")


def anomaly_events(row: dict):
    who = row["server_name"] or row["server_id"]
    yield _event(row, family="ewma", rule=f"ewma_3sigma_{row['metric']}",
                 window_start=row["timestamp"], window_end=row["timestamp"],
                 pane_index=0, pane_timing="ON_TIME", observed_value=row["value"],
                 message=f"{row['metric']} {_fmt(row['value'])} on {who} is "
                         f"{row['score']:.1f}σ from its expected {_fmt(row['expected'])} "
                         f"(σ {_fmt(row['std'])}) at {row['timestamp']:%Y-%m-%d %H:%M:%S} UTC")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


class AlertSignals(beam.PTransform):
    """(threshold alerts, matrix rows, anomalies) → one ``alert_signals`` feed."""

    def __init__(self, matrix: AlertMatrix):
        super().__init__()
        self._matrix = matrix

    def expand(self, sources):
        alerts, matrix_rows, anomalies = sources
        # Each source fires in windows of its own; the rows already carry their window and
        # pane, so the feed is one global stream (Flatten wants one windowing).
        return ((alerts | "FromThresholdRules" >> beam.FlatMap(threshold_events)
                 | "ThresholdGlobal" >> beam.WindowInto(GlobalWindows()),
                 matrix_rows | "FromAlertMatrix" >> beam.FlatMap(matrix_events, self._matrix)
                 | "MatrixGlobal" >> beam.WindowInto(GlobalWindows()),
                 anomalies | "FromEwma" >> beam.FlatMap(anomaly_events))
                | "OneFeed" >> beam.Flatten())


class ServerMetricsAnalytics(beam.PTransform):
    """Silver records, gold's threshold alerts (and its hold signals, for hysteresis) →
    the alert matrix, the anomalies, the one alert feed and the incidents, as table name →
    PCollection."""

    def __init__(self, rules, mode: Mode = BATCH):
        super().__init__()
        self._rules = rules
        self._mode = mode

    def expand(self, silver_and_alerts):
        silver, alerts, *holds = silver_and_alerts
        matrix = silver | "AlertMatrix" >> ServerAlertMatrix(self._rules.alert_matrix,
                                                             self._mode)
        anomalies = silver | "DetectAnomalies" >> DetectAnomalies(
            self._rules.anomaly_detection, self._mode)
        events = (alerts, matrix, anomalies) | "AlertSignals" >> AlertSignals(
            self._rules.alert_matrix)
        paged = (events, *holds) | "Incidents" >> IncidentsFromSignals(self._rules, self._mode)
        return {SERVER_ALERT_MATRIX.name: matrix, ANOMALIES.name: anomalies,
                ALERT_SIGNALS.name: events, ALERT_INCIDENTS.name: paged["incidents"],
                ALERT_NOTIFICATIONS.name: paged["notifications"]}
