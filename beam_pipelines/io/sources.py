"""Sources: files of server metrics → raw batches (batch runs) or RawRecord elements (the
row-level medallion) for bronze.

Formats: JSON lines (splittable, read as bytes so that a line that is not UTF-8 becomes a
dead letter rather than a crash), CSV (each line keeps its file's header) and Parquet
(rows arrive already typed). Files are matched and checked before the pipeline starts, so
a wrong path is one clear error, not a failed job.
"""
from __future__ import annotations

import codecs
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.errors import UserError
from beam_pipelines.io import progress
from transforms.batches import CSV, raw_lines, raw_records, raw_rows, unreadable_rows
from transforms.bronze import RawRecord

FORMATS = ("jsonl", "csv", "parquet")
_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
               ".parquet": "parquet", ".pq": "parquet"}


def format_of(path: str) -> str | None:
    name = path.lower()
    for ext in (".gz", ".bz2", ".zst"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def resolve_inputs(patterns: list[str], input_format: str = "auto",
                   match: bool = True) -> dict[str, list[str]]:
    """Expand globs and directories into files grouped by format; raise UserError when a
    pattern matches nothing or a file's format cannot be told. ``match=False`` (a job
    built offline) keeps the patterns as they are, for the workers to expand."""
    if input_format not in ("auto",) + FORMATS:
        raise UserError(f"--input-format {input_format!r} is not one of auto, "
                        f"{', '.join(FORMATS)}")
    grouped: dict[str, list[str]] = {}
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        if "://" not in pattern and os.path.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        if not match:
            fmt = input_format if input_format != "auto" else format_of(pattern)
            if fmt is None:
                raise UserError(f"cannot tell the format of {pattern} from its name: "
                                f"give --input-format ({', '.join(FORMATS)})")
            grouped.setdefault(fmt, []).append(pattern)
            continue
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception as exc:  # noqa: BLE001 - the file system's own words are clearest
            raise UserError(f"--input {pattern}: {exc}") from None
        files = sorted(m.path for m in matches if not os.path.basename(m.path).startswith("."))
        if not files:
            raise UserError(f"--input {pattern}: no file matches")
        for path in files:
            if any(path in group for group in grouped.values()):
                continue  # matched by two patterns: read once, or its records count twice
            fmt = input_format if input_format != "auto" else format_of(path)
            if fmt is None:
                raise UserError(f"cannot tell the format of {path} from its name: "
                                f"give --input-format ({', '.join(FORMATS)})")
            grouped.setdefault(fmt, []).append(path)
    if not grouped:
        raise UserError("--input names no file")
    if "parquet" in grouped and match:
        _check_parquet(grouped["parquet"])
    if "csv" in grouped and match:
        _check_csv(grouped["csv"])
    return grouped


def _check_parquet(paths: list[str]) -> None:
    import pyarrow.parquet as pq

    for path in paths:
        try:
            with FileSystems.open(path) as fh:
                pq.ParquetFile(fh).schema_arrow  # noqa: B018 - reads the footer
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{path} is not a readable Parquet file: {exc}") from None


def _csv_records(fh):
    """(line number, record bytes) of a CSV file: a record is a line, or several when a
    quoted field holds a newline (RFC 4180: an odd count of quotes means the field is
    still open); line endings are dropped, a newline inside a field is kept as ``\\n``."""
    pending: list[bytes] = []
    start = 0
    for lineno, line in enumerate(fh, start=1):
        line = line.rstrip(b"\r\n")
        if not pending:
            start = lineno
        pending.append(line)
        if sum(part.count(b'"') for part in pending) % 2 == 0:
            yield start, b"\n".join(pending)
            pending = []
    if pending:  # a quote never closed: one record, which bronze rejects with a reason
        yield start, b"\n".join(pending)


def csv_header(record: bytes) -> tuple[str, ...]:
    """A header record's column names (quotes, as a CSV writer may put them, removed)."""
    import csv

    try:
        text = record.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ()  # every row then fails bronze with a column-count reason
    try:
        names = next(csv.reader([text], strict=True), [])
    except csv.Error:
        return ()
    return tuple(name.strip() for name in names)


def read_csv_file(path: str):
    """Every record of a CSV file after its header, with the header and the line number
    where the record starts."""
    with FileSystems.open(path) as fh:
        records = _csv_records(fh)
        first = next(records, None)
        if first is None:
            return
        header = csv_header(first[1])
        for lineno, record in records:
            yield RawRecord(record, f"{path}:{lineno}", header)


def _known_columns() -> frozenset[str]:
    from schemas.regional import SHAPES
    from schemas.server_metrics import SERVER_METRIC

    return frozenset(SERVER_METRIC.names) | {a.column for s in SHAPES for a in s.aliases}


def _check_csv(paths: list[str]) -> None:
    """A CSV file whose first row names no column we know has no header (its first record
    would be eaten as one): one line, before anything runs."""
    known = _known_columns()
    for path in paths:
        with FileSystems.open(path) as fh:
            first = next(_csv_records(fh), None)
        if first is None:
            continue
        header = csv_header(first[1])
        if header and not known & set(header):
            shown = ", ".join(header[:4]) + (", …" if len(header) > 4 else "")
            raise UserError(f"{path}: the first row ({shown}) is not a header: no column is "
                            "named like server_id, timestamp, cpu_usage, … (a CSV file needs "
                            "its header row)")


class ReadServerMetricFiles(beam.PTransform):
    """Files grouped by format (see :func:`resolve_inputs`) → RawRecords."""

    def __init__(self, files: dict[str, list[str]]):
        super().__init__()
        self._files = files

    def expand(self, pbegin):
        parts = []
        if self._files.get("jsonl"):
            # The lines exactly as the batch source frames them, one record each.
            parts.append(
                pbegin
                | "ReadJsonLines" >> ReadRawBatches({"jsonl": self._files["jsonl"]})
                | "JsonToRaw" >> beam.FlatMap(raw_records))
        if self._files.get("csv"):
            parts.append(
                pbegin
                | "CsvFiles" >> beam.Create(self._files["csv"])
                | "ReadCsvLines" >> beam.FlatMap(read_csv_file))
        if self._files.get("parquet"):
            parts.append(
                pbegin
                | "ParquetFiles" >> beam.Create(self._files["parquet"])
                | "ReadParquetRows" >> beam.io.ReadAllFromParquet(with_filename=True)
                | "ParquetToRaw" >> beam.MapTuple(lambda name, row: RawRecord(row, name)))
        if len(parts) == 1:
            return parts[0]
        return tuple(parts) | "AllInputs" >> beam.Flatten()


# ---- raw batches ------------------------------------------------------------------------
#: Lines per raw batch: large enough that per-element costs vanish (and that a batch holds
#: few fragments per server and day: 10,000 gave 5× the fragments, 10 % slower), small
#: enough that a batch of typical records stays some 15 MiB.
BATCH_LINES = 50_000
#: Uncompressed files are read in ranges of this size, so large files spread over workers.
RANGE_BYTES = 32 << 20
COMPRESSED = (".gz", ".bz2", ".zst", ".deflate", ".zlib", ".lzma", ".xz")


def split_ranges(path: str, range_bytes: int = RANGE_BYTES):
    """A file → (path, start, end) byte ranges; a compressed file is one range."""
    if path.lower().endswith(COMPRESSED):
        yield path, 0, None
        return
    size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    for start in range(0, max(size, 1), range_bytes):
        yield path, start, min(start + range_bytes, size)


def read_line_range(path_range, batch_lines: int = BATCH_LINES):
    """(path, start, end) → raw batches of the lines that start in [start, end).

    A line belongs to the range its first byte is in: a range after the first skips the
    line it starts inside of, and every range completes the line it ends inside of."""
    path, start, end = path_range
    with FileSystems.open(path) as fh:
        if end is None:
            data = fh.read()
        else:
            if start:
                fh.seek(start - 1)
                skipped = fh.readline()  # the previous range's last line (or its newline)
                start += len(skipped) - 1
            if start >= end:
                return
            data = fh.read(end - start)
            if data and not data.endswith(b"\n"):
                data += fh.readline()
    if not data:
        return
    if start == 0 and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]  # an editor's mark, not part of the first line
    progress.add(0, len(data) if end is not None else 0)  # a compressed file's size differs
    if b"\r" in data:  # CRLF line ends: a line's final CR is not part of it
        data = data.replace(b"\r\n", b"\n")
        if data.endswith(b"\r"):
            data = data[:-1]
    for batch in line_batches(data, path, batch_lines):
        progress.add(batch.num_rows)
        yield batch


