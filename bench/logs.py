"""The web-log medallion against two references measured in the same run on the same file:
the per-record medallion (the naive baseline) and a single-threaded DuckDB script that
parses the lines with a regular expression and computes the per-minute country and status
tables (``bench/logs_duckdb.py``). Each run is a process of its own, with its peak memory.

Two shapes of site: a busy one (500 requests/s, so an hour holds 1.8M lines) and a small
one (20 requests/s: fewer lines per window and per span, more windows per line). The
target is checked and printed ✓ or ✗.
"""
from __future__ import annotations

import os

from beam_pipelines.catalog import connect as connect_catalog
from bench.metrics import _child, _mark

STAGES = ("bronze_in", "bronze_fragments", "spans")


def generate(workdir: str, lines: int, rate_per_s: float) -> str:
    from generators.weblogs import WebLogConfig, WebLogGenerator
    from generators.writers import write_lines

    path = os.path.join(workdir, f"access_{rate_per_s:g}rps_{lines}.log")
    generator = WebLogGenerator(WebLogConfig(count=lines, rate_per_s=rate_per_s, seed=4,
                                             malformed_rate=0.01, duplicate_rate=0.005,
                                             late_rate=0.005))
    write_lines(generator, generator.render(), path)
    return path


def _check_accounting(out: str, lines: int) -> None:
    """Every line of the file ended in bronze or a bronze dead letter, every bronze row in
    silver or a silver dead letter: a fast run that lost lines would be no figure."""

    from beam_pipelines.io.lakehouse import write_catalog
    from beam_pipelines.web_logs import TABLES

    with connect_catalog(write_catalog(out, TABLES)) as con:
        one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
        bronze, silver = one("select count(*) from web_logs_bronze"), one(
            "select count(*) from web_logs_silver")
        dead = dict(con.execute("select layer, count(*) from dead_letters group by all"
                                ).fetchall())
    assert bronze + dead.get("bronze", 0) == lines, (bronze, dead, lines)
    assert silver + dead.get("silver", 0) == bronze, (silver, dead, bronze)


def bench_logs_pipelines(workdir: str, lines: int, with_rows: bool = True) -> dict:
    results: dict = {}
    print(f"web-log medallion, {lines:,} lines (one worker = FnApiRunner, one process)",
          flush=True)
    print(f"  {'site':>9} {'run':<12} {'lines/s':>10} {'peak MiB':>9}", flush=True)
    for rate in (500.0, 20.0):
        data = generate(workdir, lines, rate)
        with open(data, "rb") as fh:
            written = sum(1 for _ in fh)
        tag = f"logs_{rate:g}rps"
        runs = {"beam": _child("logs", data, os.path.join(workdir, f"{tag}_beam")),
                "duckdb": _child("logs-duckdb", data, os.path.join(workdir, f"{tag}_duckdb"))}
        if with_rows and rate == 500.0:
            runs["per_record"] = _child("logs-rows", data, os.path.join(workdir, f"{tag}_rows"))
        _check_accounting(os.path.join(workdir, f"{tag}_beam"), written)
        for name, run in runs.items():
            speed = written / run["seconds"]
            results[f"{tag}_{name}_lines_per_s"] = speed
            results[f"{tag}_{name}_peak_mib"] = run["peak_mib"]
            print(f"  {rate:>5g} r/s {name:<12} {speed:>10,.0f} {run['peak_mib']:>9,.0f}",
                  flush=True)
        stages = runs["beam"].get("stages", {})
        per_element = []
        for stage in STAGES:
            elements, rows = stages.get(f"{stage}_elements"), stages.get(f"{stage}_records")
            if elements and rows:
                results[f"{tag}_{stage}_records_per_element"] = rows / elements
                per_element.append(f"{stage} {rows / elements:,.0f}")
        print(f"  records per element ({rate:g} r/s): {', '.join(per_element)}", flush=True)
    checks = []
    for rate in (500.0, 20.0):
        tag = f"logs_{rate:g}rps"
        checks.append((f"pipeline / DuckDB at {rate:g} r/s",
                       results[f"{tag}_beam_lines_per_s"] / results[f"{tag}_duckdb_lines_per_s"],
                       0.5))
    if with_rows:
        checks.append(("pipeline / per-record medallion at 500 r/s",
                       results["logs_500rps_beam_lines_per_s"]
                       / results["logs_500rps_per_record_lines_per_s"], 3.0))
    for label, value, target in checks:
        ok = value >= target
        results[f"target_{label}"] = {"value": value, "target": f"≥ {target:g}", "met": ok}
        print(f"  {_mark(ok)} {label}: {value:,.2f} (target ≥ {target:g})", flush=True)
    return results
