"""Server-metric events: a daily cycle, noise, incidents, spikes, and injected faults.

Values are computed in NumPy blocks of ticks × servers (one tick = every server reports
once), then rendered by a format-specific :class:`Renderer`. Everything is drawn from the
seed, so the same arguments give byte-identical output.

Injected faults, each at its own rate per record:

* anomaly: seed 000's spike, CPU and memory drawn from 95–100 (a valid record);
* malformed: bad JSON, wrong types, missing fields, out-of-range values;
* duplicate: the same record again, a moment later;
* late: the record held back and emitted ``late_by`` seconds of event time later.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from generators.faults import StreamConfig, with_faults
from generators.fleet import Server, build_fleet

METRIC_COLUMNS = ("cpu_usage", "memory_usage", "disk_io", "network_in", "network_out",
                  "temperature_c", "power_watts")

INCIDENT_KINDS = ("cpu_saturation", "memory_leak", "overheating")


@dataclass(kw_only=True)
class GeneratorConfig(StreamConfig):
    servers: int = 10
    interval_ms: int = 15
    anomaly_rate: float = 0.01
    incidents_per_server_day: float = 4.0

    fractions: ClassVar[tuple[str, ...]] = ("anomaly_rate",)

    def __post_init__(self):
        if self.servers < 1:
            raise ValueError("servers must be at least 1")
        if self.interval_ms <= 0:
            raise ValueError("interval must be positive")
        super().__post_init__()

    @property
    def total_events(self) -> int | None:
        if self.count is not None:
            return self.count
        if self.duration_s is None:
            return None
        ticks = int(round(self.duration_s * 1000 / self.interval_ms))
        return ticks * self.servers


@dataclass
class GeneratorStats:
    events: int = 0
    written: int = 0
    anomalies: int = 0
    malformed: int = 0
    duplicates: int = 0
    late: int = 0
    incidents: int = 0

    def line(self) -> str:
        parts = [f"{self.malformed:,} malformed", f"{self.duplicates:,} duplicates",
                 f"{self.late:,} late"]
        if self.anomalies or self.incidents:
            parts += [f"{self.anomalies:,} spikes", f"{self.incidents:,} incidents"]
        return f"{self.events:,} events, {self.written:,} records written ({', '.join(parts)})"


@dataclass
class _Incident:
    kind: str
    start_s: float
    end_s: float
    magnitude: float


@dataclass
class Event:
    """One clean measurement, before rendering."""

    server: Server
    epoch_ms: int
    iso: str
    values: list = field(default_factory=list)


def iso_ms(epoch_ms: int) -> str:
    sec, ms = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}Z"


class MetricsGenerator:
    """Iterate :meth:`events` for clean events or :meth:`render` for output records."""

    def __init__(self, config: GeneratorConfig):
        self.config = config
        self.fleet = build_fleet(config.servers, config.seed)
        self.stats = GeneratorStats()
        self._rng = np.random.default_rng(config.seed)
        fleet = self.fleet
        p = [s.profile for s in fleet]
        self._cpu = np.array([x.cpu + s.load_bias for x, s in zip(p, fleet, strict=True)])
        self._cpu_swing = np.array([x.cpu_swing for x in p])
        self._mem = np.array([x.memory + 0.6 * s.load_bias for x, s in zip(p, fleet, strict=True)])
        self._mem_swing = np.array([x.memory_swing for x in p])
        self._disk = np.array([x.disk_io for x in p])
        self._net_in = np.array([x.network_in for x in p])
        self._net_out = np.array([x.network_out for x in p])
        self._idle_w = np.array([x.idle_watts for x in p])
        self._peak_w = np.array([x.peak_watts for x in p])
        self._offset_h = np.array([s.region.utc_offset_hours for s in fleet])
        self._incidents: list[list[_Incident]] = [[] for _ in fleet]
        self._proneness = np.array([s.incident_proneness for s in fleet])
        #: The ground truth: one dict per injected fault that reached an emitted record
        #: (``kind``, ``server_id``, ``start``, ``end``), in the order they began; the
        #: stats count exactly these.
        self.faults: list[dict] = []
        self._reported: set[tuple] = set()  # incidents already in ``faults``
        self._spikes = None  # the last block's spike mask (ticks × servers)

    # ---- clean values ---------------------------------------------------------------------
    def _block_ticks(self) -> int:
        return max(1, 8192 // self.config.servers)

    def _schedule_incidents(self, t0: float, t1: float) -> None:
        rate_per_s = self.config.incidents_per_server_day / 86400.0
        if rate_per_s <= 0:
            return
        counts = self._rng.poisson(rate_per_s * self._proneness * (t1 - t0))
        for i in np.nonzero(counts)[0]:
            for _ in range(int(counts[i])):
                start = float(self._rng.uniform(t0, t1))
                length = float(self._rng.uniform(60, 900))
                kind = INCIDENT_KINDS[int(self._rng.integers(len(INCIDENT_KINDS)))]
                self._incidents[i].append(
                    _Incident(kind, start, start + length, float(self._rng.uniform(0.8, 1.2))))

    def _values(self, t: np.ndarray) -> np.ndarray:
        """Values for ticks ``t`` (seconds since start) × servers: shape (T, N, 7)."""
        rng = self._rng
        n = len(self.fleet)
        start_h = (self.config.start.timestamp() % 86400) / 3600.0
        local_h = (start_h + t[:, None] / 3600.0 + self._offset_h[None, :]) % 24
        daily = np.sin((local_h - 9.0) / 24.0 * 2 * np.pi)  # peaks at 15:00 local
        noise = rng.standard_normal((len(t), n, 6))
        cpu = self._cpu + self._cpu_swing * daily + 4.0 * noise[..., 0]
        mem = self._mem + self._mem_swing * daily + 1.5 * noise[..., 1]
        load = 1.0 + 0.4 * daily
        disk = self._disk * load * np.exp(0.25 * noise[..., 2])
        net_in = self._net_in * load * np.exp(0.3 * noise[..., 3])
        net_out = self._net_out * load * np.exp(0.3 * noise[..., 4])
        heat = np.zeros_like(cpu)
        t_lo, t_hi = float(t[0]), float(t[-1])
        for i, incidents in enumerate(self._incidents):
            live = []
            for inc in incidents:
                if inc.end_s < t_lo:
                    continue
                live.append(inc)
                if inc.start_s > t_hi:
                    continue
                m = (t >= inc.start_s) & (t < inc.end_s)
                if inc.kind == "cpu_saturation":
                    cpu[m, i] += 55 * inc.magnitude
                    heat[m, i] += 8
                elif inc.kind == "memory_leak":
                    frac = (t[m] - inc.start_s) / (inc.end_s - inc.start_s)
                    mem[m, i] += (99 - mem[m, i]) * np.minimum(1.0, 1.2 * frac)
                else:
                    heat[m, i] += 38 * inc.magnitude
            self._incidents[i] = live
        spikes = rng.random((len(t), n)) < self.config.anomaly_rate
        self._spikes = spikes
        if spikes.any():
            k = int(spikes.sum())
            cpu[spikes] = rng.uniform(95, 100, k)
            mem[spikes] = rng.uniform(95, 100, k)
        cpu = np.clip(cpu, 0, 100)
        mem = np.clip(mem, 0, 100)
        temp = 36.0 + 0.42 * cpu + heat + 1.2 * noise[..., 5]
        power = self._idle_w + (self._peak_w - self._idle_w) * cpu / 100.0 \
            + 4.0 * noise[..., 0]
        out = np.stack([cpu, mem, disk, net_in, net_out, temp, power], axis=-1)
        return np.round(out, 2)

    def events(self):
        """Clean events in tick order (no injected faults): an endless or bounded stream."""
        cfg = self.config
        total = cfg.total_events
        start_ms = int(cfg.start.timestamp() * 1000)
        block = self._block_ticks()
        emitted = 0
        tick = 0
        fleet = self.fleet
        while total is None or emitted < total:
            ticks = np.arange(tick, tick + block)
            t = ticks * (cfg.interval_ms / 1000.0)
            self._schedule_incidents(float(t[0]), float(t[-1]) + cfg.interval_ms / 1000.0)
            values = self._values(t).tolist()
            limit = len(ticks) * len(fleet) if total is None else min(
                len(ticks) * len(fleet), total - emitted)
            self._record_faults(t, start_ms, limit)
            for row, k in zip(values, ticks.tolist(), strict=True):
                epoch_ms = start_ms + k * cfg.interval_ms
                iso = iso_ms(epoch_ms)
                for server, vals in zip(fleet, row, strict=True):
                    if total is not None and emitted >= total:
                        return
                    emitted += 1
                    yield server, epoch_ms, iso, vals
            tick += block

    def _record_faults(self, t: np.ndarray, start_ms: int, limit: int) -> None:
        """The faults of this block that reach one of its first ``limit`` records (those
        emitted, tick by tick, server by server): spikes, and incidents at their first
        affected record."""
        n = len(self.fleet)
        found = []
        if self._spikes is not None:
            for flat in np.flatnonzero(self._spikes.reshape(-1)).tolist():
                if flat < limit:
                    j, i = divmod(flat, n)
                    at = start_ms + round(float(t[j]) * 1000)
                    found.append((flat, {"kind": "spike", "server_id": self.fleet[i].server_id,
                                         "start": iso_ms(at), "end": iso_ms(at)}))
        for i, incidents in enumerate(self._incidents):
            for inc in incidents:
                key = (i, inc.kind, inc.start_s)
                if key in self._reported:
                    continue
                hit = np.flatnonzero((t >= inc.start_s) & (t < inc.end_s))
                if not len(hit) or int(hit[0]) * n + i >= limit:
                    continue
                self._reported.add(key)
                found.append((int(hit[0]) * n + i, {
                    "kind": inc.kind, "server_id": self.fleet[i].server_id,
                    "start": iso_ms(start_ms + round(inc.start_s * 1000)),
                    "end": iso_ms(start_ms + round(inc.end_s * 1000))}))
        for _, fault in sorted(found, key=lambda f: f[0]):
            self.faults.append(fault)
            if fault["kind"] == "spike":
                self.stats.anomalies += 1
            else:
                self.stats.incidents += 1

    # ---- output with faults ---------------------------------------------------------------
    def render(self, renderer: Renderer):
        """Output records of ``renderer``, with malformed, duplicate and late ones injected."""
        for _, _, record in self.render_timed(renderer):
            yield record

    def render_timed(self, renderer: Renderer | None = None):
        """``(emitted_at_ms, event_ms, record)``: when a paced publisher should send the
        record, and the event time it carries (older than the first for late records).
        JSON lines unless another renderer is given."""
        renderer = renderer or JsonRenderer()
        def events():
            for server, epoch_ms, iso, vals in self.events():
                yield epoch_ms, (server, epoch_ms, iso, vals)

        return with_faults(events(), lambda e: renderer.render(*e),
                           lambda kind, e: renderer.malformed(kind, *e),
                           renderer.malformed_kinds, self.config, self.stats,
                           redelivery_ms=5 * self.config.interval_ms)


class Renderer:
    """Turns events into one output format's records."""

    malformed_kinds: tuple[str, ...] = ("wrong_type", "missing_field", "out_of_range")

    def header(self) -> str | None:
        return None

    def render(self, server: Server, epoch_ms: int, iso: str, vals: list):
        raise NotImplementedError

    def malformed(self, kind: str, server: Server, epoch_ms: int, iso: str, vals: list):
        raise NotImplementedError


