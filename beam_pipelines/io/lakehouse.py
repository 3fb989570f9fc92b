"""The local lakehouse sink (the embedded default): Parquet per table, DuckDB views.

Layout: ``<output-dir>/<layer>/<table>/part-*.parquet`` and ``<output-dir>/lakehouse.duckdb``
holding one view per table by paths relative to the folder (:mod:`beam_pipelines.catalog`),
so ``cd <output-dir> && duckdb lakehouse.duckdb "select * from server_health_summary"``
works, wherever the folder has moved. A batch run replaces the tables of its output directory;
a streaming run from a subscription appends to them (a restart resumes, see
:mod:`beam_pipelines.io.delivery`).
"""
from __future__ import annotations

import glob
import os
import uuid
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines.catalog import CATALOG, catalog_path
from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.errors import UserError
from schemas.core import RecordSchema


def holds_batches(name: str, batches) -> bool:
    """``batches``: True (every table holds Arrow tables), False, or the names that do."""
    return name in batches if isinstance(batches, (set, frozenset)) else bool(batches)


def table_dir(output_dir: str, schema: RecordSchema) -> str:
    return os.path.join(output_dir, schema.layer, schema.name)


#: The file every table gets so its view works before the first rows (no rows of its own).
EMPTY_FILE = "part-0-empty.parquet"


def data_files(directory: str) -> list[str]:
    """A table directory's files that hold rows, in name order."""
    return sorted(f for f in glob.glob(os.path.join(directory, "part-*.parquet"))
                  if not f.endswith(EMPTY_FILE))


class RowsToArrowFn(beam.DoFn):
    """Buffers row dicts and emits Arrow tables of ``batch_rows`` rows.

    Beam's own WriteToParquet converts row by row through pyarrow schema look-ups (about
    45 µs a row here); building whole columns at once is an order of magnitude cheaper.
    """

    def __init__(self, schema: RecordSchema, batch_rows: int = 20_000):
        self._schema = schema
        self._batch_rows = batch_rows

    def setup(self):
        self._arrow = self._schema.arrow_schema()
        self._names = self._schema.names

    def start_bundle(self):
        self._rows = []

    def process(self, row):
        self._rows.append(row)
        if len(self._rows) >= self._batch_rows:
            yield self._table()

    def finish_bundle(self):
        if self._rows:
            yield GlobalWindows.windowed_value_at_end_of_window(self._table())

    def _table(self):
        import pyarrow as pa

        rows, self._rows = self._rows, []
        return pa.Table.from_arrays(
            [pa.array([r[n] for r in rows], type=f.type)
             for n, f in zip(self._names, self._arrow, strict=True)], schema=self._arrow)


#: What a streaming table's writes mean to the delivery ledger
#: (:mod:`beam_pipelines.io.delivery`): a *terminal* file completes its records, a
#: *bronze* file skips the rows an earlier run already wrote, a *gold* file of a resumed
#: run numbers its panes after the earlier run's.
TERMINAL, BRONZE, GOLD = "terminal", "bronze", "gold"


def delivery_role(schema: RecordSchema) -> str | None:
    if schema.layer == "silver" or schema.name == "dead_letters":
        return TERMINAL
    return {"bronze": BRONZE, "gold": GOLD}.get(schema.layer)


class WriteParquetFileFn(beam.DoFn):
    """One Arrow table → one Parquet file, written under a hidden temporary name and then
    renamed, so a reader (DuckDB during a streaming run) never sees a partial file. Once
    renamed, a terminal file's records are reported to the delivery ledger, if any."""

    def __init__(self, directory: str, role: str | None = None, table: str | None = None):
        self._directory = directory
        self._role = role
        self._table = table

    def setup(self):
        if not FileSystems.exists(self._directory):
            FileSystems.mkdirs(self._directory)

    def process(self, table):
        import pyarrow.parquet as pq

        from beam_pipelines.io import delivery

        ledger = delivery.current() if self._role else None
        if ledger is not None and self._role in (BRONZE, GOLD):
            table = (ledger.unwritten_bronze(table) if self._role == BRONZE
                     else ledger.resumed_gold(self._table, table))
            if not table.num_rows:
                return
        name = f"part-{uuid.uuid4().hex}.parquet"
        final = FileSystems.join(self._directory, name)
        temporary = FileSystems.join(self._directory, f".{name}.inprogress")
        if is_local(temporary):
            with open(temporary, "wb") as fh:
                pq.write_table(table, fh)
                fh.flush()
                os.fsync(fh.fileno())  # on disk before the rename acknowledges its input
        else:
            with FileSystems.create(temporary) as fh:
                pq.write_table(table, fh)
        FileSystems.rename([temporary], [final])
        if ledger is not None and self._role == TERMINAL:
            ledger.written(table.column("source").to_pylist())
        yield final


