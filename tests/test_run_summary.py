"""The run summary's bronze check compares bronze with an input counted apart from the
pipeline (the files' records, or what the live source handed over), so its ✓ can fail."""
from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipelines import cli
from beam_pipelines.io.sources import count_input_records
from beam_pipelines.summary import render, render_logs

_OK = '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5'


def test_records_are_counted_in_each_format(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'{"a": 1}\n\n{"a": 2}')  # no final newline
    (tmp_path / "b.csv").write_bytes(b"server_id,cpu_usage\nx,1\ny,2\n")
    pq.write_table(pa.table({"server_id": ["x", "y", "z"]}), tmp_path / "c.parquet")
    (tmp_path / "empty.csv").write_bytes(b"")
    files = {"jsonl": [str(tmp_path / "a.jsonl")],
             "csv": [str(tmp_path / "b.csv"), str(tmp_path / "empty.csv")],
             "parquet": [str(tmp_path / "c.parquet")]}
    assert count_input_records(files) == 3 + 2 + 3
    assert count_input_records([str(tmp_path / "a.jsonl")]) == 3


def _bronze_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith("bronze"))


def test_the_bronze_check_holds_on_a_run_and_fails_on_a_different_input(tmp_path, capsys):
    log = tmp_path / "access.log"
    log.write_text("\n".join([_OK, _OK.replace("200", "404"), "garbage", ""]) + "\n")
    out = tmp_path / "lake"
    assert cli.main(["logs", "--input", str(log), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"input\s+4\n", printed)
    assert _bronze_line(printed).endswith("✓")
    catalog = str(out / "lakehouse.duckdb")
    assert "✗" in _bronze_line(render_logs(catalog, str(out), input_records=5))
    assert _bronze_line(render_logs(catalog, str(out), input_records=4)).endswith("✓")
    assert "not counted" in render_logs(catalog, str(out))


def test_the_metrics_summary_checks_bronze_against_the_counted_input(tmp_path, capsys):
    data = tmp_path / "m.jsonl"
    data.write_text('{"server_id": "s", "timestamp": "2026-01-05T10:00:00Z", '
                    '"cpu_usage": 5}\nnot json\n')
    out = tmp_path / "lake"
    assert cli.main(["--input", str(data), "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"input\s+2\n", printed) and _bronze_line(printed).endswith("✓")
    catalog = str(out / "lakehouse.duckdb")
    assert "✗" in _bronze_line(render(catalog, str(out), input_records=3))