def _corrupt_values(kind: str, vals: list, pick_index: int) -> list:
    vals = list(vals)
    if kind == "out_of_range":
        # cpu above 100, negative network, or an impossible temperature
        j, bad = ((0, 150.0), (3, -25.0), (5, 500.0))[pick_index % 3]
        vals[j] = bad
    return vals


class JsonRenderer(Renderer):
    malformed_kinds = ("bad_json", "wrong_type", "missing_field", "out_of_range")

    def __init__(self):
        self._templates: dict[int, str] = {}

    def _template(self, server: Server) -> str:
        tpl = self._templates.get(server.index)
        if tpl is None:
            tpl = (f'{{"server_id":"{server.server_id}","server_name":"{server.server_name}",'
                   f'"server_type":"{server.server_type}","location":"{server.region.name}",'
                   '"timestamp":"%s","cpu_usage":%.2f,"memory_usage":%.2f,"disk_io":%.2f,'
                   '"network_in":%.2f,"network_out":%.2f,"temperature_c":%.2f,'
                   '"power_watts":%.2f}')
            self._templates[server.index] = tpl
        return tpl

    def render(self, server, epoch_ms, iso, vals):
        return self._template(server) % (iso, *vals)

    def malformed(self, kind, server, epoch_ms, iso, vals):
        line = self._template(server) % (iso, *_corrupt_values(kind, vals, epoch_ms))
        if kind == "bad_json":
            return line[: len(line) // 2]
        if kind == "wrong_type":
            return line.replace('"cpu_usage":', '"cpu_usage":"n/a","was":', 1)
        if kind == "missing_field":
            field = "server_id" if epoch_ms % 2 else "timestamp"
            head, _, tail = line.partition(f'"{field}":"')
            return head + tail.split('",', 1)[1]
        return line


CSV_COLUMNS = ("server_id", "server_name", "server_type", "location", "timestamp") \
    + METRIC_COLUMNS


_CSV_VALUES = ",".join(["{:.2f}"] * len(METRIC_COLUMNS))


class CsvRenderer(Renderer):
    malformed_kinds = ("column_mismatch", "wrong_type", "missing_field", "out_of_range")

    def header(self) -> str:
        return ",".join(CSV_COLUMNS)

    def render(self, server, epoch_ms, iso, vals):
        return (f"{server.server_id},{server.server_name},{server.server_type},"
                f"{server.region.name},{iso},") + _CSV_VALUES.format(*vals)

    def malformed(self, kind, server, epoch_ms, iso, vals):
        line = self.render(server, epoch_ms, iso, _corrupt_values(kind, vals, epoch_ms))
        if kind == "column_mismatch":
            return line.rsplit(",", 2)[0]
        if kind == "wrong_type":
            parts = line.split(",")
            parts[5] = "n/a"
            return ",".join(parts)
        if kind == "missing_field":
            return "," + line.split(",", 1)[1]  # empty server_id
        return line


class RowRenderer(Renderer):
    """Typed rows (for Parquet): a wrong type cannot be written, so only missing fields
    and out-of-range values are injected."""

    malformed_kinds = ("missing_field", "out_of_range")

    def render(self, server, epoch_ms, iso, vals):
        return (server.server_id, server.server_name, server.server_type, server.region.name,
                epoch_ms, *vals)

    def malformed(self, kind, server, epoch_ms, iso, vals):
        row = self.render(server, epoch_ms, iso, _corrupt_values(kind, vals, epoch_ms))
        if kind == "missing_field":
            return (None,) + row[1:]
        return row
