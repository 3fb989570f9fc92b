"""Alert signals → incidents and the notifications a pager sends.

The rows of ``alert_signals`` are *signals*: a threshold minute, a labelled matrix window,
an EWMA anomaly, each with its exact semantics. An operator wants *incidents*, as
Prometheus and Alertmanager make them (:class:`transforms.server_metrics.rules.Incidents` says how):
signals grouped per server (and the rules' ``group_by``), pending until they have kept
coming for ``for``, then firing, escalated when a higher severity joins, resolved
``keep_firing_for`` after the last one; a pending one that lapses is kept but never pages.
Inhibition keeps a signal out while another is active; the firing, escalated, repeated
and resolved notifications follow Alertmanager's ``group_wait``, ``group_interval`` and
``repeat_interval``.

:class:`IncidentTracker` is that lifecycle for one server, fed signals in event-time order
in as many chunks as come: the batch path feeds a server's whole run at once and then the
end of time (a bounded input's watermark), the streaming path feeds what each advance of
the watermark releases and carries the server's state in Beam state. Same code, so the
same incidents.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

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
from apache_beam.transforms.window import GlobalWindow, GlobalWindows

from transforms.bronze import micros_of, utc_of
from transforms.server_metrics.row_gold import HOLD
from transforms.server_metrics.rules import SEVERITIES, SIGNAL_LABELS, Incidents
from transforms.windowing import BATCH, MINUTE, Mode, schedule_flush

_US = 1_000_000
#: The end of time, as a bounded input's watermark reaches it.
END_OF_TIME = 2 ** 62
_END_OF_GLOBAL_WINDOW = GlobalWindow().max_timestamp()
RANK = {name: i for i, name in enumerate(SEVERITIES)}
#: What a signal is to the tracker, in this order (``signal_tuples`` builds them).
SIGNAL_FIELDS = ("window_start", "window_end", "family", "rule", "severity", "server_id",
                 "server_name", "server_type", "location", "metric", "observed_value")


@dataclass
class OpenIncident:
    """An incident not yet resolved (or lapsed): what streaming keeps between flushes."""

    identity: tuple
    group: tuple
    started_us: int
    last_end_us: int
    rank: int
    fired_us: int | None = None
    #: The notification waiting for its time (``group_wait``, ``group_interval``): its
    #: state and when it is due.
    due: tuple[str, int] | None = None
    notified_rank: int = -1
    notified_us: int | None = None
    count: int = 0
    families: set = field(default_factory=set)
    rules: set = field(default_factory=set)
    #: The highest value its signals observed, per metric.
    peaks: dict = field(default_factory=dict)
    #: When the `for` clocks started: a rule's own, or (key None) the one of the rules
    #: without one.
    rule_started: dict = field(default_factory=dict)
    writes: int = 0


@dataclass
class ServerState:
    """A server's open incidents by group, and until when each inhibiting signal is
    active (by inhibit rule and ``equal`` labels)."""

    open: dict = field(default_factory=dict)
    inhibiting: dict = field(default_factory=dict)


def paging_families(rules: Incidents) -> frozenset[str]:
    """The signal families the tracker reads: ``incidents.families``, and a threshold
    rule's holds when threshold signals page. It passes over the others without a trace,
    so they need not reach it."""
    families = set(rules.families)
    if "threshold" in families:
        families.add(HOLD)
    return frozenset(families)


class IncidentTracker:
    """One server's incidents, from its signals in event-time order.

    Every change happens at an event time: a signal's start, or a time the tracker set
    itself (a lapse, a resolution, a notification due). A time ``t`` is acted on once
    event time is past it (``advance(now)`` with ``t < now``), so what a signal starting
    at ``t`` brings is always in: fed whole or in chunks, the same rows come out."""

    def __init__(self, rules: Incidents, state: ServerState | None = None):
        self.rules = rules
        self.state = state or ServerState()
        self.incidents: list[dict] = []
        self.notifications: list[dict] = []
        self.inhibited = 0
        self._for_us = rules.for_s * _US
        self._for_rule = {rule: s * _US for rule, s in rules.for_by_rule}
        self._gap_us = rules.pending_gap_s * _US
        self._keep_us = rules.keep_firing_for_s * _US
        self._wait_us = rules.group_wait_s * _US
        self._interval_us = rules.group_interval_s * _US
        self._repeat_us = rules.repeat_interval_s * _US
        self._paging = paging_families(rules)
        self._group = tuple(g for g in rules.group_by if g != "server_id")
        self._kinds: dict = {}  # a signal's labels → what they decide (``_kind``)
        #: No open incident changes before this (µs; None: not known). Most signals find
        #: nothing due, and this spares them the search for the next change. It may be
        #: early, never late: a signal only moves an incident's next change later, but
        #: where it opens, fires or escalates one (``_sooner``).
        self._quiet_until: int | None = None

    @property
    def open(self) -> dict:
        return self.state.open

    def feed(self, signals) -> None:
        """Signals as tuples of :data:`SIGNAL_FIELDS` (micros for the times), sorted."""
        rules, paging, kinds, open_ = self.rules, self._paging, self._kinds, self.open
        for start, end, family, rule, severity, *identity, metric, value in signals:
            if family not in paging:
                continue  # a signal, not a page: passed over without a trace
            hold = family == HOLD
            if hold:
                family = "threshold"  # a threshold rule's, for its group
            if self._quiet_until is None or start > self._quiet_until:
                self.advance(start)
            labels = (identity[0], identity[2], identity[3], family, rule, severity)
            kind = kinds.get(labels) or self._kind(labels)
            group, at_once, sources, targets = kind
            inc = open_.get(group)
            if hold:
                # hysteresis: the metric still beyond the rule's clear level keeps a firing
                # incident of that rule open; it opens, fires and escalates nothing
                if inc is not None and inc.fired_us is not None and rule in inc.rules:
                    inc.last_end_us = max(inc.last_end_us, end)
                continue
            if (sources or targets) and self._inhibited(sources, targets, start, end):
                self.inhibited += 1
                continue
            rank = RANK[severity]
            risen = False
            if inc is None:
                inc = open_[group] = OpenIncident(tuple(identity), group, start, end, rank)
                self._sooner(inc)
            else:
                risen = rank > inc.rank
                inc.last_end_us = max(inc.last_end_us, end)
                inc.rank = max(inc.rank, rank)
            inc.count += 1
            inc.families.add(family)
            inc.rules.add(rule)
            if value is not None and (metric not in inc.peaks or value > inc.peaks[metric]):
                inc.peaks[metric] = value
            own = self._for_rule.get(rule)
            if own is None:  # the rules without a `for` of their own run one clock
                first = inc.rule_started.setdefault(None, start)
            else:
                first = inc.rule_started.setdefault(rule, start)
            if inc.fired_us is None:
                if at_once or (
                        start - first >= (self._for_us if own is None else own)
                        and inc.count >= rules.min_signals):
                    inc.fired_us = end
                    inc.due = ("firing", end + self._wait_us)
                    self._sooner(inc)
                    self._row(inc)
            elif risen:
                self._row(inc)
                if inc.due is None:  # else the notification due carries it
                    inc.due = ("escalated", max(end, inc.notified_us + self._interval_us))
                    self._sooner(inc)

    def _kind(self, values: tuple) -> tuple:
        """What a signal's labels (``values``, in ``SIGNAL_LABELS`` order) decide, the same
        for every signal with those labels:
        its incident group, whether it fires at once, and the inhibit rules it is a source
        and a target of, with their ``equal`` keys. Worked out once per distinct labels:
        a server's signals carry a few kinds, over and over."""
        labels = dict(zip(SIGNAL_LABELS, values, strict=True))
        sources, targets = [], []
        for i, inhibit in enumerate(self.rules.inhibit_rules):
            key = (i, *(labels[e] for e in inhibit.equal))
            if inhibit.source.matches(labels):
                sources.append(key)
            elif inhibit.target.matches(labels):
                targets.append(key)
        kind = self._kinds[values] = (
            tuple(labels[g] for g in self._group), self.rules.fires_at_once(labels),
            tuple(sources), tuple(targets))
        return kind

    def _inhibited(self, sources: tuple, targets: tuple, start: int, end: int) -> bool:
        """Is the signal a target of an active source? And, a source itself, it is active
        until ``keep_firing_for`` after its end (each rule has its own key, so checking and
        recording in one pass is the same as checking all first)."""
        active = self.state.inhibiting
        for key in sources:
            active[key] = max(active.get(key, -1), end + self._keep_us)
        return any(active.get(key, -1) >= start for key in targets)

    def _next(self, inc: OpenIncident) -> tuple[int, str]:
        """The incident's next change of its own, and what it is."""
        if inc.fired_us is None:
            return inc.last_end_us + self._gap_us, "lapsed"
        resolve = inc.last_end_us + self._keep_us
        if inc.due is not None and inc.due[1] <= resolve:
            return inc.due[1], inc.due[0]
        if inc.notified_us is not None and inc.notified_us + self._repeat_us < resolve:
            return inc.notified_us + self._repeat_us, "repeated"
        return resolve, "resolved"

    def _sooner(self, inc: OpenIncident) -> None:
        """``inc``'s next change may now come before the others'."""
        if self._quiet_until is not None:
            self._quiet_until = min(self._quiet_until, self._next(inc)[0])

    def next_change_us(self) -> int | None:
        """When this server's next change of its own is due (streaming sets a timer)."""
        return min((self._next(inc)[0] for inc in self.open.values()), default=None)

    def advance(self, now_us: int) -> None:
        """Event time has reached ``now_us`` (a signal's start, or the watermark): every
        change due before it happens, in time order (and what is next is noted, for
        ``feed`` to skip the search at a signal before it)."""
        while self.open:
            at, what, group = min((*self._next(inc), group)
                                  for group, inc in self.open.items())
            if at >= now_us:
                self._quiet_until = at
                return
            inc = self.open[group]
            if what == "lapsed":
                del self.open[group]
                self._row(inc, at)  # kept, never paged
            elif what == "resolved":
                del self.open[group]
                if inc.due is not None and inc.due[0] == "firing":
                    self._notify(inc, "firing", at)  # group_wait outlasted it
                self._row(inc, at)
                self._notify(inc, "resolved", at)
            else:  # a notification due: firing, escalated or repeated
                inc.due = None
                self._notify(inc, what, at)
                inc.notified_rank, inc.notified_us = inc.rank, at

    # ---- rows --------------------------------------------------------------------------
    def _id(self, inc: OpenIncident) -> str:
        return "/".join((inc.identity[0], *inc.group, utc_of(inc.started_us).isoformat()))

    def _row(self, inc: OpenIncident, resolved_us: int | None = None) -> None:
        started = utc_of(inc.started_us)
        server_id, name, server_type, location = inc.identity
        self.incidents.append({
            "incident_id": self._id(inc), "started_at": started,
            "fired_at": None if inc.fired_us is None else utc_of(inc.fired_us),
            "resolved_at": None if resolved_us is None else utc_of(resolved_us),
            "metric_date": started.date(), "pane_index": inc.writes,
            "server_id": server_id, "server_name": name, "server_type": server_type,
            "location": location, "severity": SEVERITIES[inc.rank],
            "families": ",".join(sorted(inc.families)), "rules": ",".join(sorted(inc.rules)),
            "signal_count": inc.count, "last_signal_at": utc_of(inc.last_end_us),
            "peaks": ", ".join(f"{m} {v:g}" for m, v in sorted(inc.peaks.items())) or None})
        inc.writes += 1

    def _notify(self, inc: OpenIncident, state: str, at_us: int) -> None:
        server_id, name, server_type, location = inc.identity
        who, at = name or server_id, utc_of(at_us)
        severity = SEVERITIES[inc.rank]
        rules = ", ".join(sorted(inc.rules))
        started = f"{utc_of(inc.started_us):%Y-%m-%d %H:%M:%S}"
        if state == "resolved":
            lasted = timedelta(microseconds=at_us - inc.started_us)
            text = (f"{who}: resolved at {at:%H:%M:%S} UTC, no signal for "
                    f"{self.rules.keep_firing_for_s}s; it started {started} UTC, lasted "
                    f"{lasted}, {inc.count} signal(s): {rules}")
        elif state == "escalated":
            text = f"{who}: escalated to {severity} at {at:%H:%M:%S} UTC: {rules}"
        elif state == "repeated":
            text = (f"{who}: still {severity} at {at:%H:%M:%S} UTC, since {started} UTC, "
                    f"{inc.count} signal(s): {rules}")
        else:
            text = (f"{who}: {severity} incident since {started} UTC, {inc.count} "
                    f"signal(s): {rules}")
        self.notifications.append({
            "incident_id": self._id(inc), "state": state, "changed_at": at,
            "metric_date": at.date(), "server_id": server_id, "server_name": name,
            "server_type": server_type, "location": location, "severity": severity,
            "message": text})


