"""The lakehouse's DuckDB catalog: ``<lakehouse>/lakehouse.duckdb``, one view per table.

The views name their Parquet folders relative to the lakehouse (``silver/<table>/**/*.parquet``)
so the folder can be moved or copied whole and still be queried. DuckDB resolves such a
path against ``file_search_path`` (by default the working directory): :func:`connect` sets
it to the lakehouse; by hand, query from inside the folder
(``cd lakehouse && duckdb lakehouse.duckdb``) or say where it is
(``duckdb -cmd "SET file_search_path='lakehouse'" lakehouse/lakehouse.duckdb``).

No Beam here: the dashboard, the summary and the tests open the catalog too.
"""
from __future__ import annotations

import os

CATALOG = "lakehouse.duckdb"

#: A DuckDB scan of a list of table files (the parameter). The partition folders'
#: ``date=...`` names are not read as a column: each table has its partition field already.
READ_FILES = "read_parquet(?, hive_partitioning = false)"


def catalog_path(lakehouse: str) -> str:
    return os.path.join(str(lakehouse), CATALOG)


def lakehouse_of(path) -> str:
    """The lakehouse folder of ``path``: the folder itself or its catalog file."""
    path = str(path)
    return os.path.dirname(path) if path.endswith(CATALOG) else path


def search_path_sql(lakehouse) -> str:
    """The statement that makes a connection resolve the views' paths in ``lakehouse``."""
    folder = os.path.abspath(lakehouse_of(lakehouse)).replace("'", "''")
    return f"SET file_search_path = '{folder}'"


def connect(lakehouse, read_only: bool = True):
    """A DuckDB connection to the catalog of ``lakehouse`` (the folder or its catalog
    file) whose views find their files wherever the folder is now."""
    import duckdb

    folder = lakehouse_of(lakehouse)
    con = duckdb.connect(catalog_path(folder), read_only=read_only)
    con.execute(search_path_sql(folder))
    return con


def shell_command(lakehouse: str, sql: str) -> str:
    """The ``duckdb`` command line that runs ``sql`` on the catalog from here."""
    folder = lakehouse_of(lakehouse)
    return (f"duckdb -readonly -cmd \"SET file_search_path='{folder}'\" "
            f"{catalog_path(folder)} \"{sql}\"")
