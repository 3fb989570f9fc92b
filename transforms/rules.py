"""Business rules the transforms apply, as frozen dataclasses.

They are parsed and validated once at start-up (``beam_pipelines.config``) and passed to
the transforms, so a worker never reads a config file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from schemas.server_metrics import MEASUREMENTS


@dataclass(frozen=True)
class AlertRule:
    """Fires for a server and window when ``metric`` goes above ``above`` (or below
    ``below``) in at least one record."""

    name: str
    metric: str
    severity: str = "warning"
    above: float | None = None
    below: float | None = None

    def __post_init__(self):
        if self.metric not in MEASUREMENTS:
            raise ValueError(f"alert rule {self.name!r}: unknown metric {self.metric!r} "
                             f"(one of {', '.join(MEASUREMENTS)})")
        if (self.above is None) == (self.below is None):
            raise ValueError(f"alert rule {self.name!r}: give exactly one of 'above' or 'below'")
        if self.severity not in ("info", "warning", "critical"):
            raise ValueError(f"alert rule {self.name!r}: severity must be info, warning or "
                             f"critical, not {self.severity!r}")

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below

    def breached_by(self, value: float) -> bool:
        return value > self.above if self.above is not None else value < self.below


@dataclass(frozen=True)
class HealthWeights:
    """Weights of the health score: 100 − (avg_cpu·cpu + avg_memory·memory
    + high_util_pct·high_utilization), clamped to [0, 100]."""

    cpu: float = 0.4
    memory: float = 0.4
    high_utilization: float = 0.2

    def __post_init__(self):
        for name in ("cpu", "memory", "high_utilization"):
            if getattr(self, name) < 0:
                raise ValueError(f"health weight {name} must not be negative")

    def score(self, avg_cpu, avg_memory, high_util_pct):
        if avg_cpu is None or avg_memory is None or high_util_pct is None:
            return None
        raw = 100.0 - (avg_cpu * self.cpu + avg_memory * self.memory
                       + high_util_pct * self.high_utilization)
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
class ServerMetricsRules:
    high_cpu_threshold: float = 90.0
    high_memory_threshold: float = 90.0
    health_weights: HealthWeights = field(default_factory=HealthWeights)
    alert_rules: tuple[AlertRule, ...] = DEFAULT_ALERT_RULES
    locations: tuple[Location, ...] = ()

    def __post_init__(self):
        names = [r.name for r in self.alert_rules]
        if len(set(names)) != len(names):
            raise ValueError("alert rule names must be unique")

    def location(self, name: str | None) -> Location | None:
        for loc in self.locations:
            if loc.name == name:
                return loc
        return None