def latest_rows(incidents: list[dict]) -> list[dict]:
    """The last row written of each incident (batch writes an incident's final state
    once, as pane 0)."""
    last = {}
    for row in incidents:
        last[row["incident_id"]] = row
    return [{**row, "pane_index": 0} for row in last.values()]


def signal_tuples(table) -> list[tuple]:
    """An ``alert_signals`` table (or part) → the tracker's signals, sorted in event-time
    order (ties in a fixed order, so every run feeds them alike)."""
    import pyarrow as pa

    cols = [table.column(n) for n in SIGNAL_FIELDS]
    cols[0] = cols[0].cast(pa.int64())
    cols[1] = cols[1].cast(pa.int64())
    return sorted(zip(*(c.to_pylist() for c in cols), strict=True))


def incidents_of_server(rules: Incidents, signals) -> tuple[list[dict], list[dict]]:
    """A server's signals of a whole bounded run (any order) → (its incidents, each once in
    its final state, and its notifications): the batch engines' and the reference loop's
    one call."""
    tracker = IncidentTracker(rules)
    tracker.feed(sorted(signals))
    tracker.advance(END_OF_TIME)
    return latest_rows(tracker.incidents), tracker.notifications


# ---- streaming -------------------------------------------------------------------------
def signal_of_row(row: dict) -> tuple:
    """An ``alert_signals`` row (streaming's element) → the tracker's signal tuple."""
    return (micros_of(row["window_start"]), micros_of(row["window_end"]),
            *(row[name] for name in SIGNAL_FIELDS[2:]))


