"""Vectorised aggregation of one server's records: segments of (identity, window) and the
columns the gold tables share, computed with numpy over whole arrays.

The numbers are those of :class:`transforms.server_metrics.summary.ServerMetricsSummary` (the
row-level accumulator): the same null handling, the same sample standard deviation, and
quantiles read from values bucketed at 0.01 points, interpolated between closest ranks
exactly as ``Distribution.quantiles`` does. Only the order of floating-point additions
differs.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.server_metrics.summary import (
    HIST_SCALE,
    QUANTILES,
    Distribution,
    ServerMetricsSummary,
    Sum,
)

IDENTITY = ("server_id", "server_name", "server_type", "location")
_US = 1_000_000


def micros_of(table: pa.Table, name: str = "timestamp") -> np.ndarray:
    return table.column(name).cast(pa.int64()).to_numpy()


def identity_codes(table: pa.Table) -> np.ndarray:
    """An integer per distinct (server_id, server_name, server_type, location)."""
    codes = np.zeros(table.num_rows, dtype=np.int64)
    for name in IDENTITY:
        encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
        index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        codes = codes * (len(encoded.dictionary) + 1) + index + 1
    return codes


class Segments:
    """Contiguous runs of sorted rows sharing (identity code, window start)."""

    def __init__(self, codes: np.ndarray, starts_us: np.ndarray):
        n = len(codes)
        change = np.ones(n, dtype=bool)
        if n:
            change[1:] = (codes[1:] != codes[:-1]) | (starts_us[1:] != starts_us[:-1])
        self.first = np.flatnonzero(change)
        self.size = np.diff(np.append(self.first, n))
        self.window_us = starts_us[self.first]
        self.ids = np.repeat(np.arange(len(self.first)), self.size)

    def __len__(self):
        return len(self.first)

    def count(self, mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype(np.int64), self.first) if len(self) else \
            np.zeros(0, np.int64)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.where(np.isnan(values), 0.0, values), self.first)

    def extreme(self, values: np.ndarray, high: bool) -> np.ndarray:
        fill = -np.inf if high else np.inf
        ufunc = np.maximum if high else np.minimum
        return ufunc.reduceat(np.where(np.isnan(values), fill, values), self.first)

    def quantiles(self, values: np.ndarray, qs=QUANTILES) -> list[np.ndarray]:
        """Per segment, ``Distribution.quantiles`` over the non-null values (NaN where a
        segment has none)."""
        valid = ~np.isnan(values)
        seg = self.ids[valid]
        buckets = np.trunc(values[valid] * HIST_SCALE + 0.5).astype(np.int64)
        ordered = _sorted_within(seg, buckets, len(self))
        counts = np.bincount(seg, minlength=len(self))
        offsets = np.cumsum(counts) - counts
        out = []
        last = max(len(ordered) - 1, 0)
        for q in qs:
            pos = q * (counts - 1)
            lo = np.maximum(pos, 0).astype(np.int64)
            frac = pos - lo
            at_lo = np.clip(offsets + lo, 0, last)
            at_hi = np.clip(offsets + np.minimum(lo + 1, np.maximum(counts - 1, 0)), 0, last)
            v = ordered[at_lo] / HIST_SCALE if len(ordered) else np.zeros(len(self))
            w = ordered[at_hi] / HIST_SCALE if len(ordered) else np.zeros(len(self))
            v = np.where(frac > 0, v + (w - v) * frac, v)
            out.append(np.where(counts > 0, v, np.nan))
        return out


def _sorted_within(seg: np.ndarray, values: np.ndarray, segments: int) -> np.ndarray:
    """Integer values sorted within each segment, the segments in id order (``seg``: each
    value's segment id). One sort of a single key, segment × span + value, where it
    fits in 63 bits: 2–2.5× a two-key lexsort on a day of minutes."""
    if len(values):
        low = int(values.min())
        span = int(values.max()) - low + 1
        if span * segments < 2 ** 62:
            key = np.sort(seg * span + (values - low))
            return key % span + low
    return values[np.lexsort((values, seg))]


def _nullable(values: np.ndarray, present: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=~present)


class Measures:
    """The arrays of one server's sorted silver records that gold aggregates."""

    def __init__(self, table: pa.Table):
        col = table.column
        self.table = table
        self.micros = micros_of(table)
        self.cpu = col("cpu_usage").to_numpy()
        self.memory = col("memory_usage").to_numpy()
        self.disk_io = col("disk_io").to_numpy()
        self.network_in = col("network_in").to_numpy()
        self.network_out = col("network_out").to_numpy()
        self.temperature = col("temperature_c").to_numpy()
        self.power = col("power_watts").to_numpy()
        self.high = col("is_high_utilization").to_numpy(zero_copy_only=False).astype(bool)

    def columns(self, seg: Segments, quantiles: bool) -> dict[str, pa.Array]:
        """The aggregate columns of ``ServerMetricsSummary.columns``, per segment."""
        records = seg.size
        cols: dict[str, pa.Array] = {"record_count": pa.array(records, pa.int64())}
        for prefix, v in (("cpu_usage", self.cpu), ("memory_usage", self.memory)):
            valid = ~np.isnan(v)
            n = seg.count(valid)
            some = n > 0
            total = seg.sum(v)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = total / n
            cols[f"min_{prefix}"] = _nullable(seg.extreme(v, False), some)
            cols[f"avg_{prefix}"] = _nullable(mean, some)
            cols[f"max_{prefix}"] = _nullable(seg.extreme(v, True), some)
            if quantiles:
                for q, values in zip(QUANTILES, seg.quantiles(v), strict=True):
                    cols[f"p{round(q * 100)}_{prefix}"] = _nullable(values, some)
                squares = seg.sum(v * v)
                with np.errstate(invalid="ignore", divide="ignore"):
                    var = (squares - total * total / n) / (n - 1)
                std = np.where(var > 0, np.sqrt(np.maximum(var, 0)), 0.0)
                cols[f"stddev_{prefix}"] = _nullable(std, n >= 2)
        for name, v, how in (("avg_disk_io", self.disk_io, "mean"),
                             ("total_network_in", self.network_in, "total"),
                             ("total_network_out", self.network_out, "total"),
                             ("avg_temperature_c", self.temperature, "mean"),
                             ("max_temperature_c", self.temperature, "max"),
                             ("avg_power_watts", self.power, "mean")):
            n = seg.count(~np.isnan(v))
            if how == "max":
                values = seg.extreme(v, True)
            else:
                values = seg.sum(v)
                if how == "mean":
                    with np.errstate(invalid="ignore", divide="ignore"):
                        values = values / n
            cols[name] = _nullable(values, n > 0)
        high = seg.count(self.high)
        cols["high_utilization_count"] = pa.array(high, pa.int64())
        cols["high_utilization_pct"] = pa.array(100.0 * high / records, pa.float64())
        return cols

    def summary(self, rows: slice) -> ServerMetricsSummary:
        """A mergeable row-level summary of a run of rows (for roll-ups across servers)."""
        s = ServerMetricsSummary()
        s.records = rows.stop - rows.start
        for dist, v in ((s.cpu, self.cpu), (s.memory, self.memory)):
            v = v[rows]
            v = v[~np.isnan(v)]
            _fill_distribution(dist, v)
        for acc, v in ((s.disk_io, self.disk_io), (s.network_in, self.network_in),
                       (s.network_out, self.network_out), (s.temperature, self.temperature),
                       (s.power, self.power)):
            v = v[rows]
            v = v[~np.isnan(v)]
            _fill_sum(acc, v)
        s.high_utilization = int(self.high[rows].sum())
        return s


def _fill_distribution(dist: Distribution, v: np.ndarray) -> None:
    if not len(v):
        return
    dist.n = len(v)
    dist.total = float(v.sum())
    dist.squares = float((v * v).sum())
    dist.low = float(v.min())
    dist.high = float(v.max())
    keys, counts = np.unique(np.trunc(v * HIST_SCALE + 0.5).astype(np.int64),
                             return_counts=True)
    dist.hist = dict(zip(keys.tolist(), counts.tolist(), strict=True))


def _fill_sum(acc: Sum, v: np.ndarray) -> None:
    if not len(v):
        return
    acc.n = len(v)
    acc.total = float(v.sum())
    acc.high = float(v.max())


def window_columns(start: np.ndarray, seconds: int, hour: bool = False
                   ) -> dict[str, pa.Array]:
    """The columns of windows of ``seconds`` starting at ``start`` (µs), in their one
    on-time pane (``hour``: with the UTC hour, for the hourly table)."""
    ts = pa.timestamp("us", tz="UTC")
    starts = pa.array(start, ts)
    n = len(start)
    cols = {"window_start": starts,
            "window_end": pa.array(start + seconds * _US, ts),
            "metric_date": starts.cast(pa.date32()),
            "pane_index": pa.array(np.zeros(n, np.int64)),
            "pane_timing": pa.repeat(pa.scalar("ON_TIME"), n)}
    if hour:
        cols["hour_of_day"] = pc.hour(starts)
    return cols


def identity_columns(table: pa.Table, rows: np.ndarray) -> dict[str, pa.Array]:
    take = pa.array(rows, pa.int64())
    return {name: table.column(name).take(take).combine_chunks() for name in IDENTITY}