def line_batches(data: bytes, path: str, batch_lines: int):
    """Newline-separated ``data`` → raw batches of ``batch_lines`` lines, each payload
    array built from the bytes at once (newline offsets with numpy, the newlines removed
    in one pass) instead of a Python bytes object per line."""
    if not data.endswith(b"\n"):
        data += b"\n"
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    ends -= np.arange(len(ends))  # each line's end once the newlines before it are gone
    values = data.replace(b"\n", b"")
    for i in range(0, len(ends), batch_lines):
        first = int(ends[i - 1]) if i else 0
        part = ends[i:i + batch_lines]
        offsets = np.empty(len(part) + 1, np.int32)
        offsets[0], offsets[1:] = 0, part - first
        # Each batch owns its bytes: a slice of one array would carry the whole range's.
        payloads = pa.BinaryArray.from_buffers(pa.binary(), len(part), [
            None, pa.py_buffer(offsets), pa.py_buffer(values[first:int(part[-1])])])
        yield raw_lines(payloads, path)


def read_csv_batches(path: str, batch_lines: int = BATCH_LINES):
    """A CSV file → raw batches of its rows with the file's header (``read_csv_file``)."""
    payloads, sources, header = [], [], None
    for raw in read_csv_file(path):
        header = raw.header
        payloads.append(raw.payload)
        sources.append(raw.source)
        if len(payloads) >= batch_lines:
            progress.add(len(payloads))
            yield raw_lines(payloads, sources, CSV, header)
            payloads, sources = [], []
    if payloads:
        progress.add(len(payloads))
        yield raw_lines(payloads, sources, CSV, header)


