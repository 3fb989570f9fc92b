"""Arrow batches: the element type of the batch medallion, and the machinery every record
kind shares.

A Python pipeline that moves one record per element pays the runner's per-element cost
(encoding, bookkeeping, a DoFn call) on every record. Here an element is a
``pyarrow.Table`` of thousands of records: a file chunk out of a source, the accepted part
of a layer, a dead-letter batch, or a fragment of one server's records on its way to a
shuffle. Layers work on whole columns; where a step must look at one record (a JSON
decode, a rejection's exact message) it is one tight loop inside the DoFn, never an
element per record.

Element types, per PCollection:

* raw batches (:func:`raw_lines`, :func:`raw_rows`): what a source read, with the
  ``payload`` and ``source`` of every record and the batch's kind in its metadata;
* table batches: a ``pyarrow.Table`` with exactly the Arrow schema of one
  :class:`~schemas.core.RecordSchema` (bronze, silver, each gold table, dead letters);
* a table in parts (:class:`TableParts`): a tuple of such PCollections, one per stage
  that makes the table, which :func:`whole` flattens into one.

``BatchesToRows`` and ``RowsToBatches`` adapt to code that works on row dicts.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from schemas.core import RecordSchema
from schemas.dead_letter import DEAD_LETTERS
from transforms.bronze import RawRecord, utc_of

#: Output tag of every batch step's dead-letter batches.
DEAD = "dead_letters"

#: Raw batches: how the records were framed by the source.
JSON, CSV, ROWS, UNREADABLE = "json", "csv", "rows", "unreadable"
_KIND, _HEADER, _WATERMARK = b"kind", b"header", b"watermark"
_REASON = b"reason"
RAW_SCHEMA = pa.schema([pa.field("payload", pa.binary()), pa.field("source", pa.string())])
#: What a live source polled: each record's event time (µs) as its source declared it
#: (the Pub/Sub attribute), before any parsing.
LIVE_SCHEMA = RAW_SCHEMA.append(pa.field("event_us", pa.int64()))


def raw_lines(payloads: list[bytes] | pa.Array, sources, kind: str = JSON,
              header: tuple[str, ...] | None = None) -> pa.Table:
    """Lines as received (JSON text, or CSV rows of a file whose ``header`` is given; a
    list of bytes or a binary array), with their source: one string for all, or one per
    line."""
    if isinstance(sources, str):
        sources = pa.repeat(pa.scalar(sources, pa.string()), len(payloads))
    metadata = {_KIND: kind.encode()}
    if header is not None:
        metadata[_HEADER] = json.dumps(list(header)).encode()
    if not isinstance(sources, pa.Array):
        sources = pa.array(sources, pa.string())
    if not isinstance(payloads, pa.Array):
        payloads = pa.array(payloads, pa.binary())
    return pa.Table.from_arrays([payloads, sources],
                                schema=RAW_SCHEMA.with_metadata(metadata))


def live_batch(payloads: list, sources: list[str], event_us: list[int],
               watermark: int | None) -> pa.Table:
    """One poll of a live source: JSON lines with their delivery ids (``source``) and
    declared event times, and the source's watermark (µs) when they arrived, against
    which streaming judges whether a record came too late (None: nothing to judge by)."""
    metadata = {_KIND: JSON.encode()}
    if watermark is not None:
        metadata[_WATERMARK] = str(watermark).encode()
    return pa.Table.from_arrays(
        [pa.array(payloads, pa.binary()), pa.array(sources, pa.string()),
         pa.array(event_us, pa.int64())], schema=LIVE_SCHEMA.with_metadata(metadata))


def unreadable_rows(source: str, rows: int, message: str) -> pa.Table:
    """Records a source knows are there but cannot read (a Parquet row group whose pages
    are corrupt): one empty payload per record, so bronze dead-letters each with
    ``message`` and the input count still adds up."""
    return pa.Table.from_arrays(
        [pa.array([b""] * rows, pa.binary()), pa.array([source] * rows, pa.string())],
        schema=RAW_SCHEMA.with_metadata({_KIND: UNREADABLE.encode(),
                                         _REASON: message.encode()}))


def unreadable_message(batch: pa.Table) -> str:
    return (batch.schema.metadata or {}).get(_REASON, b"").decode()


def raw_watermark(batch: pa.Table) -> int | None:
    value = (batch.schema.metadata or {}).get(_WATERMARK)
    return int(value) if value is not None else None


def raw_rows(rows: pa.Table, source: str) -> pa.Table:
    """Rows a source decoded already (a Parquet row group), typed as in the file."""
    return rows.replace_schema_metadata({_KIND: ROWS.encode(),
                                         b"source": source.encode()})


def raw_kind(batch: pa.Table) -> str:
    return (batch.schema.metadata or {}).get(_KIND, JSON.encode()).decode()


def raw_records(batch: pa.Table) -> Iterator[RawRecord]:
    """The row view of a raw batch: what the row-level bronze functions take."""
    metadata = batch.schema.metadata or {}
    kind = raw_kind(batch)
    if kind == ROWS:
        source = metadata[b"source"].decode()
        for row in rows_of(batch):
            yield RawRecord(row, source)
        return
    header = tuple(json.loads(metadata[_HEADER])) if _HEADER in metadata else None
    watermark = raw_watermark(batch)
    payloads = batch.column("payload").to_pylist()
    sources = batch.column("source").to_pylist()
    for payload, source in zip(payloads, sources, strict=True):
        yield RawRecord(payload, source, header, watermark)


def from_rows(rows: list[dict], schema: RecordSchema) -> pa.Table:
    """Row dicts → a table of ``schema``, built column by column (Beam's row-by-row
    converter costs ~45 µs a row)."""
    arrow = schema.arrow_schema()
    return pa.Table.from_arrays([pa.array([r[f.name] for r in rows], type=f.type)
                                 for f in arrow], schema=arrow)


def rows_of(table: pa.Table) -> list[dict]:
    """``table.to_pylist()``: the same rows, the same values. pyarrow makes each UTC
    timestamp through its time-zone database (~3 µs: a silver row's two cost twice its
    other 26 values); epoch arithmetic (``utc_of``) gives the same datetime, exactly, in
    a sixth of that. What a layer hands its row-level function (the records a range
    check flags, the copies of a duplicate) goes through here."""
    names = table.column_names
    columns = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in ("UTC", "+00:00"):
            columns.append([None if m is None else utc_of(m)
                            for m in column.cast(pa.int64()).to_pylist()])
        else:
            columns.append(column.to_pylist())
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def dead_letter_batch(rows: list[dict]) -> pa.Table:
    return from_rows(rows, DEAD_LETTERS)


def conform(table: pa.Table, schema: RecordSchema) -> pa.Table:
    """``table``'s columns in ``schema``'s order and Arrow types (a cheap cast)."""
    arrow = schema.arrow_schema()
    columns = []
    for f in arrow:
        column = table.column(f.name)
        columns.append(column if column.type == f.type else column.cast(f.type))
    return pa.Table.from_arrays(columns, schema=arrow)


def concat(tables: Iterable[pa.Table], schema: RecordSchema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return schema.arrow_schema().empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


#: LZ4 frames: repeated names and paths shrink several times, at memory speed. A small
#: table is sent plain: framing each of its buffers costs more than the copy it saves
#: (~0.5 ms against ~0.05 ms a table of a few hundred rows, both ways), and the runner's
#: memory is held by the large ones (the silver fragments of the shuffle).
#: Single-threaded: Arrow's pool would compress each buffer (a column's values, its
#: offsets, its validity) as a task of its own, and for a shuffle fragment of a few
#: thousand rows handing ~80 buffers to the pool costs more than the compression
#: (~1.3 ms against ~0.5 ms a fragment, both ways); a worker's other cores run other
#: bundles anyway.
_LZ4 = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
_PLAIN = pa.ipc.IpcWriteOptions(use_threads=False)
_READ = pa.ipc.IpcReadOptions(use_threads=False)
_LZ4_FROM_BYTES = 64 * 1024


class ArrowTableCoder(beam.coders.Coder):
    """Arrow tables as IPC streams: a table crossing a shuffle is its buffers, an order of
    magnitude cheaper than pickling it (and a pickled slice carries its parent's whole
    buffers); large tables LZ4-compressed, so what the local runner holds of a shuffle is
    about half (peak memory at 1M records: 1.5 GiB → 0.8 GiB)."""

    def encode(self, table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        options = _LZ4 if table.nbytes >= _LZ4_FROM_BYTES else _PLAIN
        with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes) -> pa.Table:
        return pa.ipc.open_stream(encoded, options=_READ).read_all()

    def estimate_size(self, table: pa.Table) -> int:
        # Runners sample element sizes (every one of the first ten per PCollection): the
        # default estimate encodes the whole table to measure it, and ``nbytes`` walks
        # each chunk's referenced ranges (~40 ms for a table of 500 chunks). The buffers'
        # total is the same for a table that owns them, more for a slice.
        return table.get_total_buffer_size()

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self):
        return pa.Table


beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)


def count_batches(step: str, namespace: str = "batches"):
    """Elements and records through a step (the batching), as two Beam counters."""
    return (Metrics.counter(namespace, f"{step}_elements"),
            Metrics.counter(namespace, f"{step}_records"))


def declare_tables(*pcolls, element_type=pa.Table):
    """Declare PCollections of Arrow tables (or of (key, table) pairs) as such, so that
    where the runner materialises them (a flatten of several stages, a shuffle) they
    travel with the Arrow coder."""
    for pcoll in pcolls:
        pcoll.element_type = element_type
    return pcolls


class TableParts(tuple):
    """One table made by several stages: a PCollection of Arrow tables per stage. A
    runner materialises a flatten of several inputs (the local one encodes and decodes
    every table in it), so a medallion leaves the flatten to the sink that needs one: the
    lakehouse writes each part's files where the part is made; the others take
    :func:`whole`."""


def whole(tables: dict, prefix: str = "") -> dict:
    """A medallion's output with each :class:`TableParts` flattened into one PCollection
    (``prefix``: of the step labels, when two sinks flatten the same table)."""
    return {name: declare_tables(parts | f"{prefix}{name}Whole" >> beam.Flatten())[0]
            if isinstance(parts, TableParts) else parts for name, parts in tables.items()}


def dictionary(column) -> pa.DictionaryArray:
    """A column (chunked or not) dictionary-encoded as one array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return pc.dictionary_encode(column)


