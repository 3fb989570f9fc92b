"""This machine's real metrics in seed 003's shape (``python -m generators host``).

Seed 003's producer read its host with psutil: ``host, cpu (%), memory (%), timestamp
(epoch seconds), load1/5/15, disk_used_gb, disk_used_pct, net_rx_kbps, net_tx_kbps, os,
arch``. Bronze recognises the shape by its ``host`` column and maps it onto the canonical
record (``schemas/regional.py``), so the EWMA detector runs on a real host. A sample is
taken every ``interval``: CPU over that interval, network rates from the counters'
difference over it.
"""
from __future__ import annotations

import os
import platform
import socket
import time
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class HostConfig:
    interval_s: float = 5.0
    count: int | None = None          # samples; None: until duration_s
    duration_s: float | None = 60.0
    host: str = field(default_factory=socket.gethostname)
    disk: str = "/"
    seed: int = 0                     # what the publishers print; nothing is random here


@dataclass
class HostStats:
    samples: int = 0

    def line(self) -> str:
        return f"{self.samples:,} samples of {socket.gethostname()}"


class HostSampler:
    """Renders ``(emit_ms, event_ms, line)`` like the generators, one sample per
    interval, taken when due (so the publishers' pacing is the sampling itself)."""

    def __init__(self, config: HostConfig):
        self.config = config
        self.stats = HostStats()
        self.faults = ()

    def sample(self, previous_net, seconds: float) -> tuple[dict, object]:
        import psutil

        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self.config.disk)
        net = psutil.net_io_counters()
        load1, load5, load15 = os.getloadavg()
        rx = tx = 0.0
        if previous_net is not None and seconds > 0:
            # kilobits per second, as the field names say
            rx = (net.bytes_recv - previous_net.bytes_recv) * 8 / 1000 / seconds
            tx = (net.bytes_sent - previous_net.bytes_sent) * 8 / 1000 / seconds
        record = {
            "host": self.config.host,
            "cpu": psutil.cpu_percent(interval=None),
            "memory": memory.percent,
            "timestamp": round(time.time(), 3),
            "load1": round(load1, 2), "load5": round(load5, 2), "load15": round(load15, 2),
            "disk_used_gb": round(disk.used / 1e9, 2),
            "disk_used_pct": disk.percent,
            "net_rx_kbps": round(max(rx, 0.0), 2),
            "net_tx_kbps": round(max(tx, 0.0), 2),
            "os": platform.system(),
            "arch": platform.machine(),
        }
        return record, net

    def render_timed(self):
        import psutil

        config = self.config
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement
        net = psutil.net_io_counters()
        started = last = time.monotonic()
        taken = 0
        while config.count is None or taken < config.count:
            due = started + (taken + 1) * config.interval_s
            if config.count is None and config.duration_s is not None and \
                    due - started > config.duration_s:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            record, net = self.sample(net, now - last)
            last = now
            taken += 1
            self.stats.samples = taken
            ms = int(record["timestamp"] * 1000)
            yield ms, ms, orjson.dumps(record).decode()

    def render(self):
        for _, _, line in self.render_timed():
            yield line
