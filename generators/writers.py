"""Writing generated records: JSON lines, CSV, Parquet or log lines, to a file or stdout."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from generators.metrics import CSV_COLUMNS, CsvRenderer, JsonRenderer, MetricsGenerator, RowRenderer

FORMATS = ("jsonl", "csv", "parquet")


def format_from_path(path: str | None) -> str:
    if path and path != "-":
        for suffix, fmt in ((".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"),
                            (".csv", "csv"), (".parquet", "parquet")):
            if path.lower().endswith(suffix):
                return fmt
    return "jsonl"


def renderer_for(fmt: str):
    return {"jsonl": JsonRenderer, "csv": CsvRenderer, "parquet": RowRenderer}[fmt]()


@contextmanager
def _text_out(path: str):
    if path == "-":
        yield sys.stdout
    else:
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            yield fh


def write_metrics(generator: MetricsGenerator, path: str, fmt: str, progress=None) -> None:
    """Write everything ``generator`` renders; ``progress(n)`` is told of every n events."""
    renderer = renderer_for(fmt)
    records = generator.render(renderer)
    if fmt == "parquet":
        if path == "-":
            raise ValueError("Parquet cannot be written to stdout: give --output FILE")
        _write_parquet(generator, records, path, progress)
        return
    write_lines(generator, records, path, renderer.header(), progress)


def write_lines(generator, lines, path: str, header: str | None = None,
                progress=None) -> None:
    """Text lines (JSON lines, CSV rows, access-log lines) to a file or stdout."""
    with _text_out(path) as out:
        if header:
            out.write(header + "\n")
        batch: list[str] = []
        reported = 0
        for line in lines:
            batch.append(line)
            if len(batch) == 8192:
                out.write("\n".join(batch))
                out.write("\n")
                batch.clear()
                if progress:
                    progress(generator.stats.events - reported)
                    reported = generator.stats.events
        if batch:
            out.write("\n".join(batch))
            out.write("\n")
        if progress:
            progress(generator.stats.events - reported)


def _write_parquet(generator, rows, path, progress) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [pa.field(c, pa.string()) for c in CSV_COLUMNS[:4]]
        + [pa.field("timestamp", pa.timestamp("ms", tz="UTC"))]
        + [pa.field(c, pa.float64()) for c in CSV_COLUMNS[5:]]
    )
    reported = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[tuple] = []

        def flush():
            nonlocal reported
            columns = list(zip(*batch, strict=True))
            writer.write_table(pa.Table.from_arrays(
                [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                schema=schema))
            batch.clear()
            if progress:
                progress(generator.stats.events - reported)
                reported = generator.stats.events

        for row in rows:
            batch.append(row)
            if len(batch) == 65536:
                flush()
        if batch:
            flush()


def write_ground_truth(faults: list[dict], path: str) -> None:
    """One JSON line per injected fault (``MetricsGenerator.faults``)."""
    import json

    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for fault in faults:
            fh.write(json.dumps(fault, separators=(",", ":")) + "\n")
