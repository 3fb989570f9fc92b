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
from schemas.core import quoted as _q

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
    sql = f"INSERT INTO {table} ({', '.join(map(_q, names))}) VALUES ({values})"
    if not schema.key:
        return sql
    update = ", ".join(f"{_q(n)} = EXCLUDED.{_q(n)}" for n in names if n not in schema.key)
    sql += f" ON CONFLICT ({', '.join(map(_q, schema.key))}) DO UPDATE SET {update}"
    if "pane_index" in names:  # the latest pane wins; the same pane again is a no-op
        sql += f" WHERE {table}.pane_index <= EXCLUDED.pane_index"
    return sql


def retention_sql(pg_schema: str, schema: RecordSchema) -> str | None:
    field = schema.partition_field
    if not field:
        return None
    table = f"{pg_schema}.{schema.name}"
    return (f"DELETE FROM {table} WHERE {_q(field)} < "
            f"(SELECT max({_q(field)}) FROM {table}) - make_interval(secs => %s)")


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


def upsert_tables(tables: dict, schemas, batches, dsn: str, pg_schema: str,
                  retention_s: float | None) -> None:
    """``tables`` of these ``schemas`` → their PostgreSQL tables (``UpsertRowsFn``); the
    retention window applies to the hot tables only (records and dead letters stay)."""
    from beam_pipelines.io.sinks import as_rows
    from schemas.render import POSTGRES_TABLES

    hot = {s.name for s in POSTGRES_TABLES}
    rows = as_rows({s.name: tables[s.name] for s in schemas}, batches, prefix="Postgres")
    for schema in schemas:
        rows[schema.name] | f"Postgres{schema.label}" >> beam.ParDo(UpsertRowsFn(
            dsn, pg_schema, schema, retention_s if schema.name in hot else None))


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
        from schemas.render import POSTGRES_TABLES

        hot = [s for s in POSTGRES_TABLES if s.name in tables]
        upsert_tables(tables, hot, batches, self.dsn, self.pg_schema, self.retention_s)

    def describe(self) -> str:
        return f"hot tables in {where(self.dsn)} (schema {self.pg_schema})"


#: The layer tables of each pipeline, whose identities a run into PostgreSQL checks.
_LAYERS = {"server_metrics": ("server_metrics_bronze", "server_metrics_silver"),
           "web_logs": ("web_logs_bronze", "web_logs_silver")}


@dataclass(frozen=True)
class PostgresSink:
    """``--sink postgres``: every table of the pipeline in PostgreSQL, for deployments whose
    dashboards (seeds 001 and 003) read nothing else. Keyed tables are upserted (the latest
    pane wins, a replay changes nothing), the others appended; a batch run replaces its
    pipeline's rows, as it replaces its tables in the lakehouse; the retention window
    applies to the hot tables only (records and dead letters are kept)."""

    dsn: str
    pg_schema: str = "telemetry"
    retention_s: float | None = 7 * 86400

    name = "postgres"

    def check(self) -> None:
        from schemas.render import TABLES

        PostgresHotTables(self.dsn, self.pg_schema).check(TABLES)

    def clear(self, schemas, pipeline: str) -> None:
        """Before a batch run: the pipeline's rows of earlier runs go (the dead letters of
        the other pipeline stay)."""
        with connect(self.dsn) as con:
            for schema in schemas:
                table = f"{self.pg_schema}.{schema.name}"
                if "pipeline" in schema.names:
                    con.execute(f"DELETE FROM {table} WHERE pipeline = %s", (pipeline,))
                else:
                    con.execute(f"TRUNCATE {table}")

    def write(self, tables: dict, schemas, mode=None,
              batches: bool | frozenset = False) -> None:
        # Upserts are the same in either mode: a later pane replaces an earlier one.
        upsert_tables(tables, [s for s in schemas if s.name in tables], batches, self.dsn,
                      self.pg_schema, self.retention_s)

    def describe(self) -> str:
        return f"{where(self.dsn)} (schema {self.pg_schema})"

    def accounting(self, pipeline: str, input_records: int | None) -> str:
        """The run's identities, read back from PostgreSQL: input = bronze + its dead
        letters, bronze = silver + its dead letters (✓ or ✗)."""
        bronze_table, silver_table = _LAYERS[pipeline]
        with connect(self.dsn) as con:
            def count(sql: str, *params) -> int:
                return con.execute(sql.replace("T.", f"{self.pg_schema}."), params
                                   ).fetchone()[0]

            bronze = count(f"SELECT count(*) FROM T.{bronze_table}")
            silver = count(f"SELECT count(*) FROM T.{silver_table}")
            dead = {layer: count("SELECT count(*) FROM T.dead_letters WHERE pipeline = %s "
                                 "AND layer = %s", pipeline, layer)
                    for layer in ("bronze", "silver")}
        mark = lambda ok: "✓" if ok else "✗ MISMATCH"  # noqa: E731
        lines = ["", f"Records per layer (in {self.describe()})"]
        if input_records is not None:
            lines.append(f"  input   {input_records:>10,}")
            lines.append(f"  bronze  {bronze:>10,} accepted  + {dead['bronze']:>7,} dead "
                         f"letters   {mark(input_records == bronze + dead['bronze'])}")
        else:
            lines.append(f"  bronze  {bronze:>10,} accepted  + {dead['bronze']:>7,} dead "
                         "letters")
        lines.append(f"  silver  {silver:>10,} accepted  + {dead['silver']:>7,} dead "
                     f"letters   {mark(bronze == silver + dead['silver'])}")
        return "\n".join(lines)
