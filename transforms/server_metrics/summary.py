"""A mergeable summary of server metrics: the accumulator behind every gold table.

Gold reads each silver record once, into a per-server one-minute summary; hours, days and
locations are merges of summaries. Everything in a summary merges exactly: counts, sums,
sums of squares, minima and maxima, and for CPU and memory a histogram at 0.01-point
resolution (values are percentages, so at most 10,001 buckets) from which quantiles are
read. Quantiles are therefore exact for data with two decimals, and within 0.005 points of
the exact value otherwise.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate

HIST_SCALE = 100.0  # buckets per percentage point
QUANTILES = (0.50, 0.95, 0.99)


class Distribution:
    """Count, sum, sum of squares, extremes and a bucket histogram of one metric."""

    __slots__ = ("n", "total", "squares", "low", "high", "hist")

    def __init__(self):
        self.n = 0
        self.total = 0.0
        self.squares = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.hist: dict[int, int] = {}

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        self.squares += v * v
        if v < self.low:
            self.low = v
        if v > self.high:
            self.high = v
        k = int(v * HIST_SCALE + 0.5)
        h = self.hist
        h[k] = h.get(k, 0) + 1

    def merge(self, other: Distribution) -> None:
        if not other.n:
            return
        self.n += other.n
        self.total += other.total
        self.squares += other.squares
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        h = self.hist
        for k, c in other.hist.items():
            h[k] = h.get(k, 0) + c

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def stddev(self) -> float | None:
        """Sample standard deviation (as BigQuery's STDDEV)."""
        if self.n < 2:
            return None
        var = (self.squares - self.total * self.total / self.n) / (self.n - 1)
        return math.sqrt(var) if var > 0 else 0.0

    def quantile(self, q: float) -> float | None:
        """Linear interpolation between closest ranks (numpy's default, DuckDB's
        ``quantile_cont``) over the bucketed values."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs=QUANTILES) -> tuple[float | None, ...]:
        if not self.n:
            return tuple(None for _ in qs)
        keys = sorted(self.hist)
        cum = list(accumulate(self.hist[k] for k in keys))

        def at(rank: int) -> float:
            return keys[bisect_right(cum, rank)] / HIST_SCALE

        out = []
        for q in qs:
            pos = q * (self.n - 1)
            lo = int(pos)
            frac = pos - lo
            v = at(lo)
            if frac:
                v += (at(lo + 1) - v) * frac
            out.append(v)
        return tuple(out)


class Sum:
    """Count, sum and maximum of a metric that needs no quantiles."""

    __slots__ = ("n", "total", "high")

    def __init__(self):
        self.n = 0
        self.total = 0.0
        self.high = -math.inf

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        if v > self.high:
            self.high = v

    def merge(self, other: Sum) -> None:
        self.n += other.n
        self.total += other.total
        if other.high > self.high:
            self.high = other.high

    @property
    def mean(self):
        return self.total / self.n if self.n else None

    @property
    def maximum(self):
        return self.high if self.n else None


class ServerMetricsSummary:
    """Everything gold needs to know about a set of silver records."""

    __slots__ = ("records", "cpu", "memory", "disk_io", "network_in", "network_out",
                 "temperature", "power", "high_utilization", "breaches", "holds")

    def __init__(self):
        self.records = 0
        self.cpu = Distribution()
        self.memory = Distribution()
        self.disk_io = Sum()
        self.network_in = Sum()
        self.network_out = Sum()
        self.temperature = Sum()
        self.power = Sum()
        self.high_utilization = 0
        # rule name -> [records breaching, most extreme value, rule fires above?]
        self.breaches: dict[str, list] = {}
        # rule name -> records beyond its clear level that do not breach it (hysteresis)
        self.holds: dict[str, int] = {}

    def add(self, r: dict, rules=()) -> None:
        self.records += 1
        v = r["cpu_usage"]
        if v is not None:
            self.cpu.add(v)
        v = r["memory_usage"]
        if v is not None:
            self.memory.add(v)
        v = r["disk_io"]
        if v is not None:
            self.disk_io.add(v)
        v = r["network_in"]
        if v is not None:
            self.network_in.add(v)
        v = r["network_out"]
        if v is not None:
            self.network_out.add(v)
        v = r["temperature_c"]
        if v is not None:
            self.temperature.add(v)
        v = r["power_watts"]
        if v is not None:
            self.power.add(v)
        if r["is_high_utilization"]:
            self.high_utilization += 1
        for rule in rules:
            v = r[rule.metric]
            if v is None:
                continue
            crossing = rule.crossing(v, r["server_id"], r["server_type"])
            if crossing == 2:
                hit = self.breaches.get(rule.name)
                if hit is None:
                    self.breaches[rule.name] = [1, v, rule.above is not None]
                else:
                    hit[0] += 1
                    if (v > hit[1]) if hit[2] else (v < hit[1]):
                        hit[1] = v
            elif crossing:
                self.holds[rule.name] = self.holds.get(rule.name, 0) + 1

    def merge(self, other: ServerMetricsSummary) -> ServerMetricsSummary:
        self.records += other.records
        self.cpu.merge(other.cpu)
        self.memory.merge(other.memory)
        self.disk_io.merge(other.disk_io)
        self.network_in.merge(other.network_in)
        self.network_out.merge(other.network_out)
        self.temperature.merge(other.temperature)
        self.power.merge(other.power)
        self.high_utilization += other.high_utilization
        for name, (count, extreme, above) in other.breaches.items():
            mine = self.breaches.get(name)
            if mine is None:
                self.breaches[name] = [count, extreme, above]
            else:
                mine[0] += count
                mine[1] = max(mine[1], extreme) if above else min(mine[1], extreme)
        for name, count in other.holds.items():
            self.holds[name] = self.holds.get(name, 0) + count
        return self

    def columns(self, quantiles: bool = True) -> dict:
        """The aggregate columns shared by the gold tables."""
        cols = {"record_count": self.records}
        for prefix, dist in (("cpu_usage", self.cpu), ("memory_usage", self.memory)):
            cols[f"min_{prefix}"] = dist.low if dist.n else None
            cols[f"avg_{prefix}"] = dist.mean
            cols[f"max_{prefix}"] = dist.high if dist.n else None
            if quantiles:
                p50, p95, p99 = dist.quantiles(QUANTILES)
                cols[f"p50_{prefix}"] = p50
                cols[f"p95_{prefix}"] = p95
                cols[f"p99_{prefix}"] = p99
                cols[f"stddev_{prefix}"] = dist.stddev
        cols["avg_disk_io"] = self.disk_io.mean
        cols["total_network_in"] = self.network_in.total if self.network_in.n else None
        cols["total_network_out"] = self.network_out.total if self.network_out.n else None
        cols["avg_temperature_c"] = self.temperature.mean
        cols["max_temperature_c"] = self.temperature.maximum
        cols["avg_power_watts"] = self.power.mean
        cols["high_utilization_count"] = self.high_utilization
        cols["high_utilization_pct"] = (100.0 * self.high_utilization / self.records
                                        if self.records else None)
        return cols
