"""The reference: the same medallion as a plain single-process Python loop.

It calls the very functions the Beam transforms call (``to_bronze``, ``to_silver``,
``ServerMetricsSummary``) and writes the same Parquet tables, so the benchmark's ratio
measures what the framework costs, not differences in logic.
"""
from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.transforms.window import GlobalWindow

from beam_pipelines.io.lakehouse import table_dir
from beam_pipelines.server_metrics import TABLES
from schemas.server_metrics import (
    ALERTS,
    HOURLY_SERVER_METRICS,
    LOCATION_PERFORMANCE,
    SERVER_HEALTH_SUMMARY,
    SERVER_METRICS_MINUTELY,
)
from transforms.bronze import EPOCH, RawRecord
from transforms.dead_letters import RecordRejected, dead_letter
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_gold import (
    SIGNAL_HOLDS,
    FormatLocationRowFn,
    FormatServerRowFn,
    HoldSignalsFn,
    RaiseAlertsFn,
)
from transforms.server_metrics.row_silver import _copy_rank, to_silver
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.summary import ServerMetricsSummary
from transforms.windowing import DAY, HOUR, MINUTE, bucket

_US = timedelta(microseconds=1)


class _TableWriter:
    def __init__(self, output_dir, schema, batch=20_000):
        os.makedirs(table_dir(output_dir, schema), exist_ok=True)
        self.schema, self.arrow, self.batch, self.rows = schema, schema.arrow_schema(), batch, []
        self.writer = pq.ParquetWriter(
            os.path.join(table_dir(output_dir, schema), "part-00000-of-00001.parquet"),
            self.arrow)

    def add(self, row):
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self):
        if self.rows:
            rows, self.rows = self.rows, []
            self.writer.write_table(pa.Table.from_arrays(
                [pa.array([r[n] for r in rows], type=f.type)
                 for n, f in zip(self.schema.names, self.arrow, strict=True)],
                schema=self.arrow))

    def close(self):
        self.flush()
        self.writer.close()