def staging_dir(output_dir: str) -> str:
    """Where a batch run's bundles write before their files are published (one folder
    per run, hidden from the tables' globs)."""
    return FileSystems.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")


class WriteTableFilesFn(beam.DoFn):
    """Batch: Arrow tables of one table → one Parquet file per bundle in the staging
    folder, in row groups of at least ``row_group_rows``; yields (staged, final) paths
    once the bundle's file is complete."""

    def __init__(self, staging: str, directory: str, schema: RecordSchema,
                 row_group_rows: int = 65_536):
        self._staging = staging
        self._directory = directory
        self._schema = schema
        self._rows = row_group_rows

    def setup(self):
        self._arrow = self._schema.arrow_schema()

    def start_bundle(self):
        self._writer = self._file = self._path = None
        self._pending, self._pending_rows = [], 0

    def process(self, table):
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._rows:
            self._write_pending()

    def finish_bundle(self):
        if self._pending:
            self._write_pending()
        if self._writer is None:
            return
        self._writer.close()
        self._file.close()
        name = os.path.basename(self._path)
        self._writer = self._file = None
        yield GlobalWindows.windowed_value_at_end_of_window(
            (self._path, FileSystems.join(self._directory, name)))

    def _write_pending(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pending, self._pending, self._pending_rows = self._pending, [], 0
        # One chunk per row group: many small chunks write markedly slower.
        table = pa.concat_tables(pending).combine_chunks() if len(pending) > 1 else pending[0]
        if self._writer is None:
            name = f"part-{uuid.uuid4().hex}.parquet"
            self._path = FileSystems.join(self._staging, self._schema.name, name)
            parent = FileSystems.join(self._staging, self._schema.name)
            if is_local(parent):
                os.makedirs(parent, exist_ok=True)
            self._file = FileSystems.create(self._path)
            self._writer = pq.ParquetWriter(self._file, self._arrow)
        self._writer.write_table(table.cast(self._arrow) if table.schema != self._arrow
                                 else table)


class _PublishFn(beam.DoFn):
    def __init__(self, staging: str):
        self._staging = staging

    def process(self, _, staged):
        moves = sorted(staged)
        for directory in {os.path.dirname(final) for _, final in moves}:
            if not FileSystems.exists(directory):
                FileSystems.mkdirs(directory)
        if moves:
            FileSystems.rename([src for src, _ in moves], [dst for _, dst in moves])
        # What is left: the files of bundles that failed and were retried.
        if is_local(self._staging):
            import shutil

            shutil.rmtree(self._staging, ignore_errors=True)
        else:
            left = [m.path for r in FileSystems.match(
                [FileSystems.join(self._staging, "*", "*")]) for m in r.metadata_list]
            if left:
                FileSystems.delete(left)
        yield len(moves)


class PublishFiles(beam.PTransform):
    """(staged, final) paths of every table's completed bundles → the files in place, once
    all are written; then the staging folder is removed."""

    def __init__(self, staging: str):
        super().__init__()
        self._staging = staging

    def expand(self, written):
        staged = written | "AllFiles" >> beam.Flatten()
        return (staged.pipeline
                | "Once" >> beam.Create([None])
                | "Publish" >> beam.ParDo(_PublishFn(self._staging),
                                          staged=beam.pvalue.AsList(staged)
                                          ).with_output_types(int))


class _RowsToArrowFn(RowsToArrowFn):
    """Grouped rows (or Arrow tables, with ``batches``) → one Arrow table (streaming: a
    group is one flush of a table)."""

    def __init__(self, schema: RecordSchema, batches: bool = False):
        super().__init__(schema)
        self._batches = batches

    def process(self, keyed_rows):
        _, rows = keyed_rows
        if self._batches:
            import pyarrow as pa

            parts = [t for t in rows if t.num_rows]
            if parts:
                yield pa.concat_tables(parts).combine_chunks()
            return
        self._rows = list(rows)
        if self._rows:
            yield self._table()

    def finish_bundle(self):
        return None


class WriteLakehouseTable(beam.PTransform):
    """Rows → Parquet files of one table.

    Batch: each bundle writes its files into a staging folder; :class:`PublishFiles`
    moves the files of the bundles that completed into place once every table is
    written (a retried bundle's files never are), so the output is exactly-once, as with
    Beam's file sinks, without their half-dozen steps per table. Streaming:
    rows are gathered for ``flush_s`` of processing time and each group becomes one file,
    so the table grows while the pipeline runs; a drain fires the last group. (A bundle
    retried by a runner may write its file twice; the keyed views pick one row per key,
    and the local runner does not retry.)
    """

    def __init__(self, output_dir: str, schema: RecordSchema, streaming: bool = False,
                 flush_s: int = 5, batches: bool = False, staging: str | None = None):
        super().__init__()
        self._output_dir = output_dir
        self._staging = staging or staging_dir(output_dir)
        self._schema = schema
        self._streaming = streaming
        self._flush_s = flush_s
        self._batches = batches

    def expand(self, rows):
        if self._streaming:
            return (
                rows
                | "Gather" >> beam.WindowInto(
                    GlobalWindows(),
                    # Early panes flush while running; the on-time pane of the global
                    # window fires at the drain, so the last rows are never left behind.
                    # (No AfterAny with a row count: on the DirectRunner it stops the
                    # processing-time firings after the first.)
                    trigger=trigger.AfterWatermark(
                        early=trigger.AfterProcessingTime(self._flush_s)),
                    accumulation_mode=trigger.AccumulationMode.DISCARDING)
                | "KeyByTable" >> self._key_by_table()
                | "GroupFlush" >> beam.GroupByKey()
                | "ToArrow" >> beam.ParDo(_RowsToArrowFn(self._schema, self._batches))
                | "WriteParquetFile" >> beam.ParDo(WriteParquetFileFn(
                    table_dir(self._output_dir, self._schema), delivery_role(self._schema),
                    self._schema.name))
            )
        if self._batches:  # Arrow tables of the schema already (the batch medallion)
            tables = rows
        else:
            tables = rows | "ToArrow" >> beam.ParDo(RowsToArrowFn(self._schema))
        return tables | "WriteFiles" >> beam.ParDo(WriteTableFilesFn(
            self._staging, table_dir(self._output_dir, self._schema), self._schema)
        ).with_output_types(beam.typehints.Tuple[str, str])

    def _key_by_table(self):
        key = beam.Map(lambda row: (0, row))
        if self._batches:  # Arrow tables cross the shuffle with the Arrow coder
            from transforms.batches import keyed_tables

            key = key.with_output_types(keyed_tables(int))
        return key


def is_local(path: str) -> bool:
    return "://" not in path


def prepare_output_dir(output_dir: str, schemas=()) -> None:
    """A local output directory exists and is writable, and so is every place of it a run
    replaces (the tables of ``schemas``, the catalog, the sample), or the run stops with
    one line before it has changed anything."""
    if not is_local(output_dir):
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output-dir {output_dir}: {exc.strerror}") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise UserError(f"--output-dir {output_dir} is not writable")
    places = [os.path.join(output_dir, CATALOG), os.path.join(output_dir, "_sample")]
    places += [table_dir(output_dir, schema) for schema in schemas]
    for place in places:
        blocked = _not_replaceable(place)
        if blocked:
            raise UserError(f"--output-dir {output_dir}: {blocked} may not be replaced by "
                            f"this user (permission denied); choose another --output-dir")


def _not_replaceable(path: str) -> str | None:
    """The first thing in the way of replacing ``path`` (its files, if a directory), or
    None."""
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            return path
        return None
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            return path
        return _not_replaceable(os.path.dirname(path))
    parent = os.path.dirname(path)
    return _not_replaceable(parent) if parent and parent != path else None


def write_tables(tables: dict, schemas, output_dir: str, streaming: bool = False,
                 batches=False) -> None:
    """Every table of a medallion's output dict to its place in the lakehouse
    (``batches``: True if its PCollections hold Arrow tables, not rows, or the names of
    those that do)."""

    by_name = {schema.name: schema for schema in schemas}
    staging = staging_dir(output_dir)
    written = [rows | f"Write{by_name[name].label}" >> WriteLakehouseTable(
        output_dir, by_name[name], streaming=streaming, batches=holds_batches(name, batches),
        staging=staging) for name, rows in tables.items()]
    if not streaming and written:
        tuple(written) | "PublishTables" >> PublishFiles(staging)


def clear_tables(output_dir: str, schemas, pipeline: str | None = None) -> None:
    """Remove the previous run's files of these tables (and nothing else).

    A table every pipeline writes (one with a ``pipeline`` column: the dead letters) keeps
    the files of the other pipelines: running the web-log pipeline after the metrics one
    into the same lakehouse must not delete the metrics' dead letters."""
    for schema in schemas:
        shared = pipeline is not None and "pipeline" in schema.names
        for path in glob.glob(os.path.join(table_dir(output_dir, schema), "part-*.parquet")):
            if not shared or _only_rows_of(path, pipeline):
                os.remove(path)


def _only_rows_of(path: str, pipeline: str) -> bool:
    """The file holds rows of this pipeline only (or none): a run writes its own files."""
    import pyarrow.parquet as pq

    names = set(pq.read_table(path, columns=["pipeline"]).column(0).unique().to_pylist())
    return names <= {pipeline}


def write_empty_tables(output_dir: str, schemas, only_missing: bool = False) -> None:
    """One empty file per table (``only_missing``: per table without any file), so the
    catalog's views work before the first rows land."""
    import pyarrow.parquet as pq

    for schema in schemas:
        directory = table_dir(output_dir, schema)
        if only_missing and glob.glob(os.path.join(directory, "*.parquet")):
            continue
        os.makedirs(directory, exist_ok=True)
        pq.write_table(schema.arrow_schema().empty_table(),
                       os.path.join(directory, EMPTY_FILE))


def write_catalog(output_dir: str, schemas) -> str:
    """(Re)create the DuckDB file with one view per table; returns its path.

    A view names its folder relative to the lakehouse, so the folder can move (see
    :mod:`beam_pipelines.catalog`). A table with a key gets the latest pane per key
    (streaming appends a row each time a window fires; batch writes one), and
    ``<table>_panes`` shows every pane.
    """
    write_empty_tables(output_dir, schemas, only_missing=True)  # a view needs a file
    with connect_catalog(output_dir, read_only=False) as con:
        for schema in schemas:
            files = "/".join((schema.layer, schema.name, "*.parquet"))
            scan = f"read_parquet('{files}')"
            if schema.key:
                con.execute(f"CREATE OR REPLACE VIEW {schema.name}_panes AS SELECT * FROM {scan}")
                con.execute(
                    f"CREATE OR REPLACE VIEW {schema.name} AS SELECT * FROM {scan} "
                    f"QUALIFY row_number() OVER (PARTITION BY {', '.join(schema.key)} "
                    f"ORDER BY pane_index DESC) = 1")
            else:
                con.execute(f"CREATE OR REPLACE VIEW {schema.name} AS SELECT * FROM {scan}")
    return catalog_path(output_dir)


def remove_temporary_files(output_dir: str) -> None:
    """What an interrupted write leaves: Beam's ``beam-temp-*`` folders under each table."""
    import shutil

    for path in glob.glob(os.path.join(output_dir, "**", "beam-temp-*"), recursive=True):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)



