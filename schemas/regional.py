"""Seed 001's three regional sources, declared: how each one's names, units and time
conventions map onto the canonical server metric (``schemas/server_metrics.py``).

A shape is recognised by its identity column (``server_code``, ``instance_id``,
``node_name``); every column it maps is an alias of a canonical field with a named
conversion (``transforms/server_metrics/regional.py`` applies them). A sensor a region
does not have is simply not mapped: it stays null, never 0.0. Columns a shape does not
declare are kept in ``extra_fields`` like any unknown field.
"""
from __future__ import annotations

from dataclasses import dataclass

from schemas.server_metrics import SERVER_METRIC


@dataclass(frozen=True)
class Alias:
    column: str        # the region's column
    field: str         # the canonical field it fills
    conversion: str = "as_is"

    def __post_init__(self):
        if self.field not in SERVER_METRIC.names:
            raise ValueError(f"{self.column} maps to unknown field {self.field!r}")
        if self.conversion not in CONVERSIONS:
            raise ValueError(f"{self.column}: unknown conversion {self.conversion!r}")


@dataclass(frozen=True)
class RegionalShape:
    region: str | None               # what silver's region says (None: not a region)
    format: str                      # how the region ships it (documentation)
    identity: str                    # the column that tells the shape apart
    aliases: tuple[Alias, ...]
    name: str = ""                   # in messages (default: the region)

    def __post_init__(self):
        if self.identity not in {a.column for a in self.aliases}:
            raise ValueError(f"{self.label}: the identity column must be mapped")

    @property
    def label(self) -> str:
        return self.name or self.region or self.identity


#: name → what it does; the functions are in transforms/server_metrics/regional.py.
CONVERSIONS = {
    "as_is": "the value unchanged (an identifier)",
    "number": "a number, unchanged",
    "fahrenheit_to_celsius": "°C = round((°F − 32) · 5/9, 1)",
    "kelvin_to_celsius": "°C = round(K − 273.15, 1)",
    "fraction_to_percent": "% = fraction · 100",
    "ist_to_utc": "a local time in India (UTC+05:30) without a zone → UTC; an explicit "
                  "zone is kept",
    "utc": "ISO 8601 in UTC (…Z)",
    "epoch_seconds": "seconds since 1970-01-01 UTC",
    "kilobits_to_kilobytes": "kB/s = kbit/s ÷ 8",
}

INDIA = RegionalShape(
    region="india", format="CSV", identity="server_code",
    aliases=(Alias("server_code", "server_id"),
             Alias("timestamp_ist", "timestamp", "ist_to_utc"),
             Alias("temp_celsius", "temperature_c", "number"),
             Alias("cpu_usage_percent", "cpu_usage", "number")))

USA = RegionalShape(
    region="usa", format="JSON lines", identity="instance_id",
    aliases=(Alias("instance_id", "server_id"),
             Alias("time_utc", "timestamp", "utc"),
             Alias("temp_fahrenheit", "temperature_c", "fahrenheit_to_celsius"),
             Alias("load_fraction", "cpu_usage", "fraction_to_percent"),
             Alias("voltage_v", "voltage_v", "number")))

GERMANY = RegionalShape(
    region="germany", format="Parquet", identity="node_name",
    aliases=(Alias("node_name", "server_id"),
             Alias("epoch_time", "timestamp", "epoch_seconds"),
             Alias("temp_kelvin", "temperature_c", "kelvin_to_celsius"),
             Alias("power_watts", "power_watts", "number")))

#: Seed 003's record: a real host read with psutil (``python -m generators host``). Not a
#: region: silver's region stays null. Load averages, disk usage, os and arch have no
#: canonical field yet and are kept in ``extra_fields``.
HOST = RegionalShape(
    region=None, name="host (seed 003)", format="JSON lines", identity="host",
    aliases=(Alias("host", "server_id"),
             Alias("timestamp", "timestamp", "epoch_seconds"),
             Alias("cpu", "cpu_usage", "number"),
             Alias("memory", "memory_usage", "number"),
             Alias("net_rx_kbps", "network_in", "kilobits_to_kilobytes"),
             Alias("net_tx_kbps", "network_out", "kilobits_to_kilobytes"),
             Alias("load1", "load_1m", "number"),
             Alias("load5", "load_5m", "number"),
             Alias("load15", "load_15m", "number"),
             Alias("disk_used_gb", "disk_used_gb", "number"),
             Alias("disk_used_pct", "disk_used_pct", "number"),
             Alias("os", "os"),
             Alias("arch", "arch")))

SHAPES = (INDIA, USA, GERMANY, HOST)