def read_parquet_batches(path: str, batch_rows: int = BATCH_LINES):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with FileSystems.open(path) as fh:
        parquet = pq.ParquetFile(fh)
        for group in range(parquet.num_row_groups):
            try:
                table = parquet.read_row_group(group)
            except Exception as exc:  # noqa: BLE001 - corrupt pages: its rows dead-lettered
                rows = parquet.metadata.row_group(group).num_rows
                reason = " ".join(str(exc).split())
                yield unreadable_rows(f"{path}#row-group-{group}", rows,
                                      f"row group {group} of {path} cannot be read: {reason}")
                continue
            for batch in table.to_batches(max_chunksize=batch_rows):
                progress.add(batch.num_rows)
                yield raw_rows(pa.Table.from_batches([batch]), path)


#: Declared, so that the runner samples and moves raw batches with the Arrow coder.
_TABLE = pa.Table


class ReadRawBatches(beam.PTransform):
    """Files grouped by format (see :func:`resolve_inputs`) → raw batches: the lines of
    line files (JSON lines, access logs) as they are, CSV rows with their header, Parquet
    row groups as typed rows. Every record kind reads its files with it."""

    def __init__(self, files: dict[str, list[str]], batch_lines: int = BATCH_LINES,
                 range_bytes: int = RANGE_BYTES):
        super().__init__()
        self._files = files
        self._batch_lines = batch_lines
        self._range_bytes = range_bytes

    def expand(self, pbegin):
        parts = []
        size = self._batch_lines
        if self._files.get("jsonl"):
            parts.append(
                pbegin
                | "JsonFiles" >> beam.Create(self._files["jsonl"])
                | "SplitRanges" >> beam.FlatMap(split_ranges, self._range_bytes)
                | "SpreadRanges" >> beam.Reshuffle()
                | "ReadJsonBatches" >> beam.FlatMap(read_line_range, size)
                .with_output_types(_TABLE))
        if self._files.get("csv"):
            parts.append(
                pbegin
                | "CsvFiles" >> beam.Create(self._files["csv"])
                | "ReadCsvBatches" >> beam.FlatMap(read_csv_batches, size)
                .with_output_types(_TABLE))
        if self._files.get("parquet"):
            parts.append(
                pbegin
                | "ParquetFiles" >> beam.Create(self._files["parquet"])
                | "ReadParquetBatches" >> beam.FlatMap(read_parquet_batches, size)
                .with_output_types(_TABLE))
        if len(parts) == 1:
            return parts[0]
        return tuple(parts) | "AllInputs" >> beam.Flatten()


def count_input_records(files) -> int:
    """How many records the files hold, counted apart from the pipeline (the summary
    compares it with what bronze accepted and rejected): lines of JSON-lines and log
    files, rows after the header of CSV files, rows in Parquet footers. ``files``: paths of
    lines, or paths grouped by format (see :func:`resolve_inputs`)."""
    grouped = files if isinstance(files, dict) else {"jsonl": files}
    total = 0
    for fmt, paths in grouped.items():
        for path in paths:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                with FileSystems.open(path) as fh:
                    total += pq.ParquetFile(fh).metadata.num_rows
                continue
            if fmt == "csv":
                total += _count_csv_records(path)
                continue
            lines, last = 0, b"\n"
            with FileSystems.open(path) as fh:
                while chunk := fh.read(8 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            lines += last != b"\n"  # a last line without its newline
            total += lines
    return total


def _count_csv_records(path: str) -> int:
    """Records after the header: lines, less those a quoted field carries on (the quotes
    counted here afresh, not by the reader)."""
    records, open_quotes = 0, False
    with FileSystems.open(path) as fh:
        for line in fh:
            if line.count(b'"') % 2:
                open_quotes = not open_quotes
            if not open_quotes:
                records += 1
    return max(records + open_quotes - 1, 0)