def dense_codes(column) -> np.ndarray:
    """Dense int64 codes of a column's values in order of first appearance; null is -1."""
    return dictionary(column).indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(
        np.int64)


def keyed_tables(key_type):
    """The element type of (key, table) pairs on their way to a GroupByKey: a
    deterministic key coder, and the Arrow coder for the values."""
    return beam.typehints.KV[key_type, pa.Table]


class BatchesToRows(beam.PTransform):
    """Table batches → row dicts, for code that composes the layers on rows."""

    def expand(self, batches):
        return batches | "ToRows" >> beam.FlatMap(lambda t: rows_of(t))


class _RowsToBatchesFn(beam.DoFn):
    def __init__(self, schema: RecordSchema, rows_per_batch: int):
        self._schema = schema
        self._size = rows_per_batch

    def start_bundle(self):
        self._rows = []

    def process(self, row):
        self._rows.append(row)
        if len(self._rows) >= self._size:
            rows, self._rows = self._rows, []
            yield from_rows(rows, self._schema)

    def finish_bundle(self):
        if self._rows:
            rows, self._rows = self._rows, []
            yield GlobalWindows.windowed_value_at_end_of_window(from_rows(rows, self._schema))


class RowsToBatches(beam.PTransform):
    """Row dicts → table batches of ``schema`` (a batch per bundle, at most
    ``rows_per_batch`` rows)."""

    def __init__(self, schema: RecordSchema, rows_per_batch: int = 20_000):
        super().__init__()
        self._schema = schema
        self._size = rows_per_batch

    def expand(self, rows):
        return rows | "ToBatches" >> beam.ParDo(_RowsToBatchesFn(self._schema, self._size)
                                                 ).with_output_types(pa.Table)


def split_by_span(table: pa.Table, span_s: int):
    """A batch with a ``timestamp`` column → (span start in µs, fragment) per span of
    ``span_s`` its rows fall in."""
    if not table.num_rows:
        return
    micros = table.column("timestamp").cast(pa.int64()).to_numpy()
    span = micros - micros % (span_s * 1_000_000)
    starts, inverse = np.unique(span, return_inverse=True)
    if len(starts) == 1:
        yield int(starts[0]), table
        return
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(starts) + 1))
    for j, start in enumerate(starts.tolist()):
        # A copy, not a slice: a slice carries its parent's whole buffers.
        yield start, table.take(pa.array(order[bounds[j]:bounds[j + 1]]))


class ReplayedSilverFn(beam.DoFn):
    """Silver rows an earlier run wrote (an Arrow table) → fragments of one minute each,
    timestamped at the minute: what a resumed streaming run feeds its gold again."""

    def process(self, silver: pa.Table):
        from apache_beam.transforms.window import TimestampedValue
        from apache_beam.utils.timestamp import Timestamp

        for start, fragment in split_by_span(silver, 60):
            yield TimestampedValue(fragment, Timestamp(micros=start))
