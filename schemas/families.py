"""Seed 002's metric families: one record split over one Kafka topic per family (cpu, mem,
net, disk), as its producer wrote them, and joined back per (server, timestamp) by the
source. Declared once here for the generator that splits and the source that joins.

Every part carries the record's identity (server id, name, type, location, region) and
timestamp, and its family's measurements; a measurement no family names (host fields, say)
goes with the first family.
"""
from __future__ import annotations

from schemas.server_metrics import SERVER_METRIC

FAMILIES: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu_usage", "temperature_c", "power_watts", "voltage_v", "load_1m", "load_5m",
            "load_15m"),
    "mem": ("memory_usage",),
    "net": ("network_in", "network_out"),
    "disk": ("disk_io", "disk_used_gb", "disk_used_pct"),
}
IDENTITY = ("server_id", "server_name", "server_type", "location", "timestamp", "region",
            "os", "arch")
#: Key of a joined record that lacks some family's part when the join gave up waiting:
#: bronze dead-letters such a record ``incomplete_join``.
MISSING_PARTS = "_missing_parts"

assert set(IDENTITY) | {m for ms in FAMILIES.values() for m in ms} <= set(SERVER_METRIC.names)


def split(record: dict) -> dict[str, dict]:
    """A canonical record → its part per family (a family whose fields are all absent is
    still sent: the join waits for every family)."""
    identity = {k: record[k] for k in IDENTITY if k in record}
    claimed = {m for ms in FAMILIES.values() for m in ms} | set(IDENTITY)
    parts = {family: {**identity, **{m: record[m] for m in fields if m in record}}
             for family, fields in FAMILIES.items()}
    first = next(iter(parts))
    parts[first].update({k: v for k, v in record.items() if k not in claimed})
    return parts


def family_topics(prefix: str) -> dict[str, str]:
    """Seed 002's topic names: ``PREFIX-cpu``, ``PREFIX-mem``, …"""
    return {family: f"{prefix}-{family}" for family in FAMILIES}
