"""The local lakehouse sink (the embedded default): Parquet per table, DuckDB views.

Layout: ``<output-dir>/<layer>/<table>/part-*.parquet`` and ``<output-dir>/lakehouse.duckdb``
holding one view per table, so ``duckdb <output-dir>/lakehouse.duckdb "select * from
server_health_summary"`` works. A run replaces the tables of its output directory.
"""
from __future__ import annotations

import glob
import os

import apache_beam as beam

from schemas.core import RecordSchema

CATALOG = "lakehouse.duckdb"


def table_dir(output_dir: str, schema: RecordSchema) -> str:
    return os.path.join(output_dir, schema.layer, schema.name)


class WriteLakehouseTable(beam.PTransform):
    def __init__(self, output_dir: str, schema: RecordSchema):
        super().__init__()
        self._output_dir = output_dir
        self._schema = schema

    def expand(self, rows):
        return rows | "WriteParquet" >> beam.io.WriteToParquet(
            os.path.join(table_dir(self._output_dir, self._schema), "part"),
            schema=self._schema.arrow_schema(),
            file_name_suffix=".parquet",
        )


def is_local(path: str) -> bool:
    return "://" not in path


def clear_tables(output_dir: str, schemas) -> None:
    """Remove the previous run's files of these tables (and nothing else)."""
    for schema in schemas:
        for path in glob.glob(os.path.join(table_dir(output_dir, schema), "part-*.parquet")):
            os.remove(path)


def write_catalog(output_dir: str, schemas) -> str:
    """(Re)create the DuckDB file with one view per table; returns its path."""
    import duckdb

    path = os.path.join(output_dir, CATALOG)
    with duckdb.connect(path) as con:
        for schema in schemas:
            files = os.path.join(os.path.abspath(table_dir(output_dir, schema)), "*.parquet")
            con.execute(f"CREATE OR REPLACE VIEW {schema.name} AS "
                        f"SELECT * FROM read_parquet('{files.replace(chr(39), chr(39) * 2)}')")
    return path
