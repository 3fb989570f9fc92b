"""The PostgreSQL hot tables (``--postgres-dsn``) against a real PostgreSQL 15 server,
started and stopped by the tests: DDL from the declarations, upserts that are idempotent
and keep the latest pane, the retention window, and both pipelines end to end."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import psycopg
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.postgres import UpsertRowsFn, ensure_tables
from schemas.render import POSTGRES_TABLES

ROOT = Path(__file__).resolve().parent.parent
BY_NAME = {s.name: s for s in POSTGRES_TABLES}
_PG_TYPES = {"STRING": "text", "INT64": "bigint", "FLOAT64": "double precision",
             "BOOL": "boolean", "TIMESTAMP": "timestamp with time zone", "DATE": "date",
             "BYTES": "bytea"}


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def rows(dsn: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(dsn) as con:
        return con.execute(sql, params).fetchall()


def test_the_hot_tables_are_made_from_the_declarations(postgres_server):
    schema = fresh_schema()
    ensure_tables(postgres_server.dsn, schema, POSTGRES_TABLES)
    ensure_tables(postgres_server.dsn, schema, POSTGRES_TABLES)  # idempotent
    for table in POSTGRES_TABLES:
        columns = rows(postgres_server.dsn,
                       "SELECT column_name, data_type, is_nullable FROM "
                       "information_schema.columns WHERE table_schema = %s AND "
                       "table_name = %s ORDER BY ordinal_position", schema, table.name)
        assert columns == [(f.name, _PG_TYPES[f.type.value], "NO" if f.required else "YES")
                           for f in table.fields], table.name
        assert table.key, f"{table.name} needs a key to be upserted"


def test_every_committed_postgres_file_runs_on_postgresql(postgres_server):
    """sql/postgres/ as a user would apply it by hand (psql -f), on the real server."""
    files = sorted((ROOT / "sql" / "postgres").glob("*.sql"))
    assert {f.stem for f in files} == set(BY_NAME)
    with psycopg.connect(postgres_server.dsn, autocommit=True) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS telemetry")
        for path in files:
            con.execute(path.read_text())
        assert con.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'telemetry' "
                           "AND indexname LIKE '%_key'").fetchone()[0] == len(files)


def _incident(pane: int, resolved=None, signals=3, started=datetime(2026, 1, 5, 10, 0,
                                                                   tzinfo=timezone.utc)):
    return {"incident_id": "i-1", "started_at": started, "fired_at": started,
            "resolved_at": resolved, "metric_date": started.date(), "pane_index": pane,
            "server_id": "s-1", "server_name": None, "server_type": "web",
            "location": None, "severity": "warning", "families": "threshold",
            "rules": "high_cpu", "signal_count": signals, "last_signal_at": started}


def _upsert(dsn: str, schema: str, elements, retention_s=None) -> None:
    with beam.Pipeline(runner="FnApiRunner") as p:
        (p | beam.Create(elements, reshuffle=False)
         | beam.ParDo(UpsertRowsFn(dsn, schema, BY_NAME["alert_incidents"], retention_s)))


def test_the_latest_pane_wins_and_a_replay_changes_nothing(postgres_server):
    dsn, schema = postgres_server.dsn, fresh_schema()
    ensure_tables(dsn, schema, POSTGRES_TABLES)
    resolved = datetime(2026, 1, 5, 11, 0, tzinfo=timezone.utc)
    table = f"{schema}.alert_incidents"
    _upsert(dsn, schema, [_incident(0), _incident(2, resolved, signals=9)])
    _upsert(dsn, schema, [_incident(1, signals=5)])  # an earlier pane, late: ignored
    assert rows(dsn, f"SELECT pane_index, resolved_at, signal_count FROM {table}") == \
        [(2, resolved, 9)]
    _upsert(dsn, schema, [_incident(2, resolved, signals=9)])  # the same pane again
    assert rows(dsn, f"SELECT pane_index, signal_count FROM {table}") == [(2, 9)]
    # null key columns (server_name, location) still meet the same row
    assert rows(dsn, f"SELECT count(*) FROM {table}") == [(1,)]


def test_the_retention_window_follows_the_newest_row(postgres_server):
    dsn, schema = postgres_server.dsn, fresh_schema()
    ensure_tables(dsn, schema, POSTGRES_TABLES)
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    incidents = [_incident(0, started=day + timedelta(days=d))
                 | {"server_id": f"s-{d}", "incident_id": f"s-{d}/{d}"} for d in range(10)]
    _upsert(dsn, schema, incidents, retention_s=3 * 86400)
    kept = rows(dsn, f"SELECT metric_date FROM {schema}.alert_incidents ORDER BY 1")
    # metric_date within 3 days of the newest (Jan 10): Jan 7 to Jan 10
    assert [d for (d,) in kept] == [(day + timedelta(days=d)).date() for d in range(6, 10)]


def _lakehouse(out: Path, sql: str) -> list[tuple]:
    with connect_catalog(out) as con:
        return con.execute(sql).fetchall()


def _as_set(table_rows) -> set:
    def norm(v):
        if isinstance(v, float):
            return round(v, 6)
        if isinstance(v, datetime):
            return v.astimezone(timezone.utc)
        return v
    return {tuple(norm(v) for v in row) for row in table_rows}


def test_both_pipelines_keep_the_hot_tables_equal_to_the_lakehouse(postgres_server, tmp_path):
    """Batch, twice over the same input: the hot tables hold the lakehouse's latest rows,
    and the second run changes none of them."""
    dsn, schema = postgres_server.dsn, fresh_schema()
    hot = ("--postgres-dsn", dsn, "--postgres-schema", schema, "--postgres-retention", "0",
           "--output-dir", str(tmp_path), "--no-summary")
    runs = [("--sample-servers", "4", "--sample-duration", "1h"),
            ("logs", "--sample-duration", "5m")]
    for args in runs:
        proc = run_cli(*args, *hot)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "hot tables in PostgreSQL 127.0.0.1" in proc.stdout
    before = {}
    for table in POSTGRES_TABLES:
        columns = ", ".join(table.names)
        in_pg = rows(dsn, f"SELECT {columns} FROM {schema}.{table.name}")
        assert in_pg, table.name
        assert _as_set(in_pg) == _as_set(_lakehouse(tmp_path, f"SELECT {columns} FROM "
                                                              f"{table.name}")), table.name
        before[table.name] = _as_set(in_pg)
    proc = run_cli(*runs[0], *hot)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for table in POSTGRES_TABLES:
        assert _as_set(rows(dsn, f"SELECT {', '.join(table.names)} FROM "
                                 f"{schema}.{table.name}")) == before[table.name]


def test_streaming_upserts_each_pane_as_it_fires(postgres_server, tmp_path):
    dsn, schema = postgres_server.dsn, fresh_schema()
    proc = run_cli("--streaming", "--run-for", "10s", "--sample-servers", "3",
                   "--postgres-dsn", dsn, "--postgres-schema", schema,
                   "--output-dir", str(tmp_path), "--no-summary", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = BY_NAME["server_metrics_minutely"]
    columns = ", ".join(table.names)
    in_pg = rows(dsn, f"SELECT {columns} FROM {schema}.{table.name}")
    assert in_pg
    # one row per key, the latest pane: what the lakehouse view shows
    assert _as_set(in_pg) == _as_set(_lakehouse(tmp_path, f"SELECT {columns} FROM "
                                                          f"{table.name}"))


@pytest.mark.parametrize("args, message", [
    (["--postgres-dsn", "postgresql://nobody@127.0.0.1:1/none"],
     "--postgres-dsn: PostgreSQL 127.0.0.1:1/none: "),
    (["--postgres-dsn", "postgresql://x@127.0.0.1/db", "--postgres-schema", "Bad-Name"],
     "--postgres-schema 'Bad-Name': lowercase letters"),
    (["--sink", "postgres"], "--sink postgres needs --postgres-dsn"),
])
def test_a_postgres_mistake_is_one_line_and_exit_2(args, message, tmp_path, mistake):
    assert message in mistake("--output-dir", str(tmp_path), *args)


def test_every_table_can_live_in_postgresql_alone(postgres_server, tmp_path):
    """``--sink postgres``: no lakehouse; every table in PostgreSQL, the run's identities
    read back from there (a second run replaces the first's rows), and gold equal to a
    lakehouse run over the same sample."""
    dsn, schema = postgres_server.dsn, fresh_schema()
    sample = ("--sample-servers", "3", "--sample-duration", "1h")
    args = ("--sink", "postgres", "--postgres-dsn", dsn, "--postgres-schema", schema,
            "--output-dir", str(tmp_path / "pg"))
    for _ in range(2):
        proc = run_cli(*sample, *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("✓") == 2 and "MISMATCH" not in proc.stdout, proc.stdout
        assert "Done: the tables are in PostgreSQL 127.0.0.1" in proc.stdout
    assert not (tmp_path / "pg" / "lakehouse.duckdb").exists()
    input_records = int(re.search(r"input\s+([\d,]+)", proc.stdout).group(1).replace(",", ""))
    bronze = rows(dsn, f"SELECT count(*) FROM {schema}.server_metrics_bronze")[0][0]
    dead = rows(dsn, f"SELECT count(*) FROM {schema}.dead_letters WHERE layer = 'bronze'")
    assert bronze + dead[0][0] == input_records  # once, not twice
    lake = tmp_path / "lake"
    assert run_cli(*sample, "--output-dir", str(lake), "--no-summary").returncode == 0
    for table in ("hourly_server_metrics", "alert_incidents", "server_metrics_silver"):
        columns = ", ".join(n for n in BY_NAME.get(table, _schema_of(table)).names
                            if n not in ("ingest_timestamp", "processing_delay_ms", "source"))
        assert _as_set(rows(dsn, f"SELECT {columns} FROM {schema}.{table}")) == \
            _as_set(_lakehouse(lake, f"SELECT {columns} FROM {table}")), table


def _schema_of(name: str):
    from schemas.render import TABLES

    return next(t for t in TABLES if t.name == name)