@dataclass
class Compaction:
    tables: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    def line(self) -> str:
        if not self.tables:
            return "Compaction: every table is one file already."
        return (f"Compacted {self.tables} table(s): {self.files_before:,} files "
                f"({self.bytes_before / 2**20:.1f} MiB) into {self.files_after:,} "
                f"({self.bytes_after / 2**20:.1f} MiB)")


class _CompactedFiles:
    """The compacted file of a table, or one per pipeline (``add(table, owner)``): row
    groups of ``rows``, under a temporary name (not *.parquet: no view reads it half
    written) until ``publish``."""

    def __init__(self, directory: str, arrow, rows: int):
        self._directory, self._arrow, self._rows = directory, arrow, rows
        self._files: dict = {}  # owner → [temporary path, writer, pending tables]

    def add(self, table, owner=None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if owner not in self._files:
            name = f"part-compacted-{uuid.uuid4().hex}.parquet.tmp"
            path = os.path.join(self._directory, name)
            self._files[owner] = [path, pq.ParquetWriter(path, self._arrow), []]
        entry = self._files[owner]
        entry[2].append(table)
        if sum(t.num_rows for t in entry[2]) >= self._rows:
            entry[1].write_table(pa.concat_tables(entry[2]))
            entry[2] = []

    def close(self) -> None:
        import pyarrow as pa

        for path, writer, pending in self._files.values():
            if pending:
                writer.write_table(pa.concat_tables(pending))
            writer.close()
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())

    def abort(self) -> None:
        for path, writer, _ in self._files.values():
            writer.close()
            os.remove(path)

    def publish(self) -> int:
        """Renamed into place; their bytes."""
        size = 0
        for path, _, _ in self._files.values():
            os.rename(path, path[: -len(".tmp")])
            size += os.path.getsize(path[: -len(".tmp")])
        return size

    def __len__(self) -> int:
        return len(self._files)


