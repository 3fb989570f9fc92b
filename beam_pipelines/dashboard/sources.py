"""Where the dashboard reads: the local lakehouse or a BigQuery warehouse, one interface.

Every query the dashboard runs is written once, in BigQuery's dialect, against the same
datasets the SQL of ``sql/`` names (``${reporting}``, ``${gold}``, ``${silver}``,
``${ops}``). On BigQuery those are the warehouse's datasets and the Looker Studio report's
reporting views. Locally the same reporting views are made from the same files in an
in-memory DuckDB, over the lakehouse's own catalog views, and each query is translated
to DuckDB's dialect by sqlglot. So the dashboard and the report cannot disagree about
what a figure means.

The lakehouse's ``lakehouse.duckdb`` is opened read-only and only long enough to copy
its view definitions: a running pipeline rewrites that file when it finishes, and DuckDB
lets one process write a file only when no other holds it. Its views read the Parquet
folders with a glob, so every query sees the files a streaming run has written since.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import time

from beam_pipelines.catalog import CATALOG, search_path_sql
from beam_pipelines.errors import UserError
from beam_pipelines.sql_files import render_sql, reporting_view_files
from schemas.dead_letter import SQL_ONLY_TABLES

#: What ``${...}`` names in the in-memory DuckDB: the catalog's views live in ``main``.
_LOCAL_DATASETS = {"bronze": "main", "silver": "main", "gold": "main", "ops": "main",
                   "reporting": "reporting", "project": "local"}


@functools.lru_cache(maxsize=512)
def _bigquery_to_duckdb(sql: str) -> str:
    """BigQuery SQL in DuckDB's dialect (cached: the live page asks again and again)."""
    import sqlglot

    # OPTIONS(description=...) has no DuckDB counterpart: dropped, as intended.
    return sqlglot.transpile(sql, read="bigquery", write="duckdb",
                             unsupported_level=sqlglot.ErrorLevel.IGNORE)[0]


class LakehouseSource:
    """The lakehouse a local run wrote (``--output-dir``, default ``lakehouse``)."""

    kind = "lakehouse"

    def __init__(self, directory: str, attempts: int = 20):
        import duckdb

        self.directory = os.path.abspath(directory)
        catalog = os.path.join(self.directory, CATALOG)
        if not os.path.exists(catalog):
            raise UserError(f"no lakehouse at {directory}: {CATALOG} is missing (run "
                            "`python -m run` first, or point --lakehouse at its folder)")
        views = self._catalog_views(catalog, attempts)
        self.tables = {name for name, _ in views}
        self.con = duckdb.connect(":memory:")
        # DuckDB 1.5.6 fails with an internal error on a date range over the reporting
        # views (ROW_NUMBER() = 1 per key, then DATE(window_start) BETWEEN ...) when it
        # rewrites that pattern into a top-N; without the rewrite the results are equal.
        self.con.execute("SET disabled_optimizers = 'top_n_window_elimination'")
        self.con.execute("SET TimeZone = 'UTC'")  # timestamps come back in UTC
        self.con.execute(search_path_sql(self.directory))  # the views' relative paths
        for _, sql in views:
            self.con.execute(sql)
        for schema in SQL_ONLY_TABLES:  # so the reporting views over them work here too
            if schema.name not in self.tables:
                self.con.register(schema.name, schema.arrow_schema().empty_table())
        self.con.execute("CREATE SCHEMA reporting")
        self.missing_views: dict[str, str] = {}
        for path in reporting_view_files():
            try:
                self.con.execute(_bigquery_to_duckdb(
                    render_sql(path.read_text(), _LOCAL_DATASETS)))
            except duckdb.Error as exc:  # a view over a table this lakehouse lacks
                self.missing_views[path.stem] = str(exc).splitlines()[0]
        self.label = f"lakehouse {directory}"

    @staticmethod
    def _catalog_views(catalog: str, attempts: int) -> list[tuple[str, str]]:
        """The catalog's view definitions; retried while a finishing run holds the file."""
        import duckdb

        for attempt in range(attempts):
            try:
                with duckdb.connect(catalog, read_only=True) as con:
                    return con.execute("SELECT view_name, sql FROM duckdb_views() "
                                       "WHERE NOT internal ORDER BY view_name").fetchall()
            except duckdb.IOException:
                if attempt == attempts - 1:
                    raise UserError(f"{catalog} stays locked by another process") from None
                time.sleep(0.25)
        return []

    def has(self, table: str) -> bool:
        return table in self.tables

    def query(self, sql: str, **params):
        """Rows of a BigQuery-dialect query as a pandas DataFrame."""
        local = _bigquery_to_duckdb(render_sql(sql, _LOCAL_DATASETS))
        used = {k: v for k, v in params.items() if f"${k}" in local}
        return self.con.execute(local, used).df()

    def close(self) -> None:
        self.con.close()


class BigQuerySource:
    """A BigQuery warehouse (or the BigQuery emulator when ``BIGQUERY_EMULATOR_HOST`` is
    set): the reporting views the Looker Studio report reads, and the gold tables."""

    kind = "bigquery"

    def __init__(self, project: str, prefix: str = "telemetry"):
        from beam_pipelines.bigquery.emulator import client
        from beam_pipelines.bigquery.warehouse import Warehouse

        self.warehouse = Warehouse(project=project, prefix=prefix)
        self.client = client(project)
        self.identifiers = self.warehouse.identifiers()
        self.tables = self._tables()
        self.missing_views = {}
        self.label = f"BigQuery {project}, datasets {prefix}_*"

    def _tables(self) -> set[str]:
        from google.api_core import exceptions

        from beam_pipelines.bigquery.admin import api_error

        names = set()
        for layer in ("bronze", "silver", "gold", "ops"):
            try:
                names |= {t.table_id for t in
                          self.client.list_tables(self.identifiers[layer])}
            except exceptions.NotFound:
                continue
            except exceptions.GoogleAPICallError as exc:
                raise api_error(exc) from None
        return names

    def has(self, table: str) -> bool:
        return table in self.tables

    def query(self, sql: str, **params):
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=[
            bigquery.ScalarQueryParameter(name, _bigquery_type(value), value)
            for name, value in params.items() if f"@{name}" in sql])
        import pandas as pd

        rows = self.client.query(render_sql(sql, self.identifiers), job_config=config).result()
        frame = pd.DataFrame([tuple(r.values()) for r in rows],
                             columns=[f.name for f in rows.schema])
        # the same column types as DuckDB gives the lakehouse source
        for f in rows.schema:
            if f.field_type in ("TIMESTAMP", "DATETIME", "DATE"):
                frame[f.name] = pd.to_datetime(frame[f.name],
                                               utc=f.field_type == "TIMESTAMP")
            elif f.field_type in ("FLOAT", "FLOAT64", "NUMERIC"):
                frame[f.name] = frame[f.name].astype("float64")
        return frame

    def close(self) -> None:
        self.client.close()


def _bigquery_type(value) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    return "STRING"


def open_source(lakehouse: str | None = None, bigquery_project: str | None = None,
                prefix: str = "telemetry"):
    """The source the command line names: BigQuery when a project is given."""
    if bigquery_project:
        return BigQuerySource(bigquery_project, prefix)
    return LakehouseSource(lakehouse or "lakehouse")