class IncidentTrackerFn(beam.DoFn):
    """Streaming: ``(server_id, signal)`` → incident rows (a row each time an
    incident fires, escalates and resolves, ``pane_index`` counting them) and, tagged
    ``notifications``, the notifications.

    A signal waits in a bag until no signal that starts before it can still come: the
    watermark past its start by ``hold_s`` (the longest a signal's window takes to
    fire). Then the waiting ones are fed to the tracker in order from the server's
    state, and event time is advanced to the watermark less ``hold_s``, so the same
    signals in the same order give the same incidents as batch. A signal older than
    what was already taken cannot be placed in order: counted
    (``incidents/out_of_order``), not guessed at. Only on-time panes count: an early pane
    may still change, and late panes arrive in an order no other run reproduces; both are
    counted (``incidents/unsettled_panes``) and stay in ``alert_signals``."""

    #: What its timers emit must not fall behind the watermark downstream (a resolution at
    #: a drain): the local runner holds the step's output at its timers for this.
    HOLD_OUTPUT_AT_TIMERS = True

    PENDING = BagStateSpec("pending", PickleCoder())
    OPEN = ReadModifyWriteStateSpec("open", PickleCoder())
    TAKEN = ReadModifyWriteStateSpec("taken_until", PickleCoder())
    FLUSH_AT = ReadModifyWriteStateSpec("flush_at", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    #: The end of the global window: a drain takes everything left and resolves the open
    #: incident (set with the first signal, so a drain's jump of the watermark finds it).
    FINAL = TimerSpec("final", TimeDomain.WATERMARK)

    def __init__(self, rules: Incidents, hold_s: int):
        self._rules = rules
        self._every = rules.flush_every_s * _US
        self._hold = hold_s * _US

    def setup(self):
        self._out_of_order = Metrics.counter("incidents", "out_of_order")
        self._unsettled = Metrics.counter("incidents", "unsettled_panes")
        self._inhibited = Metrics.counter("incidents", "inhibited_signals")

    def process(self, keyed, pending=beam.DoFn.StateParam(PENDING),
                taken=beam.DoFn.StateParam(TAKEN),
                flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH),
                final=beam.DoFn.TimerParam(FINAL)):
        _, row = keyed
        final.set(_END_OF_GLOBAL_WINDOW)
        if row["pane_timing"] != "ON_TIME":
            # An early pane may still change; a late one arrives in an order no run can
            # reproduce (the watermark is past it): the signal table keeps both, the
            # incidents take neither, so every run pages alike.
            self._unsettled.inc()
            return
        signal = signal_of_row(row)
        until = taken.read()
        if until is not None and signal[0] < until:
            self._out_of_order.inc()
            return
        pending.add(signal)
        schedule_flush(signal[0] + self._hold, self._every, flush_at, flush)

    @on_timer(FLUSH)
    def on_flush(self, fired=beam.DoFn.TimestampParam,
                 pending=beam.DoFn.StateParam(PENDING), state=beam.DoFn.StateParam(OPEN),
                 taken=beam.DoFn.StateParam(TAKEN),
                 flush_at=beam.DoFn.StateParam(FLUSH_AT), flush=beam.DoFn.TimerParam(FLUSH)):
        yield from self._take(fired.micros - self._hold, pending, state, taken, flush_at,
                              flush)

    @on_timer(FINAL)
    def on_final(self, pending=beam.DoFn.StateParam(PENDING), state=beam.DoFn.StateParam(OPEN),
                 taken=beam.DoFn.StateParam(TAKEN), flush_at=beam.DoFn.StateParam(FLUSH_AT),
                 flush=beam.DoFn.TimerParam(FLUSH)):
        yield from self._take(END_OF_TIME, pending, state, taken, flush_at, flush)

    def _take(self, horizon, pending, state, taken, flush_at, flush):
        """Feed the signals starting before ``horizon`` (every one that will come), in
        order, and advance event time to it."""
        waiting = sorted(pending.read())
        ready = [s for s in waiting if s[0] < horizon]
        later = waiting[len(ready):]
        pending.clear()
        flush_at.clear()
        for s in later:
            pending.add(s)
        tracker = IncidentTracker(self._rules, state.read())
        tracker.feed(ready)
        tracker.advance(horizon)
        taken.write(horizon)
        state.write(tracker.state)
        if later:
            schedule_flush(later[0][0] + self._hold, self._every, flush_at, flush)
        due = tracker.next_change_us()
        if due is not None and horizon < END_OF_TIME:
            # a lapse, a notification or a resolution, if no signal comes first
            schedule_flush(due + self._hold, self._every, flush_at, flush)
        self._inhibited.inc(tracker.inhibited)
        yield from tracker.incidents
        for note in tracker.notifications:
            yield beam.pvalue.TaggedOutput("notifications", note)


