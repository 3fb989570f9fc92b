"""The web-log benchmark's DuckDB reference computes what the pipeline computes for the
tables it covers (requests, bytes and errors per minute by country and by status), so
their ratio compares like with like."""
from __future__ import annotations

import duckdb

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.lakehouse import write_catalog
from beam_pipelines.web_logs import TABLES
from bench.logs import _check_accounting
from bench.logs_duckdb import run_logs_duckdb
from bench.worker import run_logs_beam
from generators.weblogs import WebLogConfig, WebLogGenerator
from generators.writers import write_lines

_SUMS = "sum(requests), sum(bytes), sum(errors_4xx), sum(errors_5xx)"


def test_the_duckdb_reference_counts_what_the_pipeline_counts(tmp_path):
    path = str(tmp_path / "access.log")
    generator = WebLogGenerator(WebLogConfig(count=4_000, rate_per_s=30, seed=8))
    write_lines(generator, generator.render(), path)
    counts = run_logs_duckdb(path, str(tmp_path / "duckdb"))
    run_logs_beam(path, str(tmp_path / "beam"))
    _check_accounting(str(tmp_path / "beam"), 4_000)
    assert counts["parsed"] == 4_000
    with connect_catalog(write_catalog(str(tmp_path / "beam"), TABLES)) as con:
        for table, dims in (("web_traffic_by_country", "country_code, country"),
                            ("web_traffic_by_status", "status")):
            ours = con.execute(
                f"select window_start::timestamp, {dims}, {_SUMS} from {table} "
                "where granularity = 'minute' group by all order by all").fetchall()
            theirs = duckdb.execute(
                f"select window_start, {dims}, {_SUMS} from "
                f"'{tmp_path}/duckdb/{table}.parquet' group by all order by all").fetchall()
            assert ours == theirs and len(ours) >= 10, table


def test_the_per_record_baseline_writes_the_same_tables_with_named_dead_letters(tmp_path):
    """The naive baseline (the row-level medallion) runs to the end, its dead letters
    stamped with the pipeline like every run's, and accounts for every line."""
    path = str(tmp_path / "access.log")
    generator = WebLogGenerator(WebLogConfig(count=600, rate_per_s=30, seed=9,
                                             malformed_rate=0.05))
    write_lines(generator, generator.render(), path)
    run_logs_beam(path, str(tmp_path / "rows"), batches=False)
    _check_accounting(str(tmp_path / "rows"), 600)
    with connect_catalog(write_catalog(str(tmp_path / "rows"), TABLES)) as con:
        names = con.execute("select distinct pipeline from dead_letters").fetchall()
    assert names == [("web_logs",)]
