"""Business rules the transforms apply, as frozen dataclasses.

They are parsed and validated once at start-up (``beam_pipelines.config``) and passed to
the transforms, so a worker never reads a config file.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from schemas.server_metrics import MEASUREMENTS

#: Severities, lowest first.
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class AlertRule:
    """Fires for a server and window when ``metric`` goes above ``above`` (or below
    ``below``) in at least one record."""

    name: str
    metric: str
    severity: str = "warning"
    above: float | None = None
    below: float | None = None
    #: Thresholds of their own for server types, and for single servers (a server's wins
    #: over its type's, which wins over ``above``/``below``): a cache server's normal
    #: memory is another's saturation.
    by_type: tuple[tuple[str, float], ...] = ()
    by_server: tuple[tuple[str, float], ...] = ()
    #: Hysteresis, in the metric's unit: once an incident holds this rule, a minute with
    #: the metric beyond the threshold less this (above; plus this, below) keeps it
    #: firing, so a value that hovers about the threshold is one incident. 0: none.
    hysteresis: float = 0.0

    def __post_init__(self):
        if self.hysteresis < 0:
            raise ValueError(f"alert rule {self.name!r}: hysteresis must not be negative")
        if self.metric not in MEASUREMENTS:
            raise ValueError(f"alert rule {self.name!r}: unknown metric {self.metric!r} "
                             f"(one of {', '.join(MEASUREMENTS)})")
        if (self.above is None) == (self.below is None):
            raise ValueError(f"alert rule {self.name!r}: give exactly one of 'above' or 'below'")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert rule {self.name!r}: severity must be info, warning or "
                             f"critical, not {self.severity!r}")

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below

    def threshold_of(self, server_id: str | None, server_type: str | None) -> float:
        """This server's threshold: its own, its type's, or the rule's."""
        for overrides, key in ((self.by_server, server_id), (self.by_type, server_type)):
            for name, value in overrides:
                if name == key:
                    return value
        return self.threshold

    def thresholds(self, server_ids, server_types):
        """:meth:`threshold_of` over columns (Arrow arrays or lists): a NumPy array, looked
        up a column at a time (the batch gold calls it for every rule and server-day)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        limit = np.full(len(server_ids), self.threshold, dtype=np.float64)
        # the type's first, then the server's over it: the most specific wins
        for overrides, column in ((self.by_type, server_types), (self.by_server, server_ids)):
            if not overrides:
                continue
            keys = pa.array([k for k, _ in overrides], pa.string())
            values = np.array([v for _, v in overrides], dtype=np.float64)
            column = column if isinstance(column, (pa.Array, pa.ChunkedArray)) else \
                pa.array(column, pa.string())
            at = pc.index_in(column, value_set=keys)
            found = at.is_valid().to_numpy(zero_copy_only=False)
            if found.any():
                limit[found] = values[at.to_numpy(zero_copy_only=False)[found].astype(int)]
        return limit

    def masks(self, values, server_ids, server_types):
        """(breach, held) over columns: the records beyond their server's threshold, and
        (None without hysteresis) those beyond the clear level (the threshold less the
        hysteresis, above; plus it, below) that do not breach, which keep an incident
        firing. A missing value is neither. The one definition every engine uses."""
        import numpy as np

        limit = self.thresholds(server_ids, server_types)
        above = self.above is not None
        with np.errstate(invalid="ignore"):
            breach = values > limit if above else values < limit
            if not self.hysteresis:
                return breach, None
            clear = limit - self.hysteresis if above else limit + self.hysteresis
            return breach, (values > clear if above else values < clear) & ~breach

    def crossing(self, value: float, server_id: str | None = None,
                 server_type: str | None = None) -> int:
        """:meth:`masks` of one value (the row-level gold): 2 breach, 1 held, 0 neither."""
        limit = self.threshold_of(server_id, server_type)
        if self.above is not None:
            return 2 if value > limit else 1 if value > limit - self.hysteresis else 0
        return 2 if value < limit else 1 if value < limit + self.hysteresis else 0

    def breached_by(self, value: float, server_id: str | None = None,
                    server_type: str | None = None) -> bool:
        return self.crossing(value, server_id, server_type) == 2


@dataclass(frozen=True)
class HealthWeights:
    """Weights of the health score: 100 − (avg_cpu·cpu + avg_memory·memory
    + high_util_pct·high_utilization), clamped to [0, 100].

    A metric a server does not report (seed 001's regions have no memory) leaves its
    weight to the others: the weighted sum is over the present metrics, scaled by all
    weights / present weights, so the score keeps its range. ``high_util_pct`` is present
    when CPU or memory is; with none of them the score is null."""

    cpu: float = 0.4
    memory: float = 0.4
    high_utilization: float = 0.2

    def __post_init__(self):
        for name in ("cpu", "memory", "high_utilization"):
            if getattr(self, name) < 0:
                raise ValueError(f"health weight {name} must not be negative")
        if not self.cpu + self.memory + self.high_utilization:
            raise ValueError("health weights must not all be 0 (the score would say nothing)")

    def score(self, avg_cpu, avg_memory, high_util_pct):
        if avg_cpu is None and avg_memory is None:
            high_util_pct = None  # counted over metrics the server does not report
        present = [(v, w) for v, w in ((avg_cpu, self.cpu), (avg_memory, self.memory),
                                       (high_util_pct, self.high_utilization))
                   if v is not None]
        weight = sum(w for _, w in present)
        if not weight:
            return None
        total = self.cpu + self.memory + self.high_utilization
        raw = 100.0 - sum(v * w for v, w in present) * total / weight
        return min(100.0, max(0.0, raw))


@dataclass(frozen=True)
class Location:
    name: str
    latitude: float
    longitude: float


DEFAULT_ALERT_RULES = (
    AlertRule("high_cpu", "cpu_usage", "warning", above=90.0),
    AlertRule("high_memory", "memory_usage", "warning", above=90.0),
    AlertRule("overheating", "temperature_c", "critical", above=90.0),
)


@dataclass(frozen=True)
class AlertMatrix:
    """Seed 002's alert matrix: sliding windows of ``window_s`` every ``period_s`` per
    server; a pair of thresholds gives a label when both, one or the other is exceeded
    (averages of CPU and memory, maxima of network_in and disk_io), none when neither."""

    window_s: int = 30
    period_s: int = 10
    cpu_usage: float = 89.65
    memory_usage: float = 89.73
    network_in: float = 7205.16
    disk_io: float = 4220.24
    severity: str = "warning"

    def __post_init__(self):
        if self.period_s < 1 or self.window_s < self.period_s or self.window_s % self.period_s:
            raise ValueError("alert_matrix: window must be a whole multiple of period (>= 1s)")
        if self.severity not in SEVERITIES:
            raise ValueError("alert_matrix: severity must be info, warning or critical")

    def cpu_memory_label(self, avg_cpu, avg_memory) -> str | None:
        return _pair_label(avg_cpu, self.cpu_usage, avg_memory, self.memory_usage,
                           "High CPU + Memory stress", "CPU spike suspected",
                           "Memory saturation suspected")

    def network_disk_label(self, max_network_in, max_disk_io) -> str | None:
        return _pair_label(max_network_in, self.network_in, max_disk_io, self.disk_io,
                           "Network flood + Disk thrash suspected", "Possible DDoS",
                           "Disk thrash suspected")


def _pair_label(a, a_max, b, b_max, both, only_a, only_b) -> str | None:
    over_a = a is not None and a > a_max
    over_b = b is not None and b > b_max
    if over_a and over_b:
        return both
    return only_a if over_a else only_b if over_b else None


@dataclass(frozen=True)
class AnomalyDetection:
    """Seed 003's EWMA + 3σ detector, per server and metric, made sound.

    The mean is seed 003's EWMA (``alpha``) and a value is scored against the state before
    it: ``score = |v − ewma| / std``. Seed 003 took ``std`` from an EWMA of v² with the
    same α: an estimate from ~9 samples that leaves out the mean's own error, so its 3σ
    fires on 2.2 % of Gaussian noise. Here ``std`` tracks the residuals ``v − ewma`` with
    a slower ``variance_alpha``, is at least ``min_std`` of the metric's unit, and nothing is scored
    before ``warmup`` samples. Once scored, a value updates both with its residual
    clipped at ``threshold``·std: a spike neither blinds the detector nor drags the
    expected value, which would make the normal values after it alarm.
    """

    metrics: tuple[str, ...] = ("cpu_usage", "memory_usage", "temperature_c", "network_in")
    alpha: float = 0.2
    variance_alpha: float = 0.02
    threshold: float = 3.0
    warmup: int = 30
    min_std: tuple[tuple[str, float], ...] = (
        ("cpu_usage", 0.5), ("memory_usage", 0.5), ("temperature_c", 0.25),
        ("network_in", 0.05))
    #: Metrics scored on a log scale, ln(1 + v): throughput varies by ratios (log-normal
    #: noise), so a raw 3σ rule fires on its long upper tail; their ``min_std`` is then in
    #: natural-log units (0.05 ≈ 5 %).
    log_scale: tuple[str, ...] = ("network_in", "network_out", "disk_io")
    severity: str = "warning"
    #: Severity from score: a score at or above a level's is that severity (the highest
    #: reached); below them all, ``severity``. A 5σ value is rarer than a 3σ one by a
    #: factor ~5,000 on Gaussian noise.
    severity_at: tuple[tuple[str, float], ...] = (("critical", 5.0),)
    #: Streaming: how much event time is buffered before it is scored in order.
    flush_every_s: int = 10

    def __post_init__(self):
        # lowest score first: the highest level reached wins
        object.__setattr__(self, "severity_at",
                           tuple(sorted(self.severity_at, key=lambda item: item[1])))
        for level, score in self.severity_at:
            if level not in SEVERITIES or score < self.threshold:
                raise ValueError(f"anomaly_detection.severity_at: {level}: a severity (info, "
                                 f"warning or critical) at a score >= threshold "
                                 f"({self.threshold})")
        unknown = set(self.metrics) - set(MEASUREMENTS)
        if unknown:
            raise ValueError(f"anomaly_detection: unknown metric(s) {', '.join(sorted(unknown))}")
        if not self.metrics:
            raise ValueError("anomaly_detection: metrics must not be empty")
        for name in ("alpha", "variance_alpha"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"anomaly_detection: {name} must be in (0, 1]")
        if self.threshold <= 0 or self.warmup < 2 or self.flush_every_s < 1:
            raise ValueError("anomaly_detection: threshold > 0, warmup >= 2 and "
                             "flush_every >= 1s")
        if any(v <= 0 for _, v in self.min_std):
            raise ValueError("anomaly_detection: min_std values must be positive")
        if self.severity not in SEVERITIES:
            raise ValueError("anomaly_detection: severity must be info, warning or critical")

    def severity_of(self, score: float) -> str:
        """The severity of an anomaly of ``score``."""
        found = self.severity
        for level, at in self.severity_at:
            if score >= at:
                found = level
        return found

    def severities(self, scores):
        """:meth:`severity_of` over an array of scores: an Arrow string array."""
        import numpy as np
        import pyarrow as pa

        scores = np.asarray(scores, dtype=np.float64)
        out = np.full(len(scores), self.severity, dtype=object)
        for level, at in self.severity_at:
            out[scores >= at] = level
        return pa.array(out, pa.string())

    def floor(self, metric: str) -> float:
        return dict(self.min_std).get(metric, 1e-9)

    def scaled(self, metric: str, values):
        """The values the detector scores: ln(1 + v) for a log-scale metric (a negative
        value, which silver never passes, counts as 0).

        The logarithm is the C library's, value by value, as :meth:`scaled_one` takes it:
        numpy's vectorised ``log1p`` differs from it in the last bit for ~2 % of values on
        CPUs with AVX-512, and the batch, streaming and row-level detectors must score the
        same numbers on every machine."""
        if metric not in self.log_scale:
            return values
        import numpy as np

        clamped = np.maximum(np.asarray(values, dtype=np.float64), 0.0)  # NaN stays NaN
        return list(map(math.log1p, clamped.tolist()))

    def scaled_one(self, metric: str, value: float) -> float:
        """:meth:`scaled` of one value (the streaming detector scores them one by one),
        clamped as ``np.maximum`` clamps: NaN stays NaN, −0.0 becomes 0.0."""
        if metric not in self.log_scale:
            return value
        return math.log1p(value if value > 0.0 or value != value else 0.0)

    def in_unit(self, metric: str, expected: float, std: float) -> tuple[float, float]:
        """(expected, std) back in the metric's unit: for a log-scale metric the expected
        value, and the width of one σ above it."""
        if metric not in self.log_scale:
            return expected, std
        centre = math.expm1(expected)
        return centre, math.expm1(expected + std) - centre


#: The labels of a signal that matchers, ``group_by`` and inhibition's ``equal`` name.
SIGNAL_LABELS = ("server_id", "server_type", "location", "family", "rule", "severity")


@dataclass(frozen=True)
class Matcher:
    """Which signals: each label given must have one of its values (Alertmanager's
    equality matchers); no label at all matches every signal."""

    labels: tuple[tuple[str, frozenset], ...] = ()

    def __post_init__(self):
        unknown = {name for name, _ in self.labels} - set(SIGNAL_LABELS)
        if unknown:
            raise ValueError(f"unknown label(s) {', '.join(sorted(unknown))} (one of "
                             f"{', '.join(SIGNAL_LABELS)})")

    @classmethod
    def of(cls, **labels) -> Matcher:
        return cls(tuple(sorted((k, frozenset([v] if isinstance(v, str) else v))
                                for k, v in labels.items())))

    def matches(self, labels: dict) -> bool:
        return all(labels.get(name) in values for name, values in self.labels)


@dataclass(frozen=True)
class InhibitRule:
    """Alertmanager's ``inhibit_rules``: while a signal matching ``source`` is active (from
    its start until ``keep_firing_for`` after its end), signals matching ``target`` with
    the same ``equal`` labels feed no incident (they stay in ``alert_signals``). Incidents
    are tracked per server, so ``equal`` always includes ``server_id``."""

    source: Matcher
    target: Matcher
    equal: tuple[str, ...] = ("server_id",)

    def __post_init__(self):
        unknown = set(self.equal) - set(SIGNAL_LABELS)
        if unknown:
            raise ValueError(f"inhibit_rules.equal: unknown label(s) "
                             f"{', '.join(sorted(unknown))}")
        if "server_id" not in self.equal:
            raise ValueError("inhibit_rules.equal must include server_id (incidents are "
                             "tracked per server)")


@dataclass(frozen=True)
class Incidents:
    """How alert signals (the rows of ``alert_signals``) become incidents a pager sends,
    as Prometheus and Alertmanager do it.

    Signals are grouped per ``group_by`` labels (always the server: by default one
    incident per server, so one spike that moves several metrics is one incident). A new
    incident is *pending*; it *fires* once its signals have kept coming for ``for_s``, or
    those of a rule in ``for_by_rule`` for that rule's own ``for``
    (from the first signal's start to a later one's, no gap between them longer than
    ``pending_gap_s``: Prometheus resets a pending alert whose condition turns false) and
    number ``min_signals``, or at once for a signal matching ``fire_at_once``. A pending
    incident lapses ``pending_gap_s`` after its last signal: it is kept (its ``fired_at``
    null) and never pages. A firing one is *escalated* when a signal of a higher severity
    joins and *resolved* ``keep_firing_for_s`` after its last signal's end, once event
    time has passed that (the watermark in streaming; the end of a bounded input in batch,
    as Beam's watermark does). ``inhibit_rules`` keep signals out while another is active.

    Notifications follow Alertmanager's timers: the firing one waits ``group_wait_s`` so
    the signals right behind the first are in it; escalations are sent at most every
    ``group_interval_s``; an incident still firing is repeated every
    ``repeat_interval_s``. In streaming only on-time panes count: an early one may still
    change, and late ones arrive in an order no other run reproduces."""

    for_s: int = 60
    #: Rules with a ``for`` of their own (Prometheus sets it per rule): such a rule fires
    #: the incident once its own signals have kept coming that long; the others share
    #: ``for_s``, counted from the first of their signals in the incident.
    for_by_rule: tuple[tuple[str, int], ...] = ()
    keep_firing_for_s: int = 300
    pending_gap_s: int = 30
    fire_at_once: tuple[Matcher, ...] = (Matcher.of(severity="critical"),)
    #: Signals an incident needs besides lasting ``for``.
    min_signals: int = 1
    #: The signal families that open and feed incidents (the others stay signals, in
    #: ``alert_signals``).
    families: tuple[str, ...] = ("threshold", "matrix", "ewma")
    group_by: tuple[str, ...] = ("server_id",)
    group_wait_s: int = 0
    group_interval_s: int = 300
    repeat_interval_s: int = 4 * 3600
    inhibit_rules: tuple[InhibitRule, ...] = ()
    #: Streaming: how much event time signals wait, then are taken in order.
    flush_every_s: int = 10

    def __post_init__(self):
        # a bare severity is the matcher {severity: it}
        object.__setattr__(self, "fire_at_once", tuple(
            Matcher.of(severity=m) if isinstance(m, str) else m for m in self.fire_at_once))
        unknown = {s for m in self.fire_at_once for name, values in m.labels
                   if name == "severity" for s in values} - set(SEVERITIES)
        if unknown:
            raise ValueError(f"incidents.fire_at_once: unknown severity "
                             f"{', '.join(sorted(unknown))} (info, warning or critical)")
        if set(self.families) - {"threshold", "matrix", "ewma"} or not self.families:
            raise ValueError("incidents.families: one or more of threshold, matrix, ewma")
        if self.min_signals < 1:
            raise ValueError("incidents: min_signals must be at least 1")
        if any(s < 0 for _, s in self.for_by_rule):
            raise ValueError("incidents.for: a rule's for must not be negative")
        if self.for_s < 0 or self.keep_firing_for_s < 1 or self.flush_every_s < 1 \
                or self.pending_gap_s < 0:
            raise ValueError("incidents: for >= 0s, pending_gap >= 0s, keep_firing_for >= 1s "
                             "and flush_every >= 1s")
        if self.group_wait_s < 0 or self.group_interval_s < 0 or self.repeat_interval_s < 1:
            raise ValueError("incidents: group_wait >= 0s, group_interval >= 0s and "
                             "repeat_interval >= 1s")
        unknown = set(self.group_by) - set(SIGNAL_LABELS)
        if unknown or "server_id" not in self.group_by:
            raise ValueError(f"incidents.group_by: labels of {', '.join(SIGNAL_LABELS)}, "
                             "server_id among them (incidents are tracked per server)")

    def fires_at_once(self, labels: dict) -> bool:
        return any(m.matches(labels) for m in self.fire_at_once)


@dataclass(frozen=True)
class InventoryEntry:
    server_id: str
    server_name: str | None = None
    server_type: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Inventory:
    """What a server inventory (``--inventory``) says of each server: silver fills a
    record's missing name, type and location from it, and a regional record's location
    (its region by default) becomes the inventory's."""

    servers: tuple[InventoryEntry, ...] = ()

    def __post_init__(self):
        ids = [s.server_id for s in self.servers]
        seen = set()
        for server_id in ids:
            if server_id in seen:
                raise ValueError(f"server {server_id!r} is listed twice")
            seen.add(server_id)

    def __bool__(self) -> bool:
        return bool(self.servers)


@dataclass(frozen=True)
class ServerMetricsRules:
    high_cpu_threshold: float = 90.0
    high_memory_threshold: float = 90.0
    health_weights: HealthWeights = field(default_factory=HealthWeights)
    alert_rules: tuple[AlertRule, ...] = DEFAULT_ALERT_RULES
    locations: tuple[Location, ...] = ()
    alert_matrix: AlertMatrix = field(default_factory=AlertMatrix)
    anomaly_detection: AnomalyDetection = field(default_factory=AnomalyDetection)
    incidents: Incidents = field(default_factory=Incidents)
    inventory: Inventory = field(default_factory=Inventory)

    def __post_init__(self):
        names = [r.name for r in self.alert_rules]
        if len(set(names)) != len(names):
            raise ValueError("alert rule names must be unique")

    @property
    def location_names(self) -> frozenset[str]:
        """The locations silver accepts; none declared: any (a documented choice of the
        rules file, for data whose locations are not known ahead)."""
        return frozenset(loc.name for loc in self.locations)

    def location(self, name: str | None) -> Location | None:
        for loc in self.locations:
            if loc.name == name:
                return loc
        return None
