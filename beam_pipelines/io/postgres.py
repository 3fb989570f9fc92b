"""The PostgreSQL hot tables (``--postgres-dsn``): what a live dashboard or an on-call tool
reads with plain SQL, kept current by upserts, beside the main sink.

The hot tables are ``schemas.render.POSTGRES_TABLES`` (minute summaries, daily health,
alerts, incidents, web traffic by status and country), created from the same schema
declarations as every other sink (``sql/postgres/`` shows the DDL). A row replaces the
row with the same key when its pane is the same or later, so a replay, a retried bundle or
a second run changes nothing, and a late pane never goes back to an earlier one. Each
bundle's rows are written in one transaction before the bundle completes: a failure fails
the bundle, which the runner retries. The retention window deletes rows older than the
newest row of the table minus ``--postgres-retention``: relative to the data, so a replay
of old data keeps its last days instead of deleting everything.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam

from beam_pipelines.errors import UserError
from schemas.core import RecordSchema

#: How often a writer applies the retention window (its first bundle always does).
RETENTION_EVERY_S = 60.0


def connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, connect_timeout=10)


def where(dsn: str) -> str:
    """The server and database of a DSN, without its password (for messages)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - psycopg's own parse error, shown by check()
        return "PostgreSQL"
    host = info.get("host") or "localhost"
    return f"PostgreSQL {host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _names(schema: RecordSchema) -> tuple[str, ...]:
    return tuple(f.name for f in schema.fields)


def upsert_sql(pg_schema: str, schema: RecordSchema) -> str:
    names = _names(schema)
    table = f"{pg_schema}.{schema.name}"
    values = ", ".join(["%s"] * len(names))
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({values})"
    if not schema.key:
        return sql
    update = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in schema.key)
    sql += f" ON CONFLICT ({', '.join(schema.key)}) DO UPDATE SET {update}"
    if "pane_index" in names:  # the latest pane wins; the same pane again is a no-op
        sql += f" WHERE {table}.pane_index <= EXCLUDED.pane_index"
    return sql


def retention_sql(pg_schema: str, schema: RecordSchema) -> str | None:
    field = schema.partition_field
    if not field:
        return None
    table = f"{pg_schema}.{schema.name}"
    return (f"DELETE FROM {table} WHERE {field} < "
            f"(SELECT max({field}) FROM {table}) - make_interval(secs => %s)")


def ensure_tables(dsn: str, pg_schema: str, schemas) -> None:
    """The schema and every hot table (idempotent)."""
    with connect(dsn) as con:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {pg_schema}")
        for schema in schemas:
            con.execute(schema.postgres_ddl(pg_schema))


class UpsertRowsFn(beam.DoFn):
    """Rows of one hot table → upserted in one transaction per bundle, then the retention
    window applied."""

    def __init__(self, dsn: str, pg_schema: str, schema: RecordSchema,
                 retention_s: float | None):
        self._dsn = dsn
        self._pg_schema = pg_schema
        self._schema = schema
        self._retention_s = retention_s

    def setup(self):
        self._con = connect(self._dsn)
        self._upsert = upsert_sql(self._pg_schema, self._schema)
        self._retain = retention_sql(self._pg_schema, self._schema) \
            if self._retention_s else None
        self._fields = _names(self._schema)
        self._trimmed = float("-inf")

    def start_bundle(self):
        self._rows = []

    def process(self, row):
        self._rows.append(tuple(row.get(n) for n in self._fields))

    def finish_bundle(self):
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        with self._con.transaction(), self._con.cursor() as cur:
            cur.executemany(self._upsert, rows)
            # a streaming run writes a bundle every few seconds: trimming once a minute
            # is as good and spares a scan of the table's newest row each time
            now = time.monotonic()
            if self._retain and now - self._trimmed >= RETENTION_EVERY_S:
                cur.execute(self._retain, (self._retention_s,))
                self._trimmed = now
        beam.metrics.Metrics.counter("postgres", f"{self._schema.name}_rows").inc(len(rows))

    def teardown(self):
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()


@dataclass(frozen=True)
class PostgresHotTables:
    dsn: str
    pg_schema: str = "telemetry"
    retention_s: float | None = 7 * 86400

    def check(self, schemas) -> None:
        """Fail fast, one line: the server answers and every hot table exists."""
        import psycopg

        try:
            ensure_tables(self.dsn, self.pg_schema, schemas)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--postgres-dsn: {where(self.dsn)}: {first}") from None

    def write(self, tables: dict, schemas, batches=False) -> None:
        """The hot tables among ``tables`` (the rest are the main sink's alone)."""
        from beam_pipelines.io.sinks import as_rows
        from schemas.render import POSTGRES_TABLES

        hot = {s.name: s for s in POSTGRES_TABLES if s.name in tables}
        rows = as_rows({name: tables[name] for name in hot}, batches, prefix="Postgres")
        for name, pcoll in rows.items():
            pcoll | f"Postgres{hot[name].label}" >> beam.ParDo(UpsertRowsFn(
                self.dsn, self.pg_schema, hot[name], self.retention_s))

    def describe(self) -> str:
        return f"hot tables in {where(self.dsn)} (schema {self.pg_schema})"
