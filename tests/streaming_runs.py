"""Streaming runs driven by the tests as an operator would: wait for what they have
written, read from the Parquet files renamed into place so far (what a query or a kill
sees), then stop them with SIGTERM, which drains."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import duckdb
import pytest


def wait_for(proc, condition, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before {what}: {out[-1500:]} {err[-1500:]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout_s}s"
        time.sleep(0.1)


def drain_once(proc, condition, what: str) -> tuple[str, str]:
    """Wait for ``condition``, then stop the run (SIGTERM drains: every window closes and
    the summary is checked): a run as long as its work, not a fixed time."""
    wait_for(proc, condition, what, timeout_s=180)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=240)


def _files(out: Path, *tables: str) -> list[str]:
    return [str(f) for table in tables for f in (out / table).glob("**/part-*.parquet")]


def written_rows(out: Path, layer: str, table: str, where: str = "true") -> int:
    """Rows (``where`` holds) of ``layer/table`` in the files in place so far."""
    files = _files(out, f"{layer}/{table}")
    if not files:
        return 0
    with duckdb.connect() as con:
        return con.execute(f"select count(*) from read_parquet(?, hive_partitioning=false, "
                           f"union_by_name=true) where {where}", [files]).fetchone()[0]


def events_with_an_outcome(out: Path, silver: str = "server_metrics_silver") -> int:
    """Events with an outcome in the files in place so far: a silver row, or a dead letter
    (not counting a redelivery's)."""
    files = _files(out, f"silver/{silver}", "dead_letter/dead_letters")
    if not files:
        return 0
    with duckdb.connect() as con:
        return con.execute(
            "select count(distinct split_part(source, '#', 2)) from read_parquet(?, "
            "hive_partitioning=false, union_by_name=true) where reason is null or "
            "reason <> 'redelivered'", [files]).fetchone()[0]
