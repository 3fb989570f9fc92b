"""Gold: windowed aggregates of silver server metrics, in event time.

Each silver record is read once, into a per-server one-minute summary
(:class:`~.summary.ServerMetricsSummary`). Hours, days and locations × server
types are merges of those minute summaries (``RollUp``), so every table agrees with every
other (the record counts of each table add up to the silver count).

Tables: ``server_metrics_minutely`` (charts), ``hourly_server_metrics``,
``server_health_summary`` (daily, with the health score), ``location_performance`` (daily
per location and server type) and ``alerts`` (per server, minute and rule that fired).
"""
from __future__ import annotations

from datetime import timedelta

import apache_beam as beam

from schemas.server_metrics import (
    ALERTS,
    HOURLY_SERVER_METRICS,
    LOCATION_PERFORMANCE,
    SERVER_HEALTH_SUMMARY,
    SERVER_METRICS_MINUTELY,
)
from transforms.bronze import utc_of
from transforms.server_metrics.rules import AlertRule, ServerMetricsRules
from transforms.server_metrics.summary import ServerMetricsSummary
from transforms.windowing import (
    BATCH,
    DAY,
    HOUR,
    MINUTE,
    Mode,
    Unchanged,
    bucket,
    pane_columns,
)


class KeyByServerMinuteFn(beam.DoFn):
    """Key a silver record by the server's full identity (as the reference SQL's GROUP BY)
    and its event-time minute."""

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        yield ((record["server_id"], record["server_name"], record["server_type"],
                record["location"], bucket(timestamp.micros, MINUTE)), record)


class _SummaryCombineFn(beam.CombineFn):
    def create_accumulator(self):
        return ServerMetricsSummary()

    def merge_accumulators(self, summaries):
        # Streaming can ask to merge nothing: an on-time pane after an early one, in
        # discarding mode, has no new input.
        summaries = iter(summaries)
        merged = next(summaries, None) or ServerMetricsSummary()
        for s in summaries:
            merged.merge(s)
        return merged

    def extract_output(self, summary):
        return summary


class SummariseServerMetrics(_SummaryCombineFn):
    """Silver records → one :class:`ServerMetricsSummary` (also counting rule breaches)."""

    def __init__(self, alert_rules: tuple[AlertRule, ...] = ()):
        self._rules = tuple(alert_rules)

    def add_input(self, summary, record):
        summary.add(record, self._rules)
        return summary


class MergeSummaries(_SummaryCombineFn):
    """Summaries → their merge: how minutes become hours and hours become days."""

    def add_input(self, summary, other):
        return summary.merge(other)


class LocationRollup(beam.CombineFn):
    """(server_id, daily summary) pairs → (distinct servers, merged summary)."""

    def create_accumulator(self):
        return (set(), ServerMetricsSummary())

    def add_input(self, acc, server_and_summary):
        server_id, summary = server_and_summary
        acc[0].add(server_id)
        acc[1].merge(summary)
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        servers, merged = next(accs, None) or self.create_accumulator()
        for other_servers, other in accs:
            servers |= other_servers
            merged.merge(other)
        return servers, merged

    def extract_output(self, acc):
        return acc




def _window_columns(start_micros: int, seconds: int) -> dict:
    start = utc_of(start_micros)
    return {"window_start": start, "window_end": start + timedelta(seconds=seconds),
            "metric_date": start.date()}


def _server_columns(key) -> dict:
    server_id, server_name, server_type, location, _ = key
    return {"server_id": server_id, "server_name": server_name, "server_type": server_type,
            "location": location}


class FormatServerRowFn(beam.DoFn):
    """((server, window start), summary) → one row of a per-server gold table."""

    def __init__(self, schema, seconds: int, quantiles: bool = True, health_weights=None):
        self._names = schema.names
        self._seconds = seconds
        self._quantiles = quantiles
        self._weights = health_weights

    def process(self, keyed_summary, window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam):
        key, summary = keyed_summary
        row = _window_columns(key[-1], self._seconds)
        row["pane_index"], row["pane_timing"] = pane_columns(window, pane)
        row["hour_of_day"] = row["window_start"].hour
        row.update(_server_columns(key))
        row.update(summary.columns(self._quantiles))
        if self._weights is not None:
            row["server_health_score"] = self._weights.score(
                row["avg_cpu_usage"], row["avg_memory_usage"], row["high_utilization_pct"])
        yield {name: row[name] for name in self._names}


