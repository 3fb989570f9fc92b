"""Sources: files of server metrics → RawRecord elements for bronze.

Formats: JSON lines (splittable, read as bytes so that a line that is not UTF-8 becomes a
dead letter rather than a crash), CSV (each line keeps its file's header) and Parquet
(rows arrive already typed). Files are matched and checked before the pipeline starts, so
a wrong path is one clear error, not a failed job.
"""
from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.errors import UserError
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
            fmt = input_format if input_format != "auto" else format_of(path)
            if fmt is None:
                raise UserError(f"cannot tell the format of {path} from its name: "
                                f"give --input-format ({', '.join(FORMATS)})")
            grouped.setdefault(fmt, []).append(path)
    if not grouped:
        raise UserError("--input names no file")
    if "parquet" in grouped and match:
        _check_parquet(grouped["parquet"])
    return grouped


def _check_parquet(paths: list[str]) -> None:
    import pyarrow.parquet as pq

    for path in paths:
        try:
            with FileSystems.open(path) as fh:
                pq.ParquetFile(fh).schema_arrow  # noqa: B018 - reads the footer
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"{path} is not a readable Parquet file: {exc}") from None


def read_csv_file(path: str):
    """Every line of a CSV file after its header, with the header and line number."""
    with FileSystems.open(path) as fh:
        header_bytes = fh.readline().rstrip(b"\r\n")
        try:
            header = tuple(h.strip() for h in header_bytes.decode("utf-8-sig").split(","))
        except UnicodeDecodeError:
            header = ()  # every row then fails bronze with a column-count reason
        for lineno, line in enumerate(fh, start=2):
            yield RawRecord(line.rstrip(b"\r\n"), f"{path}:{lineno}", header)


class ReadServerMetricFiles(beam.PTransform):
    """Files grouped by format (see :func:`resolve_inputs`) → RawRecords."""

    def __init__(self, files: dict[str, list[str]]):
        super().__init__()
        self._files = files

    def expand(self, pbegin):
        parts = []
        for i, path in enumerate(self._files.get("jsonl", ())):
            parts.append(
                pbegin
                | f"ReadJsonLines{i}" >> beam.io.ReadFromTextWithFilename(
                    path, coder=BytesCoder(), validate=False)  # resolve_inputs matched it
                | f"JsonToRaw{i}" >> beam.MapTuple(lambda name, line: RawRecord(line, name)))
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
