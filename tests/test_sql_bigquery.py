"""Every SQL file as the real BigQuery reads it. The emulator runs on DuckDB and accepts
what BigQuery rejects, so each file is also parsed with sqlglot's BigQuery dialect, and
constructs BigQuery refuses that a parse lets through are looked for explicitly."""
from __future__ import annotations

import glob
import os
import string

import pytest
import sqlglot
from sqlglot import exp

from beam_pipelines.bigquery.admin import WAREHOUSE_TABLES
from schemas.core import FieldType

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, "sql", "**", "*.sql"), recursive=True))
IDS = {layer: f"my-project.telemetry_{layer}"
       for layer in ("bronze", "silver", "gold", "ops", "reporting")}
#: Columns declared FLOAT64 in every table the SQL reads.
FLOATS = {f.name for schema in WAREHOUSE_TABLES for f in schema.fields
          if f.type == FieldType.FLOAT64}


def _parse(path: str) -> list[exp.Expression]:
    with open(path, encoding="utf-8") as fh:
        text = string.Template(fh.read()).substitute(IDS)
    return [s for s in sqlglot.parse(text, read="bigquery") if s is not None]


def test_there_is_sql_to_check():
    assert len(FILES) > 20 and {"latitude", "longitude", "cpu_usage"} <= FLOATS


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, ROOT) for p in FILES])
def test_every_statement_parses_as_bigquery(path):
    assert _parse(path), path


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, ROOT) for p in FILES])
def test_no_window_is_partitioned_by_a_float64_column(path):
    """"Partitioning by expressions of type FLOAT64 is not allowed"."""
    for statement in _parse(path):
        for window in statement.find_all(exp.Window):
            for part in window.args.get("partition_by") or ():
                if isinstance(part, exp.Column):
                    assert part.name not in FLOATS, f"{path}: PARTITION BY {part.sql()}"


def test_the_float64_check_can_fail():
    bad = sqlglot.parse_one("SELECT ROW_NUMBER() OVER (PARTITION BY latitude) FROM t",
                            read="bigquery")
    parts = [p for w in bad.find_all(exp.Window) for p in w.args["partition_by"]]
    assert [p.name for p in parts if isinstance(p, exp.Column)] == ["latitude"]
    with pytest.raises(sqlglot.errors.ParseError):
        sqlglot.parse("SELECT 'the rules file''s'", read="bigquery")