def run_loop(path: str, output_dir: str, rules: ServerMetricsRules | None = None) -> dict:
    from beam_pipelines.config import load_rules

    rules = rules or load_rules()  # the rules file, as the pipeline (locations included)
    out = {t.name: _TableWriter(output_dir, t) for t in TABLES}
    dead = out["dead_letters"]
    now = datetime.now(timezone.utc)
    kept: dict[tuple, dict] = {}
    with open(path, "rb") as fh:
        for raw_line in fh:
            raw = RawRecord(raw_line.rstrip(b"\n"), path)
            try:
                b = to_bronze(raw, now)
            except RecordRejected as e:
                dead.add(dead_letter(pipeline="server_metrics", layer="bronze",
                                     step="ParseServerMetric", reason=e.reason,
                                     message=e.message, payload=raw.payload, source=path,
                                     event_timestamp=e.event_timestamp, now=now))
                continue
            out["server_metrics_bronze"].add(b)
            try:
                s = to_silver(b, rules)
            except RecordRejected as e:
                dead.add(dead_letter(pipeline="server_metrics", layer="silver",
                                     step="CheckServerMetric", reason=e.reason,
                                     message=e.message, payload=b, source=path,
                                     event_timestamp=b["timestamp"], now=now))
                continue
            key = (s["server_id"], (s["timestamp"] - EPOCH) // _US)
            other = kept.get(key)
            if other is not None:
                loser = s
                if _copy_rank(s) < _copy_rank(other):
                    kept[key], loser = s, other
                dead.add(dead_letter(pipeline="server_metrics", layer="silver",
                                     step="DeduplicateEvents", reason="duplicate_event",
                                     message="duplicate", payload=loser, source=path,
                                     event_timestamp=loser["timestamp"], now=now))
            else:
                kept[key] = s
    minutes: dict[tuple, ServerMetricsSummary] = defaultdict(ServerMetricsSummary)
    for (_, micros), s in kept.items():
        out["server_metrics_silver"].add(s)
        minutes[(s["server_id"], s["server_name"], s["server_type"], s["location"],
                 bucket(micros, MINUTE))].add(s, rules.alert_rules)
    gold = _roll_up(minutes, rules)
    holds = gold.pop(SIGNAL_HOLDS)
    gold.update(_analytics(kept, rules, gold[ALERTS.name], holds))
    for name, rows in gold.items():
        for row in rows:
            out[name].add(row)
    for writer in out.values():
        writer.close()
    return {"silver": len(kept), **{k: len(v) for k, v in gold.items()}}


def _roll_up(minutes, rules):
    """Hours, days and locations as merges of minute summaries; rows formatted by the very
    DoFns the pipeline uses."""

    def merge(summaries, seconds):
        merged: dict[tuple, ServerMetricsSummary] = defaultdict(ServerMetricsSummary)
        for key, summary in summaries.items():
            merged[key[:-1] + (bucket(key[-1], seconds),)].merge(summary)
        return merged

    def rows(fn, summaries):
        return [row for item in summaries.items()
                for row in fn.process(item, GlobalWindow(), None)]

    hours = merge(minutes, HOUR)
    days = merge(hours, DAY)
    places: dict[tuple, tuple] = defaultdict(lambda: (set(), ServerMetricsSummary()))
    for (server_id, _, server_type, location, day), summary in days.items():
        servers, merged = places[(location, server_type, day)]
        servers.add(server_id)
        merged.merge(summary)
    return {
        SERVER_METRICS_MINUTELY.name: rows(
            FormatServerRowFn(SERVER_METRICS_MINUTELY, MINUTE, quantiles=False), minutes),
        HOURLY_SERVER_METRICS.name: rows(FormatServerRowFn(HOURLY_SERVER_METRICS, HOUR), hours),
        SERVER_HEALTH_SUMMARY.name: rows(FormatServerRowFn(
            SERVER_HEALTH_SUMMARY, DAY, health_weights=rules.health_weights), days),
        LOCATION_PERFORMANCE.name: rows(FormatLocationRowFn(rules), places),
        ALERTS.name: rows(RaiseAlertsFn(rules.alert_rules), minutes),
        SIGNAL_HOLDS: rows(HoldSignalsFn(rules.alert_rules), minutes),
    }


def _analytics(kept, rules, alerts, holds=()):
    """The alert matrix, the EWMA detector and the alert feed through the pipeline's own
    pure parts (its combine, row formatter, scorer and feed functions)."""
    from apache_beam.utils.timestamp import Timestamp

    from transforms.server_metrics.analytics import (
        FormatMatrixRowFn,
        KeyBySlidingWindowsFn,
        MatrixCombineFn,
        _counters,
        anomaly_events,
        matrix_events,
        score_in_order,
        threshold_events,
    )

    m, detection = rules.alert_matrix, rules.anomaly_detection
    combine, keys = MatrixCombineFn(), KeyBySlidingWindowsFn(m.window_s, m.period_s)
    windows: dict[tuple, list] = defaultdict(combine.create_accumulator)
    series: dict[tuple, list] = defaultdict(list)
    for (_, micros), s in kept.items():
        for key, record in keys.process(s, Timestamp(micros=micros)):
            combine.add_input(windows[key], record)
        for metric in detection.metrics:
            if s[metric] is not None:
                series[(s["server_id"], metric)].append(
                    (micros, s["server_name"], s["server_type"], s["location"], s[metric]))
    fmt, counters = FormatMatrixRowFn(m), _counters()
    matrix = [row for item in windows.items() for row in fmt.process(item, GlobalWindow(), None)]
    anomalies = [row for key, values in series.items()
                 for row in score_in_order(detection, key, sorted(values), None, counters)[0]]
    events = ([e for a in alerts for e in threshold_events(a)]
              + [e for row in matrix for e in matrix_events(row, m)]
              + [e for row in anomalies for e in anomaly_events(row)])
    from transforms.server_metrics.incidents import incidents_of_server, signal_of_row

    by_server: dict[str, list] = defaultdict(list)
    for e in [*events, *holds]:
        by_server[e["server_id"]].append(signal_of_row(e))
    incidents, notifications = [], []
    for signals in by_server.values():
        found, notes = incidents_of_server(rules.incidents, signals)
        incidents += found
        notifications += notes
    return {"server_alert_matrix": matrix, "anomalies": anomalies, "alert_signals": events,
            "alert_incidents": incidents, "alert_notifications": notifications}
