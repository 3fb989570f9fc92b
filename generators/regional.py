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


def write_regional(config: GeneratorConfig, out_dir: str,
                   malformed_rate: float = 0.0) -> tuple[dict[str, str], RegionalStats]:
    """Write the three files into ``out_dir``; return their paths and what was written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    generator = MetricsGenerator(config)
    rng = random.Random(config.seed)
    regions = tuple(FILES)
    stats = RegionalStats()
    india, usa, germany = [], [], []
    for server, epoch_ms, _iso, vals in generator.events():
        region = regions[server.index % 3]
        cpu, temp, power = vals[0], vals[5], vals[6]
        bad = rng.random() < malformed_rate
        stats.malformed += bad
        stats.records[region] += 1
        when = datetime.fromtimestamp(epoch_ms / 1000, timezone.utc)
        if region == "india":
            india.append(f"{_ids(server, region)},"
                         f"{when.astimezone(IST):%Y-%m-%d %H:%M:%S},"
                         f"{'hot' if bad else f'{temp:.1f}'},{cpu:.2f}")
        elif region == "usa":
            usa.append(json.dumps({
                "instance_id": _ids(server, region),
                "time_utc": f"{when:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z",
                "temp_fahrenheit": "n/a" if bad else round(temp * 9 / 5 + 32, 1),
                "load_fraction": round(cpu / 100, 4),
                "voltage_v": round(119.0 + power / 400 + rng.uniform(-0.5, 0.5), 1)}))
        else:
            germany.append((_ids(server, region), epoch_ms // 1000,
                            float("nan") if bad else round(temp + 273.15, 2), power))
    paths = {region: os.path.join(out_dir, name) for region, name in FILES.items()}
    with open(paths["india"], "w", encoding="utf-8", newline="\n") as fh:
        fh.write("server_code,timestamp_ist,temp_celsius,cpu_usage_percent\n")
        fh.writelines(row + "\n" for row in india)
    with open(paths["usa"], "w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(row + "\n" for row in usa)
    columns = list(zip(*germany, strict=True)) if germany else [[], [], [], []]
    pq.write_table(pa.table({
        "node_name": pa.array(columns[0], pa.string()),
        "epoch_time": pa.array(columns[1], pa.int64()),
        "temp_kelvin": pa.array(columns[2], pa.float64()),
        "power_watts": pa.array(columns[3], pa.float64())}), paths["germany"])
    return paths, stats
