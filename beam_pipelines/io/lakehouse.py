"""The local lakehouse sink (the embedded default): Parquet per table, DuckDB views.

Layout: ``<output-dir>/<layer>/<table>/date=YYYY-MM-DD/part-*.parquet``, one folder per
UTC day of the table's partition field (the one BigQuery partitions by; a table without one
keeps its files in its own folder), and ``<output-dir>/lakehouse.duckdb`` holding one view
per table by paths relative to the folder (:mod:`beam_pipelines.catalog`), so
``cd <output-dir> && duckdb lakehouse.duckdb "select * from server_health_summary"`` works,
wherever the folder has moved. A batch run replaces the tables of its output directory, or
only its own input files' records in them (:mod:`beam_pipelines.replay`); a streaming run
from a subscription appends to them (a restart resumes, see
:mod:`beam_pipelines.io.delivery`). Every reader globs ``**/*.parquet``, so files of the
flat layout of earlier versions are read as well (``compact`` moves them into partitions).
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
from transforms.windowing import BATCH, Mode


def holds_batches(name: str, batches) -> bool:
    """``batches``: True (every table holds Arrow tables), False, or the names that do."""
    return name in batches if isinstance(batches, (set, frozenset)) else bool(batches)


def table_dir(output_dir: str, schema: RecordSchema) -> str:
    return os.path.join(output_dir, schema.layer, schema.name)


#: How every table file is written. A column's dictionary stops growing at 128 KiB (Arrow's
#: default is 1 MiB): a column of few values (ids, names, statuses) keeps its dictionary,
#: one of many (measurements, times) falls back to plain pages early instead of hashing
#: every value first. Measured on the 1M-record tables: a third less time writing bronze
#: and silver, and files no larger.
PARQUET = {"dictionary_pagesize_limit": 128 << 10}

#: The file every table gets so its view works before the first rows (no rows of its own).
EMPTY_FILE = "part-0-empty.parquet"


def data_files(directory: str) -> list[str]:
    """A table directory's files that hold rows, in every partition, in path order."""
    return sorted(f for f in glob.glob(os.path.join(directory, "**", "part-*.parquet"),
                                       recursive=True)
                  if not f.endswith(EMPTY_FILE))


#: A partition folder's name: Hive style, which DuckDB, Spark and BigQuery's external
#: tables all read. Rows whose partition field is null go to Hive's default partition.
PARTITION_KEY = "date"
NULL_PARTITION = f"{PARTITION_KEY}=__HIVE_DEFAULT_PARTITION__"


def partition_name(day) -> str:
    return NULL_PARTITION if day is None else f"{PARTITION_KEY}={day.isoformat()}"


