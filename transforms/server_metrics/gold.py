"""Gold on batches: everything one server's day of silver records gives, at once.

After the shuffle, a (server, day) group holds every silver record of that server and
day, so its dedupe is complete, and so are its minutes, hours and day: those tables are
computed from the group's arrays with no further shuffle. What needs other groups leaves
as small partial results: per-day summaries for the locations (across servers), the
sliding windows that straddle midnight (the next day's group holds their other part), and
the server's series for the EWMA detector (scored across days, in event-time order).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.server_metrics import (
    ALERT_SIGNALS,
    ALERTS,
    ANOMALIES,
    HOURLY_SERVER_METRICS,
    MATRIX_LABELS,
    SERVER_ALERT_MATRIX,
    SERVER_HEALTH_SUMMARY,
    SERVER_METRICS_MINUTELY,
)
from transforms import text
from transforms.batches import conform
from transforms.server_metrics.aggregate import (
    IDENTITY,
    Measures,
    Segments,
    identity_codes,
    identity_columns,
    micros_of,
    window_columns,
)
from transforms.server_metrics.rules import AlertMatrix, ServerMetricsRules
from transforms.windowing import DAY, HOUR, MINUTE

_US = 1_000_000
#: What the EWMA detector needs of each record, in this order.
SERIES_COLUMNS = ("timestamp",) + IDENTITY[1:]


def _windows(measures: Measures, codes: np.ndarray, seconds: int) -> Segments:
    micros = measures.micros
    return Segments(codes, micros - micros % (seconds * _US))


def server_table(measures: Measures, codes, seconds: int, schema, quantiles: bool = True,
                 health=None) -> pa.Table:
    seg = _windows(measures, codes, seconds)
    cols = window_columns(seg.window_us, seconds, hour="hour_of_day" in schema.names)
    cols.update(identity_columns(measures.table, seg.first))
    cols.update(measures.columns(seg, quantiles))
    if health is not None:
        score = health_scores(health, cols["avg_cpu_usage"], cols["avg_memory_usage"],
                              cols["high_utilization_pct"])
        cols["server_health_score"] = pa.array(score, pa.float64(), mask=np.isnan(score))
    return conform(pa.table({n: cols[n] for n in schema.names}), schema)


def health_scores(health, avg_cpu, avg_memory, high_util_pct) -> np.ndarray:
    """:meth:`HealthWeights.score` over columns (NaN where it is null): the weighted sum
    over the metrics present, scaled to all the weights."""
    cpu, mem, pct = (np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64)
                     for c in (avg_cpu, avg_memory, high_util_pct))
    pct = np.where(np.isnan(cpu) & np.isnan(mem), np.nan, pct)
    weighted = np.zeros(len(cpu))
    weight = np.zeros(len(cpu))
    for values, w in ((cpu, health.cpu), (mem, health.memory),
                      (pct, health.high_utilization)):
        present = ~np.isnan(values)
        weighted += np.where(present, values * w, 0.0)
        weight += np.where(present, w, 0.0)
    total = health.cpu + health.memory + health.high_utilization
    with np.errstate(invalid="ignore", divide="ignore"):
        raw = 100.0 - weighted * total / np.where(weight > 0, weight, np.nan)
    return np.minimum(100.0, np.maximum(0.0, raw))


def threshold_signals(measures: Measures, codes,
                      rules: ServerMetricsRules) -> tuple[pa.Table, pa.Table | None]:
    """One pass over the alert rules: the ``alerts`` rows, a row per server, minute and
    rule breached (``RaiseAlertsFn``'s rows, column-wise), and the hold signals of the
    rules with hysteresis (a minute beyond the clear level with no record breaching:
    ``HoldSignalsFn``'s rows, as the incident tracker's signal columns), None if none."""
    seg = _windows(measures, codes, MINUTE)
    table, parts, holds = measures.table, [], []
    for rule in sorted(rules.alert_rules, key=lambda r: r.name):
        v = table.column(rule.metric).to_numpy()
        above = rule.above is not None
        breach, held = rule.masks(v, table.column("server_id"), table.column("server_type"))
        counts = seg.count(breach)
        if held is not None:
            idle = np.flatnonzero((seg.count(held) > 0) & (counts == 0))
            if len(idle):  # most groups hold nothing: no empty table to build and drop
                holds.append(_hold_table(rule, table, seg, idle))
        hit = np.flatnonzero(counts)
        if len(hit):
            extreme = seg.extreme(np.where(breach, v, np.nan), above)[hit]
            parts.append(_alert_table(rule, table, seg, hit, counts[hit], extreme))
    alerts = (pa.concat_tables(parts) if len(parts) > 1 else parts[0]) if parts \
        else ALERTS.arrow_schema().empty_table()
    return alerts, (pa.concat_tables(holds) if holds else None)


def _alert_table(rule, table: pa.Table, seg: Segments, hit: np.ndarray, counts: np.ndarray,
                 extreme: np.ndarray) -> pa.Table:
    """The ``alerts`` rows of one rule's breached minutes, with their messages."""
    n = len(hit)
    starts = seg.window_us[hit]
    cols = window_columns(starts, MINUTE)
    cols.update(identity_columns(table, seg.first[hit]))
    threshold = rule.thresholds(cols["server_id"], cols["server_type"])
    minutes = (starts // (MINUTE * _US)).astype("datetime64[m]")
    begin = [t.replace("T", " ") for t in np.datetime_as_string(minutes).tolist()]
    until = [t[11:] for t in np.datetime_as_string(minutes + 1).tolist()]
    direction = "above" if rule.above is not None else "below"
    head = f"{rule.metric} {direction} "
    who = [name or sid for name, sid in zip(cols["server_name"].to_pylist(),
                                             cols["server_id"].to_pylist(), strict=True)]
    records = seg.size[hit].tolist()
    messages = [f"{head}{limit:g} on {w}: {c} of {r} records, most extreme {x:g}, {b}–{e} UTC"
                for limit, w, c, r, x, b, e in zip(
                    threshold.tolist(), who, counts.tolist(), records, extreme.tolist(),
                    begin, until, strict=True)]
    cols.update(rule=pa.repeat(pa.scalar(rule.name), n),
                severity=pa.repeat(pa.scalar(rule.severity), n),
                metric=pa.repeat(pa.scalar(rule.metric), n),
                threshold=pa.array(threshold, pa.float64()),
                observed_value=pa.array(extreme, pa.float64()),
                breach_count=pa.array(counts, pa.int64()),
                message=pa.array(messages, pa.string()))
    return conform(pa.table(cols), ALERTS)


def threshold_signal_table(alerts: pa.Table) -> pa.Table:
    """The alert feed's rows of the ``alerts`` rows (``threshold_events``, column-wise)."""
    n = alerts.num_rows
    return conform(pa.table({
        name: alerts.column(name) if name in alerts.schema.names
        else pa.repeat(pa.scalar("threshold"), n) if name == "family"
        else pa.nulls(n) for name in ALERT_SIGNALS.names}), ALERT_SIGNALS)


def _hold_table(rule, table: pa.Table, seg: Segments, hit: np.ndarray) -> pa.Table:
    from transforms.server_metrics.incidents import SIGNAL_FIELDS
    from transforms.server_metrics.row_gold import HOLD

    n, start = len(hit), seg.window_us[hit]
    ts = pa.timestamp("us", tz="UTC")
    cols = {"window_start": pa.array(start, ts),
            "window_end": pa.array(start + MINUTE * _US, ts),
            "family": pa.repeat(pa.scalar(HOLD), n), "rule": pa.repeat(pa.scalar(rule.name), n),
            "severity": pa.repeat(pa.scalar(rule.severity), n),
            **identity_columns(table, seg.first[hit]),
            "metric": pa.repeat(pa.scalar(rule.metric), n),
            "observed_value": pa.nulls(n, pa.float64())}
    schema = ALERT_SIGNALS.arrow_schema()  # the signals' column types, to go with them
    return pa.table(cols).select(list(SIGNAL_FIELDS)).cast(
        pa.schema([schema.field(n) for n in SIGNAL_FIELDS]))


# --- seed 002's alert matrix ----------------------------------------------------------

def matrix_accumulators(measures: Measures, codes, matrix: AlertMatrix):
    """Every sliding window of the group: (segments, window starts, [count, cpu sum, cpu
    n, memory sum, memory n, max network_in, max disk_io] as arrays)."""
    period, copies = matrix.period_s * _US, matrix.window_s // matrix.period_s
    micros = measures.micros
    last = micros - micros % period
    starts = np.concatenate([last - k * period for k in range(copies)])
    code = np.tile(codes, copies)
    rows = np.tile(np.arange(len(micros)), copies)
    order = np.lexsort((starts, code, starts // (DAY * _US)))  # by day, as the records
    starts, code, rows = starts[order], code[order], rows[order]
    seg = Segments(code, starts)
    cpu, mem = measures.cpu[rows], measures.memory[rows]
    acc = [seg.size, seg.sum(cpu), seg.count(~np.isnan(cpu)), seg.sum(mem),
           seg.count(~np.isnan(mem)), seg.extreme(measures.network_in[rows], True),
           seg.extreme(measures.disk_io[rows], True)]
    return seg, rows[seg.first], acc


def _label(a, a_max, b, b_max, labels) -> np.ndarray:
    both, only_a, only_b = labels
    with np.errstate(invalid="ignore"):
        over_a, over_b = a > a_max, b > b_max
    return np.where(over_a & over_b, both, np.where(over_a, only_a, np.where(
        over_b, only_b, None)))


def matrix_table(seg_starts, identity: dict[str, pa.Array], acc, matrix: AlertMatrix
                 ) -> pa.Table:
    count, cpu_sum, cpu_n, mem_sum, mem_n, net, disk = acc
    with np.errstate(invalid="ignore", divide="ignore"):
        cpu = np.where(cpu_n > 0, cpu_sum / cpu_n, np.nan)
        mem = np.where(mem_n > 0, mem_sum / mem_n, np.nan)
    net = np.where(np.isinf(net), np.nan, net)
    disk = np.where(np.isinf(disk), np.nan, disk)
    cols = {
        **window_columns(seg_starts, matrix.window_s), **identity,
        "record_count": pa.array(count, pa.int64()),
        "avg_cpu_usage": pa.array(cpu, mask=np.isnan(cpu)),
        "avg_memory_usage": pa.array(mem, mask=np.isnan(mem)),
        "max_network_in": pa.array(net, mask=np.isnan(net)),
        "max_disk_io": pa.array(disk, mask=np.isnan(disk)),
        "cpu_memory_alert": pa.array(_label(cpu, matrix.cpu_usage, mem, matrix.memory_usage,
                                            MATRIX_LABELS["cpu_memory_alert"]), pa.string()),
        "network_disk_alert": pa.array(_label(net, matrix.network_in, disk, matrix.disk_io,
                                              MATRIX_LABELS["network_disk_alert"]),
                                       pa.string()),
    }
    return conform(pa.table(cols), SERVER_ALERT_MATRIX)


def matrix_event_table(table: pa.Table, matrix: AlertMatrix) -> pa.Table:
    """The alert feed's rows of the labelled windows: ``matrix_events``, column-wise."""
    parts = []
    for label, rule, metric, observed, (a, a_text), (b, b_text), unit in (
            ("cpu_memory_alert", "cpu_memory", "cpu_usage,memory_usage", "avg_cpu_usage",
             ("avg_cpu_usage", ": avg cpu "), ("avg_memory_usage", " %, avg memory "), " %, "),
            ("network_disk_alert", "network_disk", "network_in,disk_io", "max_network_in",
             ("max_network_in", ": max network_in "), ("max_disk_io", " kB/s, max disk_io "),
             " IOPS, ")):
        sub = table.filter(table.column(label).is_valid())
        n = sub.num_rows
        if not n:
            continue
        message = text.join(
            sub.column(label), " on ", text.name_or_id(sub.column("server_name"),
                                                       sub.column("server_id")),
            a_text, text.fixed(sub.column(a), 2, "n/a"),
            b_text, text.fixed(sub.column(b), 2, "n/a"),
            unit, text.utc_seconds(sub.column("window_start")),
            "–", text.utc_seconds(sub.column("window_end"), time_only=True), " UTC")
        cols = {name: sub.column(name) for name in ALERT_SIGNALS.names if name in sub.schema.names}
        cols.update(family=pa.repeat(pa.scalar("matrix"), n), rule=pa.repeat(pa.scalar(rule), n),
                    severity=pa.repeat(pa.scalar(matrix.severity), n),
                    metric=pa.repeat(pa.scalar(metric), n), observed_value=sub.column(observed),
                    message=message)
        parts.append(conform(pa.table(cols), ALERT_SIGNALS))
    if not parts:
        return ALERT_SIGNALS.arrow_schema().empty_table()
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


class ServerDays:
    """What (server, day) groups of deduplicated silver records give, computed together.

    Gold's fixed cost (a few dozen Arrow calls, ~6 ms) is paid once per call, not once
    per group. The minute, hour and day windows never cross midnight, so they are the
    same over any set of whole groups; an alert-matrix window that does is a partial
    result, merged with its other part by key (``GoldMatrixAcrossMidnight``)."""

    def __init__(self, silver: pa.Table, rules: ServerMetricsRules):
        self.rules = rules
        # Sorted by day, identity, then event time: every window is a contiguous run, and
        # the tables come out in the order of the sink's day partitions.
        codes = identity_codes(silver)
        micros = micros_of(silver)
        order = np.lexsort((micros, codes, micros // (DAY * _US)))
        if not np.array_equal(order, np.arange(len(order))):
            silver, codes = silver.take(order), codes[order]
        self.silver, self.codes = silver, codes
        self.measures = Measures(silver)

    def tables(self) -> tuple[dict[str, pa.Table], pa.Table, pa.Table | None]:
        """The tables the groups complete, their threshold alerts (for the feed) and
        their hold signals (for the incidents)."""
        m, codes, rules = self.measures, self.codes, self.rules
        alerts, holds = threshold_signals(m, codes, rules)
        return {
            SERVER_METRICS_MINUTELY.name: server_table(m, codes, MINUTE, SERVER_METRICS_MINUTELY,
                                                       quantiles=False),
            HOURLY_SERVER_METRICS.name: server_table(m, codes, HOUR, HOURLY_SERVER_METRICS),
            SERVER_HEALTH_SUMMARY.name: server_table(
                m, codes, DAY, SERVER_HEALTH_SUMMARY, health=rules.health_weights),
            ALERTS.name: alerts,
        }, alerts, holds

    def day_summaries(self):
        """((location, server_type, day start), (server_id, summary)) per identity and day."""
        seg = _windows(self.measures, self.codes, DAY)
        ids = {k: c.to_pylist() for k, c in identity_columns(self.silver, seg.first).items()}
        for j, (first, size) in enumerate(zip(seg.first.tolist(), seg.size.tolist(),
                                              strict=True)):
            summary = self.measures.summary(slice(first, first + size))
            yield ((ids["location"][j], ids["server_type"][j], int(seg.window_us[j])),
                   (ids["server_id"][j], summary))

    def matrix(self):
        """(complete windows' table, partial windows as ((identity, start), accumulator)):
        a window is partial where it reaches past the day of its records (the other day's
        group holds the rest)."""
        matrix = self.rules.alert_matrix
        seg, rows, acc = matrix_accumulators(self.measures, self.codes, matrix)
        starts = seg.window_us
        day = self.measures.micros[rows] - self.measures.micros[rows] % (DAY * _US)
        inside = (starts >= day) & (starts + matrix.window_s * _US <= day + DAY * _US)
        complete = np.flatnonzero(inside)
        table = matrix_table(starts[complete], identity_columns(self.silver, rows[complete]),
                             [a[complete] for a in acc], matrix)
        partial = np.flatnonzero(~inside)
        pieces = []
        if len(partial):
            ids = {k: c.to_pylist() for k, c in
                   identity_columns(self.silver, rows[partial]).items()}
            values = [a[partial].tolist() for a in acc]
            for j, s in enumerate(partial.tolist()):
                pieces.append((tuple(ids[k][j] for k in IDENTITY) + (int(starts[s]),),
                               [v[j] for v in values]))
        return table, pieces


def series(silver: pa.Table, rules: ServerMetricsRules) -> pa.Table:
    """The columns the EWMA detector scores (of a server's records)."""
    return silver.select(SERIES_COLUMNS + rules.anomaly_detection.metrics)


def merge_matrix_accumulators(accs) -> list:
    merged = None
    for acc in accs:
        if merged is None:
            merged = list(acc)
            continue
        for i in range(5):
            merged[i] += acc[i]
        for i in (5, 6):
            merged[i] = max(merged[i], acc[i])
    return merged


def partial_matrix_rows(merged: list, matrix: AlertMatrix) -> pa.Table:
    """Windows merged from their parts on two days, ``((identity, start), accumulator)``
    each → their matrix rows, in one table."""
    keys = [key for key, _ in merged]
    identity = {name: pa.array([key[i] for key in keys], pa.string())
                for i, name in enumerate(IDENTITY)}
    starts = np.array([key[len(IDENTITY)] for key in keys], np.int64)
    acc = [np.array(values) for values in zip(*(acc for _, acc in merged), strict=True)]
    return matrix_table(starts, identity, acc, matrix)


def anomaly_tables(series: pa.Table, server_id: str, rules, counters) -> tuple[pa.Table,
                                                                                 pa.Table]:
    """Score a server's series (every record of its run) metric by metric, in event-time
    order (``scan_series``: the row-level ``Detector`` in one loop); (anomalies, their
    alert events), built column-wise."""
    from transforms.server_metrics.analytics import scan_series

    micros = series.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.argsort(micros, kind="stable")
    series = series.take(order)
    micros = micros[order]
    detection = rules.anomaly_detection
    scored, parts = 0, []
    ts = pa.timestamp("us", tz="UTC")
    for metric in detection.metrics:
        column = series.column(metric)
        present = np.flatnonzero(column.is_valid().to_numpy(zero_copy_only=False))
        values = column.to_numpy()[present]  # a missing sensor is not a zero
        scored += len(values)
        hits, _ = scan_series(detection, metric,
                              np.asarray(detection.scaled(metric, values)).tolist())
        if not hits:
            continue
        hits = [(i, *detection.in_unit(metric, expected, std), score)
                for i, expected, std, score in hits]
        found = np.array([h[0] for h in hits])
        at = pa.array(present[found])
        n = len(hits)
        when = pa.array(micros[present[found]], ts)
        cols = {"timestamp": when, "metric_date": when.cast(pa.date32()),
                "server_id": pa.repeat(pa.scalar(server_id), n),
                **{k: series.column(k).take(at) for k in IDENTITY[1:]},
                "metric": pa.repeat(pa.scalar(metric), n), "value": pa.array(values[found]),
                "expected": pa.array([h[1] for h in hits], pa.float64()),
                "std": pa.array([h[2] for h in hits], pa.float64()),
                "score": pa.array([h[3] for h in hits], pa.float64()),
                "rule": pa.repeat(pa.scalar("ewma_3sigma"), n),
                "severity": detection.severities([h[3] for h in hits])}
        parts.append(conform(pa.table(cols), ANOMALIES))
    counters["values_scored"].inc(scored)
    if not parts:
        return (ANOMALIES.arrow_schema().empty_table(),
                ALERT_SIGNALS.arrow_schema().empty_table())
    anomalies = pa.concat_tables(parts)
    counters["anomalies"].inc(anomalies.num_rows)
    return anomalies, anomaly_event_table(anomalies)


def anomaly_event_table(anomalies: pa.Table) -> pa.Table:
    """The alert feed's rows of the anomalies: ``anomaly_events``, column-wise."""
    col = anomalies.column
    n = anomalies.num_rows
    message = text.join(
        col("metric"), " ", text.fixed(col("value"), 2, "n/a"), " on ",
        text.name_or_id(col("server_name"), col("server_id")), " is ",
        text.fixed(col("score"), 1), "σ from its expected ",
        text.fixed(col("expected"), 2, "n/a"), " (σ ", text.fixed(col("std"), 2, "n/a"),
        ") at ", text.utc_seconds(col("timestamp")), " UTC")
    metric = col("metric")
    cols = {"window_start": col("timestamp"), "window_end": col("timestamp"),
            "metric_date": col("metric_date"), "pane_index": pa.array(np.zeros(n, np.int64)),
            "pane_timing": pa.repeat(pa.scalar("ON_TIME"), n),
            **{k: col(k) for k in IDENTITY},
            "family": pa.repeat(pa.scalar("ewma"), n),
            "rule": pc.binary_join_element_wise(pa.repeat(pa.scalar("ewma_3sigma"), n), metric,
                                                "_"),
            "severity": col("severity"), "metric": metric, "observed_value": col("value"),
            "message": message}
    return conform(pa.table(cols), ALERT_SIGNALS)