class FormatLocationRowFn(beam.DoFn):
    def __init__(self, rules: ServerMetricsRules):
        self._rules = rules

    def process(self, keyed, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (location, server_type, day_start), (servers, summary) = keyed
        row = _window_columns(day_start, DAY)
        row["pane_index"], row["pane_timing"] = pane_columns(window, pane)
        place = self._rules.location(location)
        row.update(location=location, server_type=server_type,
                   latitude=place.latitude if place else None,
                   longitude=place.longitude if place else None,
                   server_count=len(servers))
        row.update(summary.columns())
        yield {name: row[name] for name in LOCATION_PERFORMANCE.names}


class RaiseAlertsFn(beam.DoFn):
    """A per-server minute summary → one alert row per rule it breached."""

    def __init__(self, rules: tuple[AlertRule, ...]):
        self._rules = {r.name: r for r in rules}

    def process(self, keyed_summary, window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam):
        key, summary = keyed_summary
        panes = pane_columns(window, pane)
        for name, (count, extreme, _) in sorted(summary.breaches.items()):
            rule = self._rules[name]
            row = _window_columns(key[-1], MINUTE)
            row["pane_index"], row["pane_timing"] = panes
            row.update(_server_columns(key))
            direction = "above" if rule.above is not None else "below"
            who = row["server_name"] or row["server_id"]
            threshold = rule.threshold_of(row["server_id"], row["server_type"])
            row.update(
                rule=rule.name, severity=rule.severity, metric=rule.metric,
                threshold=threshold, observed_value=extreme, breach_count=count,
                message=(f"{rule.metric} {direction} {threshold:g} on {who}: "
                         f"{count} of {summary.records} records, most extreme {extreme:g}, "
                         f"{row['window_start']:%Y-%m-%d %H:%M}–{row['window_end']:%H:%M} UTC"))
            yield {n: row[n] for n in ALERTS.names}


#: The key of gold's hold signals (hysteresis) among its outputs: they feed the incident
#: tracker only, never a table.
SIGNAL_HOLDS = "signal_holds"
#: The family of a hold: a minute beyond a rule's clear level that does not breach it.
HOLD = "hold"


class HoldSignalsFn(beam.DoFn):
    """A per-server minute summary → a hold signal per rule with hysteresis whose clear
    level it passed without breaching: what keeps a firing incident of that rule open."""

    def __init__(self, rules: tuple[AlertRule, ...]):
        self._rules = {r.name: r for r in rules if r.hysteresis}

    def process(self, keyed_summary, window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam):
        key, summary = keyed_summary
        held = [name for name in sorted(summary.holds) if name not in summary.breaches]
        if not held:
            return
        base = _window_columns(key[-1], MINUTE)
        base["pane_index"], base["pane_timing"] = pane_columns(window, pane)
        base.update(_server_columns(key))
        for name in held:
            rule = self._rules[name]
            yield {**base, "family": HOLD, "rule": name, "severity": rule.severity,
                   "metric": rule.metric, "observed_value": None}


class ServerMinuteSummaries(beam.PTransform):
    """Silver records → ((server, minute start), summary of what is new).

    In streaming the panes are deltas (discarding), so every level above can merge them
    without counting a record twice.
    """

    def __init__(self, alert_rules: tuple[AlertRule, ...] = (), mode: Mode = BATCH):
        super().__init__()
        self._rules = alert_rules
        self._mode = mode

    def expand(self, silver):
        return (silver
                | "KeyByServerMinute" >> beam.ParDo(KeyByServerMinuteFn())
                | "MinuteWindows" >> self._mode.windows(MINUTE, accumulate=False)
                | "SummariseMinute" >> beam.CombinePerKey(SummariseServerMetrics(self._rules)))


def _rebucket(seconds: int):
    def rekey(keyed_summary):
        key, summary = keyed_summary
        return key[:-1] + (bucket(key[-1], seconds),), summary
    return rekey


class RollUp(beam.PTransform):
    """Minute deltas → one summary per key and larger window: in streaming, every pane
    holds the whole window so far (the latest pane is the answer)."""

    def __init__(self, seconds: int, mode: Mode = BATCH,
                 early_every_s: float | None = None, rekey=None, combine_fn=None):
        super().__init__()
        self._seconds = seconds
        self._mode = mode
        self._early = early_every_s
        self._rekey = rekey or _rebucket(seconds)
        self._combine_fn = combine_fn or MergeSummaries()

    def expand(self, deltas):
        return (deltas
                | "Rebucket" >> beam.Map(self._rekey)
                | "Windows" >> self._mode.windows(self._seconds, accumulate=True,
                                                  early_every_s=self._early)
                | "Merge" >> beam.CombinePerKey(self._combine_fn))


def _by_location(keyed_summary):
    (server_id, _name, server_type, location, minute), summary = keyed_summary
    return (location, server_type, bucket(minute, DAY)), (server_id, summary)


class ServerMetricsGold(beam.PTransform):
    """Gold layer: a dict of table name → rows, one entry per gold table.

    Window boundaries are explicit in the keys (epoch-aligned fixed buckets), so batch
    runs need no Beam windows: on the local runner a windowed GroupByKey costs about ten
    times a global one. Streaming runs (``mode=Streaming(...)``) add event-time
    windows with early, on-time and late firings to the same steps.
    """

    def __init__(self, rules: ServerMetricsRules | None = None, mode: Mode = BATCH):
        super().__init__()
        self._rules = rules or ServerMetricsRules()
        self._mode = mode

    def expand(self, silver):
        deltas = silver | "ServerMinutes" >> ServerMinuteSummaries(self._rules.alert_rules,
                                                                   self._mode)
        return gold_from_minute_deltas(deltas, self._rules, self._mode)


class AccumulateMinutes(beam.PTransform):
    """Streaming: a minute's deltas (one per pane) → the whole minute so far, a pane per
    delta. Batch needs none: its one pane per minute holds everything already."""

    def __init__(self, mode: Mode):
        super().__init__()
        self._mode = mode

    def expand(self, deltas):
        return (deltas
                | "Windows" >> self._mode.windows(MINUTE, accumulate=True,
                                                  early_per_element=True)
                | "Merge" >> beam.CombinePerKey(MergeSummaries()))


def gold_from_minute_deltas(deltas, rules: ServerMetricsRules, mode: Mode) -> dict:
    """((server identity, minute start), summary) deltas → every gold table, as table name
    → rows, and under :data:`SIGNAL_HOLDS` the hold signals for the incidents. Shared by
    the row-level gold and the streaming medallion on batches, whose deltas are summaries
    of batch fragments (one per server, minute and pane)."""
    minutes = deltas | "Minutes" >> mode.choose(batch=Unchanged(),
                                                streaming=AccumulateMinutes(mode))
    slow = mode.early_every(6)  # hours and days fire less often
    hours = deltas | "ServerHours" >> RollUp(HOUR, mode, slow)
    days = deltas | "ServerDays" >> RollUp(DAY, mode, slow)
    locations = deltas | "LocationDays" >> RollUp(
        DAY, mode, slow, rekey=_by_location, combine_fn=LocationRollup())
    return {
        SERVER_METRICS_MINUTELY.name: minutes | "MinutelyRows" >> beam.ParDo(
            FormatServerRowFn(SERVER_METRICS_MINUTELY, MINUTE, quantiles=False)),
        HOURLY_SERVER_METRICS.name: hours | "HourlyRows" >> beam.ParDo(
            FormatServerRowFn(HOURLY_SERVER_METRICS, HOUR)),
        SERVER_HEALTH_SUMMARY.name: days | "HealthRows" >> beam.ParDo(
            FormatServerRowFn(SERVER_HEALTH_SUMMARY, DAY,
                              health_weights=rules.health_weights)),
        LOCATION_PERFORMANCE.name: locations | "LocationRows" >> beam.ParDo(
            FormatLocationRowFn(rules)),
        ALERTS.name: minutes | "RaiseAlerts" >> beam.ParDo(RaiseAlertsFn(rules.alert_rules)),
        SIGNAL_HOLDS: minutes | "HoldSignals" >> beam.ParDo(HoldSignalsFn(rules.alert_rules)),
    }