def by_partition(table, schema: RecordSchema) -> list[tuple[str, object]]:
    """An Arrow table of ``schema`` → (partition folder, its rows) per UTC day of the
    partition field, rows in their order within each; ``[("", table)]`` for a table
    without a partition field."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not schema.partition_field or not table.num_rows:
        return [("", table)]
    column = table.column(schema.partition_field)
    if not pa.types.is_date32(column.type):
        if pa.types.is_timestamp(column.type) and column.type.tz not in (None, "UTC"):
            column = column.cast(pa.timestamp(column.type.unit, "UTC"))
        column = column.cast(pa.timestamp("us")).cast(pa.date32())
    null_day = np.iinfo(np.int32).min
    days = pc.fill_null(column.cast(pa.int32()), null_day).to_numpy()
    first = days[0]
    if (days == first).all():
        return [(_partition_of_day(first, null_day), table)]
    if (days[1:] >= days[:-1]).all():  # in day order already (gold): slices, not copies
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        ends = np.r_[starts[1:], len(days)]
        return [(_partition_of_day(days[a], null_day), table.slice(a, b - a))
                for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    order = np.argsort(days, kind="stable")
    ordered = days[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    return [(_partition_of_day(ordered[a], null_day), table.take(pa.array(order[a:b])))
            for a, b in zip(starts, ends, strict=True)]


def _partition_of_day(day, null_day) -> str:
    from datetime import date, timedelta

    return partition_name(None if day == null_day
                          else date(1970, 1, 1) + timedelta(days=int(day)))


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
    """One Arrow table → one Parquet file per partition it covers, each written under a
    hidden temporary name and then renamed, so a reader (DuckDB during a streaming run)
    never sees a partial file. Once renamed, a terminal table's records are reported to
    the delivery ledger, if any."""

    def __init__(self, directory: str, role: str | None = None,
                 schema: RecordSchema | None = None):
        self._directory = directory
        self._role = role
        self._schema = schema

    def process(self, table):
        from beam_pipelines.io import delivery

        ledger = delivery.current() if self._role else None
        if ledger is not None and self._role in (BRONZE, GOLD):
            table = (ledger.unwritten_bronze(table) if self._role == BRONZE
                     else ledger.resumed_gold(self._schema.name, table))
            if not table.num_rows:
                return
        parts = by_partition(table, self._schema) if self._schema else [("", table)]
        for partition, rows in parts:
            yield self._write(FileSystems.join(self._directory, partition) if partition
                              else self._directory, rows)
        if ledger is not None and self._role == TERMINAL:
            ledger.written(table.column("source").to_pylist())

    @staticmethod
    def _write(directory: str, table) -> str:
        import pyarrow.parquet as pq

        if is_local(directory):
            os.makedirs(directory, exist_ok=True)
        elif not FileSystems.exists(directory):
            FileSystems.mkdirs(directory)
        name = f"part-{uuid.uuid4().hex}.parquet"
        final = FileSystems.join(directory, name)
        if is_local(final):
            write_local_file(final, table)  # on disk before the rename acknowledges its input
            return final
        temporary = FileSystems.join(directory, f".{name}.inprogress")
        with FileSystems.create(temporary) as fh:
            pq.write_table(table, fh, **PARQUET)
        FileSystems.rename([temporary], [final])
        return final


def write_local_file(path: str, table) -> None:
    """A local Parquet file, written under a hidden temporary name, on disk, then renamed:
    a reader (DuckDB, the dashboard, a test polling a run) sees the whole file or none."""
    import pyarrow.parquet as pq

    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.inprogress")
    with open(temporary, "wb") as fh:
        pq.write_table(table, fh, **PARQUET)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)


def staging_dir(output_dir: str) -> str:
    """Where a batch run's bundles write before their files are published (one folder
    per run, hidden from the tables' globs)."""
    return FileSystems.join(output_dir, f".staging-{uuid.uuid4().hex[:12]}")


class WriteTableFilesFn(beam.DoFn):
    """Batch: Arrow tables of one table → one Parquet file per bundle and partition in the
    staging folder, in row groups of at least ``row_group_rows`` (fewer only where a
    partition holds fewer rows); yields (staged, final) paths once the bundle's files are
    complete."""

    #: Rows held back across a bundle's partitions before all are written out: bounds the
    #: memory of a bundle that covers many days.
    HELD_ROW_GROUPS = 2

    def __init__(self, staging: str, directory: str, schema: RecordSchema,
                 row_group_rows: int = 131_072):
        self._staging = staging
        self._directory = directory
        self._schema = schema
        self._rows = row_group_rows

    def setup(self):
        self._arrow = self._schema.arrow_schema()

    def start_bundle(self):
        self._writers: dict = {}  # partition → (staged path, file, ParquetWriter)
        self._pending: dict = {}  # partition → [tables]
        self._pending_rows: dict = {}  # partition → rows held

    def process(self, table):
        if not table.num_rows:
            return
        for partition, rows in by_partition(table, self._schema):
            self._pending.setdefault(partition, []).append(rows)
            held = self._pending_rows[partition] = (self._pending_rows.get(partition, 0)
                                                    + rows.num_rows)
            if held >= self._rows:
                self._write_pending(partition)
        if sum(self._pending_rows.values()) >= self.HELD_ROW_GROUPS * self._rows:
            for partition in list(self._pending):
                self._write_pending(partition)

    def finish_bundle(self):
        for partition in list(self._pending):
            self._write_pending(partition)
        writers, self._writers = self._writers, {}
        for partition, (path, file, writer) in sorted(writers.items()):
            writer.close()
            file.close()
            final = FileSystems.join(self._directory, partition) if partition \
                else self._directory
            yield GlobalWindows.windowed_value_at_end_of_window(
                (path, FileSystems.join(final, os.path.basename(path))))

    def _write_pending(self, partition: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pending = self._pending.pop(partition, [])
        self._pending_rows.pop(partition, None)
        if not pending:
            return
        # One chunk per row group: many small chunks write markedly slower.
        table = pa.concat_tables(pending).combine_chunks() if len(pending) > 1 else pending[0]
        if partition not in self._writers:
            parent = FileSystems.join(self._staging, self._schema.name,
                                      partition or "_unpartitioned")
            path = FileSystems.join(parent, f"part-{uuid.uuid4().hex}.parquet")
            if is_local(parent):
                os.makedirs(parent, exist_ok=True)
            file = FileSystems.create(path)
            writer = pq.ParquetWriter(file, self._arrow, **PARQUET)
            self._writers[partition] = (path, file, writer)
        self._writers[partition][2].write_table(
            table.cast(self._arrow) if table.schema != self._arrow else table)


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
                [FileSystems.join(self._staging, "*", "*", "*")]) for m in r.metadata_list]
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

    def __init__(self, output_dir: str, schema: RecordSchema, mode: Mode = BATCH,
                 flush_s: int = 5, batches: bool = False, staging: str | None = None):
        super().__init__()
        self._output_dir = output_dir
        self._staging = staging or staging_dir(output_dir)
        self._schema = schema
        self._mode = mode
        self._flush_s = flush_s
        self._batches = batches

    def expand(self, rows):
        return self._mode.choose(batch=self._staged_files, streaming=self._flushes)(rows)

    def _flushes(self, rows):
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
                    self._schema))
        )

    def _staged_files(self, rows):
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