class _RowsIncidentsFn(beam.DoFn):
    """Batch, on rows: a server's signal rows of the whole run → its incidents (final
    state) and, tagged ``notifications``, their notifications."""

    def __init__(self, rules: Incidents):
        self._rules = rules

    def process(self, keyed):
        _, rows = keyed
        incidents, notifications = incidents_of_server(self._rules, map(signal_of_row, rows))
        yield from incidents
        for note in notifications:
            yield beam.pvalue.TaggedOutput("notifications", note)


def signal_hold_s(rules) -> int:
    """The longest a signal's window takes to fire after its start (a threshold minute or
    a matrix window), plus the detector's buffering: how long streaming holds signals."""
    return max(MINUTE, rules.alert_matrix.window_s) + rules.anomaly_detection.flush_every_s


class IncidentsFromSignals(beam.PTransform):
    """``alert_signals`` rows (or a tuple of them and gold's hold signals) →
    {"incidents": rows, "notifications": rows}; batch or streaming
    (``IncidentTrackerFn``), the same lifecycle."""

    def __init__(self, rules, mode: Mode = BATCH):
        super().__init__()
        self._rules = rules
        self._mode = mode

    def expand(self, signals):
        if isinstance(signals, tuple):  # (signals, hold signals): one stream, global
            signals = (signals[0], *(h | f"HoldsGlobal{i}" >> beam.WindowInto(GlobalWindows())
                                     for i, h in enumerate(signals[1:]))) \
                | "WithHolds" >> beam.Flatten()
        keyed = signals | "ByServer" >> beam.Map(
            lambda row: (row["server_id"], row)).with_output_types(
            beam.typehints.KV[str, beam.typehints.Any])
        # Batch tracks each server's signals of the run at once; streaming in timers.
        out = keyed | "Track" >> self._mode.choose(
            batch=("GroupByServer" >> beam.GroupByKey()
                   | "Track" >> beam.ParDo(_RowsIncidentsFn(self._rules.incidents))
                   .with_outputs("notifications", main="incidents")),
            streaming=beam.ParDo(IncidentTrackerFn(
                self._rules.incidents, signal_hold_s(self._rules))).with_outputs(
                "notifications", main="incidents"))
        return {"incidents": out.incidents, "notifications": out.notifications}