def compact(output_dir: str, schemas, row_group_rows: int = 131_072) -> Compaction:
    """Each table's files → one file (a streaming run writes one every few seconds per
    table; a replay adds some): the rows, panes and order kept, read and written a row
    group at a time so memory stays bounded. A table every pipeline writes (the dead
    letters) gets a file per pipeline, so a batch run still replaces only its own. The new
    files are complete and in place before the old ones go, so a crash loses nothing (at
    worst rows are there twice until the old files are removed by hand); run it when
    nothing writes the lakehouse (a streaming run does at its end)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    done = Compaction()
    for schema in schemas:
        directory = table_dir(output_dir, schema)
        files = data_files(directory)
        if len(files) < 2:
            continue
        arrow = schema.arrow_schema()
        shared = "pipeline" in schema.names
        out = _CompactedFiles(directory, arrow, row_group_rows)
        try:
            for path in files:
                parquet = pq.ParquetFile(path)
                for group in range(parquet.num_row_groups):
                    table = _conformed(parquet.read_row_group(group), arrow, path)
                    if not shared:
                        out.add(table)
                        continue
                    owners = table.column("pipeline")
                    for owner in owners.unique().to_pylist():
                        out.add(table.filter(pc.equal(owners, owner) if owner is not None
                                             else pc.is_null(owners)), owner)
            out.close()
        except (ValueError, pa.ArrowInvalid) as exc:
            out.abort()
            raise UserError(f"{directory}: cannot compact: {exc}") from None
        done.bytes_before += sum(os.path.getsize(f) for f in files)
        done.bytes_after += out.publish()
        for path in files:
            os.remove(path)
        done.tables += 1
        done.files_before += len(files)
        done.files_after += len(out)
    return done


def _conformed(table, arrow, path: str):
    """A file's rows in the table's declared schema: a column declared since it was
    written is null in it; one it has that is no longer declared stops the compaction
    (its values would be lost)."""
    import pyarrow as pa

    if table.schema.equals(arrow):
        return table
    gone = set(table.column_names) - set(arrow.names)
    if gone:
        raise ValueError(f"{path} has column(s) {', '.join(sorted(gone))} the schema no "
                         "longer declares")
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in arrow]
    return pa.Table.from_arrays(columns, schema=arrow)