def write_tables(tables: dict, schemas, output_dir: str, mode: Mode = BATCH,
                 batches=False) -> None:
    """Every table of a medallion's output dict to its place in the lakehouse
    (``batches``: True if its PCollections hold Arrow tables, not rows, or the names of
    those that do). Batch: files staged per bundle, published once all are written;
    streaming: a file per table and flush, in place at once."""

    from transforms.batches import TableParts

    by_name = {schema.name: schema for schema in schemas}
    staging = staging_dir(output_dir)
    written = []
    for name, rows in tables.items():
        # A table in parts: each part's files are written in the stage that makes it.
        parts = rows if isinstance(rows, TableParts) else (rows,)
        for i, part in enumerate(parts):
            label = f"Write{by_name[name].label}" + (f"Part{i + 1}" if len(parts) > 1 else "")
            written.append(part | label >> WriteLakehouseTable(
                output_dir, by_name[name], mode=mode, batches=holds_batches(name, batches),
                staging=staging))
    if written and mode.choose(batch=True, streaming=False):  # streaming: in place already
        tuple(written) | "PublishTables" >> PublishFiles(staging)


def clear_tables(output_dir: str, schemas, pipeline: str | None = None) -> None:
    """Remove the previous run's files of these tables (and nothing else).

    A table every pipeline writes (one with a ``pipeline`` column: the dead letters) keeps
    the files of the other pipelines: running the web-log pipeline after the metrics one
    into the same lakehouse must not delete the metrics' dead letters."""
    for schema in schemas:
        shared = pipeline is not None and "pipeline" in schema.names
        directory = table_dir(output_dir, schema)
        for path in data_files(directory):
            if not shared or _only_rows_of(path, pipeline):
                os.remove(path)
        remove_empty_partitions(directory)


def remove_empty_partitions(directory: str) -> None:
    """The partition folders of a table left without a file."""
    for path in glob.glob(os.path.join(directory, f"{PARTITION_KEY}=*")):
        try:
            os.rmdir(path)
        except OSError:  # holds files still
            pass


def _only_rows_of(path: str, pipeline: str) -> bool:
    """The file holds rows of this pipeline only (or none): a run writes its own files."""
    import pyarrow.parquet as pq

    names = set(pq.read_table(path, columns=["pipeline"]).column(0).unique().to_pylist())
    return names <= {pipeline}


