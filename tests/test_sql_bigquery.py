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
#: Every BigQuery SQL file (sql/postgres/ is PostgreSQL's: test_postgres runs it there).
FILES = sorted(f for f in glob.glob(os.path.join(ROOT, "sql", "**", "*.sql"), recursive=True)
               if os.sep + "postgres" + os.sep not in f)
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


def _merges():
    by_name = {schema.name: schema for schema in WAREHOUSE_TABLES}
    for path in FILES:
        for statement in _parse(path):
            if isinstance(statement, exp.Merge):
                target = statement.this
                table = target.find(exp.Table) if not isinstance(target, exp.Table) else target
                yield path, statement, by_name[table.name], target.alias_or_name


def test_every_merge_that_deletes_prunes_the_targets_partitions():
    """A scheduled MERGE runs every 15 minutes: its DELETE must filter on the column the
    target is partitioned by, or each run scans the table's whole history."""
    merges = list(_merges())
    assert len(merges) >= 8
    missing = []
    for path, merge, schema, alias in merges:
        for when in merge.args["whens"].expressions:
            if not isinstance(when.args.get("then"), exp.Var) or \
                    when.args["then"].name.upper() != "DELETE":
                continue
            condition = when.args.get("condition")
            columns = {(c.table, c.name) for c in condition.find_all(exp.Column)} \
                if condition else set()
            if (alias, schema.partition_field) not in columns:
                missing.append(f"{os.path.relpath(path, ROOT)}: DELETE without "
                               f"{alias}.{schema.partition_field}")
    assert not missing, missing


def test_the_scheduled_cycle_is_one_bigquery_script_silver_first():
    from beam_pipelines.bigquery import scheduled
    from beam_pipelines.bigquery.warehouse import Warehouse

    script = scheduled.cycle_script(Warehouse("my-project", "acme"))
    statements = [s for s in sqlglot.parse(script, read="bigquery") if s is not None]
    targets = [s.this.find(exp.Table).name if not isinstance(s.this, exp.Table)
               else s.this.name for s in statements]
    assert len(statements) == len(scheduled.query_files())
    assert targets[:2] == ["server_metrics_silver", "scheduled_dead_letters"]
