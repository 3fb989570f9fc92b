"""The DuckDB reference: one single-threaded SQL script doing what the batch medallion's
core does on the same file (bronze validation, silver ranges, vocabulary and dedupe, the
minute, hour, day and location gold tables), written to Parquet. It is the yardstick of
what a columnar engine does with the same work on one core.
"""
from __future__ import annotations

import os

import duckdb

from schemas.server_metrics import MEASUREMENT_FIELDS, SERVER_TYPES

_COLUMNS = ", ".join(
    [f"{name}: 'VARCHAR'" for name in ("server_id", "server_name", "server_type", "location",
                                         "timestamp")]
    + [f"{f.name}: 'DOUBLE'" for f in MEASUREMENT_FIELDS])


def _ranges() -> str:
    checks = []
    for f in MEASUREMENT_FIELDS:
        if f.minimum is not None:
            checks.append(f"({f.name} IS NULL OR {f.name} >= {f.minimum})")
        if f.maximum is not None:
            checks.append(f"({f.name} IS NULL OR {f.name} <= {f.maximum})")
    return " AND ".join(checks)


def _aggregates(quantiles: bool) -> str:
    cols = ["count(*) AS record_count"]
    for m in ("cpu_usage", "memory_usage"):
        cols += [f"min({m}) AS min_{m}", f"avg({m}) AS avg_{m}", f"max({m}) AS max_{m}"]
        if quantiles:
            cols += [f"quantile_cont({m}, [0.5, 0.95, 0.99]) AS q_{m}",
                     f"stddev_samp({m}) AS stddev_{m}"]
    cols += ["avg(disk_io) AS avg_disk_io", "sum(network_in) AS total_network_in",
             "sum(network_out) AS total_network_out", "avg(temperature_c) AS avg_temperature_c",
             "max(temperature_c) AS max_temperature_c", "avg(power_watts) AS avg_power_watts",
             "count(*) FILTER (WHERE is_high_utilization) AS high_utilization_count"]
    return ", ".join(cols)


def run_duckdb(path: str, output_dir: str) -> dict:
    os.makedirs(output_dir, exist_ok=True)
    types = ", ".join(f"'{t}'" for t in SERVER_TYPES)
    con = duckdb.connect()
    con.execute("SET threads = 1")
    # UTC, and plain timestamps: day buckets of a zoned timestamp take ICU's slow path.
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        CREATE TEMP TABLE bronze AS
        SELECT * EXCLUDE (timestamp), TRY_CAST(timestamp AS TIMESTAMPTZ)::TIMESTAMP AS ts
        FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
                       columns = {{{_COLUMNS}}})
        WHERE server_id IS NOT NULL AND TRY_CAST(timestamp AS TIMESTAMPTZ) IS NOT NULL""")
    con.execute(f"""
        CREATE TEMP TABLE silver AS
        SELECT trim(server_id) AS server_id, trim(server_name) AS server_name,
               lower(trim(server_type)) AS server_type, lower(trim(location)) AS location,
               ts, cpu_usage, memory_usage, disk_io, network_in, network_out, temperature_c,
               power_watts, (cpu_usage > 90 OR memory_usage > 90) AS is_high_utilization
        FROM bronze
        WHERE {_ranges()} AND (server_type IS NULL OR lower(trim(server_type)) IN ({types}))
        QUALIFY row_number() OVER (PARTITION BY server_id, ts ORDER BY cpu_usage,
                                   memory_usage) = 1""")
    counts = {"silver": con.execute("SELECT count(*) FROM silver").fetchone()[0]}
    identity = "server_id, server_name, server_type, location"
    for name, width, quantiles in (("minutely", "1 minute", False), ("hourly", "1 hour", True),
                                   ("daily", "1 day", True)):
        out = os.path.join(output_dir, f"{name}.parquet")
        con.execute(f"""
            COPY (SELECT {identity}, time_bucket(INTERVAL '{width}', ts) AS window_start,
                         {_aggregates(quantiles)}
                  FROM silver GROUP BY ALL) TO '{out}' (FORMAT parquet)""")
        counts[name] = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
    out = os.path.join(output_dir, "location.parquet")
    con.execute(f"""
        COPY (SELECT location, server_type, time_bucket(INTERVAL '1 day', ts) AS day,
                     count(DISTINCT server_id) AS server_count, {_aggregates(True)}
              FROM silver GROUP BY ALL) TO '{out}' (FORMAT parquet)""")
    con.execute(f"COPY silver TO '{os.path.join(output_dir, 'silver.parquet')}' "
                "(FORMAT parquet)")
    con.close()
    return counts