def write_empty_tables(output_dir: str, schemas, only_missing: bool = False) -> None:
    """One empty file per table (``only_missing``: per table without any file), so the
    catalog's views work before the first rows land."""
    for schema in schemas:
        directory = table_dir(output_dir, schema)
        if only_missing and glob.glob(os.path.join(directory, "**", "*.parquet"),
                                      recursive=True):
            continue
        os.makedirs(directory, exist_ok=True)
        # Written beside a run that may be reading the folder (a restart, a dashboard).
        write_local_file(os.path.join(directory, EMPTY_FILE), schema.arrow_schema().empty_table())


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
            files = "/".join((schema.layer, schema.name, "**", "*.parquet"))
            # The folder names are not a column: the partition field is one already.
            scan = f"read_parquet('{files}', hive_partitioning = false)"
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
    partitions: int = 0
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0

    def line(self) -> str:
        if not self.tables:
            return "Compaction: every table partition is one file already."
        return (f"Compacted {self.tables} table(s), {self.partitions:,} partition(s): "
                f"{self.files_before:,} files ({self.bytes_before / 2**20:.1f} MiB) into "
                f"{self.files_after:,} ({self.bytes_after / 2**20:.1f} MiB)")


class _CompactedFiles:
    """The compacted files of a table: one per partition, or per partition and pipeline
    (``add(table, partition, owner)``), in row groups of ``rows``, under a temporary name
    (not *.parquet: no view reads it half written) until ``publish``."""

    def __init__(self, directory: str, arrow, rows: int):
        self._directory, self._arrow, self._rows = directory, arrow, rows
        self._files: dict = {}  # (partition, owner) → [temporary path, writer, pending]

    def add(self, table, partition: str = "", owner=None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if (partition, owner) not in self._files:
            folder = os.path.join(self._directory, partition)
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"part-compacted-{uuid.uuid4().hex}.parquet.tmp")
            writer = pq.ParquetWriter(path, self._arrow, **PARQUET)
            self._files[partition, owner] = [path, writer, []]
        entry = self._files[partition, owner]
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
        remove_empty_partitions(self._directory)

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
    """Each table partition's files → one file (a streaming run writes one every few
    seconds per table and partition; a replay adds some): the rows, panes and order kept,
    read and written a row group at a time so memory stays bounded. Partitions of one file
    are left as they are; files of the flat layout of earlier versions are moved into
    partitions. A table every pipeline writes (the dead letters) gets a file per pipeline,
    so a batch run still replaces only its own. The new files are complete and in place
    before the old ones go, so a crash loses nothing (at worst rows are there twice until
    the old files are removed by hand); run it when nothing writes the lakehouse (a
    streaming run does at its end)."""
    done = Compaction()
    for schema in schemas:
        directory = table_dir(output_dir, schema)
        folders: dict = {}
        for path in data_files(directory):
            folders.setdefault(os.path.dirname(path), []).append(path)
        compacted = False
        for folder, files in sorted(folders.items()):
            flat = bool(schema.partition_field) and folder == directory
            if len(files) < 2 and not flat:
                continue
            made = _compact_files(directory, schema, files, row_group_rows)
            done.bytes_before += sum(os.path.getsize(f) for f in files)
            done.bytes_after += made.publish()
            for path in files:
                os.remove(path)
            compacted = True
            done.partitions += 1
            done.files_before += len(files)
            done.files_after += len(made)
        done.tables += compacted
    return done


def _compact_files(directory: str, schema: RecordSchema, files: list[str],
                   rows: int) -> _CompactedFiles:
    """The rows of ``files`` in new files, by partition (and pipeline, for a shared
    table), closed and not yet in place."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    arrow = schema.arrow_schema()
    shared = "pipeline" in schema.names
    out = _CompactedFiles(directory, arrow, rows)
    try:
        for path in files:
            parquet = pq.ParquetFile(path)
            for group in range(parquet.num_row_groups):
                table = _conformed(parquet.read_row_group(group), arrow, path)
                for partition, part in by_partition(table, schema):
                    if not shared:
                        out.add(part, partition)
                        continue
                    owners = part.column("pipeline")
                    for owner in owners.unique().to_pylist():
                        out.add(part.filter(pc.equal(owners, owner) if owner is not None
                                            else pc.is_null(owners)), partition, owner)
        out.close()
    except (ValueError, pa.ArrowInvalid) as exc:
        out.abort()
        raise UserError(f"{directory}: cannot compact: {exc}") from None
    return out


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
