"""Seed 001's three regional sources, from the same seeded fleet as the metrics: India as
CSV (``server_code, timestamp_ist, temp_celsius, cpu_usage_percent``), the USA as JSON
lines (``instance_id, time_utc, temp_fahrenheit, load_fraction, voltage_v``) and Germany
as Parquet (``node_name, epoch_time, temp_kelvin, power_watts``).

Every third server of the fleet reports in each region, in that region's names, units and
time convention (the inverse of ``schemas/regional.py``). ``malformed_rate`` replaces a
temperature by a value no conversion takes, so the pipeline's dead letters can be checked.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from generators.metrics import GeneratorConfig, MetricsGenerator

IST = timezone(timedelta(hours=5, minutes=30))
FILES = {"india": "india.csv", "usa": "usa.jsonl", "germany": "germany.parquet"}


@dataclass
class RegionalStats:
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILES, 0))
    malformed: int = 0

    def line(self) -> str:
        per = ", ".join(f"{n:,} {region}" for region, n in self.records.items())
        return f"{sum(self.records.values()):,} records ({per}; {self.malformed} malformed)"


def _ids(server, region: str) -> str:
    number = server.index + 1
    return {"india": f"IN-BLR-{number:03d}",
            "usa": f"i-{server.server_id.replace('-', '')[:12]}",
            "germany": f"fra-node-{number:02d}"}[region]


class RegionalGenerator:
    """The fleet's events in the three regional shapes, as the regions' own records."""

    def __init__(self, config: GeneratorConfig, malformed_rate: float = 0.0):
        if not 0 <= malformed_rate <= 1:
            raise ValueError("malformed rate must be within [0, 1]")
        self.config = config
        self.malformed_rate = malformed_rate
        self.stats = RegionalStats()

    def records(self):
        """``(epoch_ms, region, record)``, the record in the region's names and units."""
        generator = MetricsGenerator(self.config)
        rng = random.Random(self.config.seed)
        regions = tuple(FILES)
        for server, epoch_ms, _iso, vals in generator.events():
            region = regions[server.index % 3]
            cpu, temp, power = vals[0], vals[5], vals[6]
            bad = rng.random() < self.malformed_rate
            self.stats.malformed += bad
            self.stats.records[region] += 1
            when = datetime.fromtimestamp(epoch_ms / 1000, timezone.utc)
            if region == "india":
                record = {"server_code": _ids(server, region),
                          "timestamp_ist": f"{when.astimezone(IST):%Y-%m-%d %H:%M:%S}",
                          "temp_celsius": "hot" if bad else round(temp, 1),
                          "cpu_usage_percent": cpu}
            elif region == "usa":
                record = {"instance_id": _ids(server, region),
                          "time_utc": f"{when:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z",
                          "temp_fahrenheit": "n/a" if bad else round(temp * 9 / 5 + 32, 1),
                          "load_fraction": round(cpu / 100, 4),
                          "voltage_v": round(119.0 + power / 400 + rng.uniform(-0.5, 0.5), 1)}
            else:
                record = {"node_name": _ids(server, region), "epoch_time": epoch_ms // 1000,
                          "temp_kelvin": float("nan") if bad else round(temp + 273.15, 2),
                          "power_watts": power}
            yield epoch_ms, region, record

    def render_timed(self):
        """For the publisher: ``(emit_ms, event_ms, JSON text)``, every region as JSON
        objects in its own names (a streaming job maps them like the files)."""
        for epoch_ms, _region, record in self.records():
            if record.get("temp_kelvin") != record.get("temp_kelvin"):  # NaN is not JSON
                record["temp_kelvin"] = "NaN"
            yield epoch_ms, epoch_ms, json.dumps(record)


def write_regional(config: GeneratorConfig, out_dir: str,
                   malformed_rate: float = 0.0) -> tuple[dict[str, str], RegionalStats]:
    """Write india.csv, usa.jsonl and germany.parquet into ``out_dir``; return their paths
    and what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    generator = RegionalGenerator(config, malformed_rate)
    rows = {region: [] for region in FILES}
    for _, region, record in generator.records():
        rows[region].append(record)
    paths = {region: os.path.join(out_dir, name) for region, name in FILES.items()}
    with open(paths["india"], "w", encoding="utf-8", newline="\n") as fh:
        fh.write(",".join(("server_code", "timestamp_ist", "temp_celsius",
                           "cpu_usage_percent")) + "\n")
        fh.writelines(f"{r['server_code']},{r['timestamp_ist']},{r['temp_celsius']},"
                      f"{r['cpu_usage_percent']:.2f}\n" for r in rows["india"])
    with open(paths["usa"], "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows["usa"])
    germany = rows["germany"]
    pq.write_table(pa.table({
        "node_name": pa.array([r["node_name"] for r in germany], pa.string()),
        "epoch_time": pa.array([r["epoch_time"] for r in germany], pa.int64()),
        "temp_kelvin": pa.array([r["temp_kelvin"] for r in germany], pa.float64()),
        "power_watts": pa.array([r["power_watts"] for r in germany], pa.float64())}),
        paths["germany"])
    return paths, generator.stats
