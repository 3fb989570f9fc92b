"""The batch lakehouse sink: bundles write into a staging folder, and only the files of
bundles that completed are published, once every table is written."""
from __future__ import annotations

import dataclasses
import os

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.lakehouse import (
    WriteParquetFileFn,
    WriteTableFilesFn,
    _PublishFn,
    by_partition,
    staging_dir,
    table_dir,
    write_empty_tables,
    write_tables,
)
from schemas.dead_letter import DEAD_LETTERS
from tests.equivalence import read_table_dir
from transforms.batches import from_rows
from transforms.dead_letters import dead_letter


def _dead_letters(n: int, tag: str) -> pa.Table:
    return from_rows([dead_letter(pipeline="test", layer="bronze", step="Parse",
                                  reason="invalid_json", message=tag, payload=b"{",
                                  source=f"{tag}-{i}") for i in range(n)], DEAD_LETTERS)


def _bundle(fn: WriteTableFilesFn, tables: list[pa.Table]) -> list[tuple[str, str]]:
    fn.start_bundle()
    for t in tables:
        assert list(fn.process(t) or []) == []
    return [wv.value for wv in fn.finish_bundle() or []]


def test_a_bundle_writes_one_file_of_large_row_groups_into_staging(tmp_path):
    staging = staging_dir(str(tmp_path))
    fn = WriteTableFilesFn(staging, table_dir(str(tmp_path), DEAD_LETTERS), DEAD_LETTERS,
                           row_group_rows=5)
    fn.setup()
    [(staged, final)] = _bundle(fn, [_dead_letters(3, "a"), _dead_letters(3, "b"),
                                     _dead_letters(2, "c")])
    assert staged.startswith(staging) and os.path.exists(staged)
    assert not os.path.exists(final)  # nothing is in place before the publish step
    meta = pq.ParquetFile(staged).metadata
    assert (meta.num_rows, meta.num_row_groups) == (8, 2)  # 3+3 rows, then the last 2
    # dead letters go by the day they were processed: today's partition
    assert os.path.dirname(os.path.dirname(final)) == table_dir(str(tmp_path), DEAD_LETTERS)
    assert os.path.basename(os.path.dirname(final)).startswith("date=20")


def test_a_column_of_few_values_keeps_its_dictionary_one_of_many_falls_back_early(tmp_path):
    """Dictionaries are capped at 128 KiB: the step name keeps its dictionary, the unique
    payloads stop hashing into one after 128 KiB and are written plain."""
    staging = staging_dir(str(tmp_path))
    fn = WriteTableFilesFn(staging, table_dir(str(tmp_path), DEAD_LETTERS), DEAD_LETTERS)
    fn.setup()
    import hashlib

    rows = [dead_letter(pipeline="test", layer="bronze", step="Parse", reason="invalid_json",
                        message="m", payload=hashlib.sha256(b"%d" % i).hexdigest().encode(),
                        source=f"s-{i}") for i in range(20_000)]
    [(staged, _)] = _bundle(fn, [from_rows(rows, DEAD_LETTERS)])
    group = pq.ParquetFile(staged).metadata.row_group(0)
    column = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    assert column["step"].has_dictionary_page
    assert column["step"].dictionary_page_offset is not None
    payload = column["payload"]
    assert "PLAIN" in payload.encodings
    # Arrow's default (1 MiB) would have hashed all 1.3 MB of payloads into a dictionary first.
    assert payload.data_page_offset - payload.dictionary_page_offset <= 200 << 10


@pytest.mark.parametrize("writer", ["empty tables", "streaming flush"])
def test_a_reader_of_the_folder_never_sees_a_file_being_written(tmp_path, monkeypatch, writer):
    """A restart writes its empty files, and a streaming run its flushes, while the
    dashboard or a query may be reading the folder: each file appears whole or not at all."""
    directory = table_dir(str(tmp_path), DEAD_LETTERS)
    written_as = []
    write_table = pq.write_table

    def watched(table, where, **kwargs):
        written_as.append(os.path.basename(where if isinstance(where, str) else where.name))
        return write_table(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", watched)
    if writer == "empty tables":
        write_empty_tables(str(tmp_path), [DEAD_LETTERS])
    else:
        os.makedirs(directory)
        list(WriteParquetFileFn(directory).process(_dead_letters(3, "flush")))
    # Written under a name a reader's glob (*.parquet, no hidden files) does not match.
    assert len(written_as) == 1 and written_as[0].startswith("."), written_as
    assert not written_as[0].endswith(".parquet")
    files = [n for n in os.listdir(directory) if not n.startswith(".")]
    assert len(files) == 1 and files == os.listdir(directory)  # no temporary left
    assert pq.read_table(os.path.join(directory, files[0])).num_rows == (
        0 if writer == "empty tables" else 3)


def test_rows_in_day_order_or_not_split_into_the_same_partitions():
    """Gold comes out in day order and is split by slicing; any other order by sorting:
    the same rows go to the same partitions either way."""
    from datetime import datetime, timedelta, timezone

    from schemas.server_metrics import SERVER_METRICS_MINUTELY

    start = datetime(2026, 1, 5, 22, tzinfo=timezone.utc)
    blank = dict.fromkeys(SERVER_METRICS_MINUTELY.names)
    rows = [{**blank, "window_start": start + timedelta(minutes=37 * i),
             "server_id": f"s{i % 3}", "record_count": i} for i in range(12)]
    rows.insert(0, {**blank, "server_id": "s9", "record_count": 99})  # no day: first
    in_order = from_rows(rows, SERVER_METRICS_MINUTELY)
    shuffled = in_order.take(pa.array([5, 0, 11, 12, 3, 8, 1, 10, 2, 7, 4, 9, 6]))

    def split(table):
        return {name: sorted(part.column("record_count").to_pylist())
                for name, part in by_partition(table, SERVER_METRICS_MINUTELY)}

    parts = split(in_order)
    assert parts == split(shuffled)
    assert parts == {"date=2026-01-05": [0, 1, 2, 3], "date=2026-01-06": list(range(4, 12)),
                     "date=__HIVE_DEFAULT_PARTITION__": [99]}


def test_only_completed_bundles_are_published_and_staging_is_removed(tmp_path):
    staging = staging_dir(str(tmp_path))
    fn = WriteTableFilesFn(staging, table_dir(str(tmp_path), DEAD_LETTERS), DEAD_LETTERS)
    fn.setup()
    done = _bundle(fn, [_dead_letters(4, "kept")])
    _bundle(fn, [_dead_letters(5, "failed")])  # a bundle whose result never committed
    assert list(_PublishFn(staging).process(None, done)) == [1]
    table = read_table_dir(table_dir(str(tmp_path), DEAD_LETTERS))
    assert table.num_rows == 4 and set(table.column("message").to_pylist()) == {"kept"}
    assert not os.path.exists(staging)


def test_an_empty_bundle_writes_no_file(tmp_path):
    fn = WriteTableFilesFn(staging_dir(str(tmp_path)), str(tmp_path / "t"), DEAD_LETTERS)
    fn.setup()
    assert _bundle(fn, [DEAD_LETTERS.arrow_schema().empty_table()]) == []


class _Explode(beam.DoFn):
    def process(self, table):
        raise RuntimeError("the pipeline fails after the other table was written")


def test_a_failed_run_publishes_nothing(tmp_path):
    """One table completes, another step fails: no table of the run is touched."""
    out = str(tmp_path)
    p = beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner"))
    good = p | "Good" >> beam.Create([_dead_letters(3, "good")]).with_output_types(pa.Table)
    bad = (p | "Bad" >> beam.Create([_dead_letters(1, "bad")]).with_output_types(pa.Table)
           | "Explode" >> beam.ParDo(_Explode()).with_output_types(pa.Table))
    other = dataclasses.replace(DEAD_LETTERS, name="other_letters")
    write_tables({DEAD_LETTERS.name: good, other.name: bad}, [DEAD_LETTERS, other], out,
                 batches=True)
    with pytest.raises(Exception, match="the pipeline fails"):
        p.run().wait_until_finish()
    assert not os.path.exists(table_dir(out, DEAD_LETTERS))
    assert not os.path.exists(table_dir(out, other))


def test_a_run_publishes_every_table(tmp_path):
    out = str(tmp_path)
    p = beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner"))
    tables = (p | beam.Create([_dead_letters(3, "x"), _dead_letters(2, "y")])
              .with_output_types(pa.Table))
    write_tables({DEAD_LETTERS.name: tables}, [DEAD_LETTERS], out, batches=True)
    p.run().wait_until_finish()
    assert read_table_dir(table_dir(out, DEAD_LETTERS)).num_rows == 5
    assert [f for f in os.listdir(out) if f.startswith(".staging")] == []


def test_the_run_s_mode_chooses_staged_files_or_flushes_in_place(tmp_path):
    from transforms.windowing import BATCH, Streaming

    def steps(mode) -> set[str]:
        p = beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner"))
        tables = p | beam.Create([_dead_letters(1, "x")]).with_output_types(pa.Table)
        write_tables({DEAD_LETTERS.name: tables}, [DEAD_LETTERS], str(tmp_path), mode=mode,
                     batches=True)
        labels = set()

        class Visitor(beam.pipeline.PipelineVisitor):
            def enter_composite_transform(self, node):
                labels.add(node.full_label.rsplit("/", 1)[-1])

            def visit_transform(self, node):
                labels.add(node.full_label.rsplit("/", 1)[-1])

        p.visit(Visitor())
        return labels

    batch, streaming = steps(BATCH), steps(Streaming())
    assert {"WriteFiles", "PublishTables"} <= batch and not batch & {"GroupFlush", "Gather"}
    assert {"Gather", "GroupFlush"} <= streaming
    assert not streaming & {"WriteFiles", "PublishTables"}


# ---- compaction ----------------------------------------------------------------------------
def _minute_rows(n: int, pane: int) -> list[dict]:
    from datetime import datetime, timedelta, timezone

    from schemas.server_metrics import SERVER_METRICS_MINUTELY

    start = datetime(2026, 12, 6, 10, tzinfo=timezone.utc)
    rows = []
    for i in range(n):
        row = {f.name: None for f in SERVER_METRICS_MINUTELY.fields}
        row.update(window_start=start + timedelta(minutes=i),
                   window_end=start + timedelta(minutes=i + 1), metric_date=start.date(),
                   server_id=f"s{i % 3}", pane_index=pane, pane_timing="EARLY",
                   record_count=i + 1, high_utilization_count=0, avg_power_watts=50.0 + i)
        rows.append(row)
    return rows


def test_compaction_makes_a_file_per_partition_and_keeps_every_row_and_pane(tmp_path):
    import duckdb

    from beam_pipelines.io.lakehouse import compact, data_files, table_dir, write_catalog
    from schemas.server_metrics import SERVER_METRICS_MINUTELY

    out = str(tmp_path)
    minutely = table_dir(out, SERVER_METRICS_MINUTELY)
    day = os.path.join(minutely, "date=2026-12-06")
    os.makedirs(day)
    for pane in range(4):  # a streaming run: a file per flush
        table = from_rows(_minute_rows(5, pane), SERVER_METRICS_MINUTELY)
        if pane == 0:  # written before a column was declared: null in the compacted file
            table = table.drop_columns(["avg_power_watts"])
        pq.write_table(table, os.path.join(day, f"part-{pane}.parquet"))
    other_day = os.path.join(minutely, "date=2026-12-05")  # one file: left as it is
    os.makedirs(other_day)
    yesterday = [dict(r, window_start=r["window_start"].replace(day=5),
                      metric_date=r["metric_date"].replace(day=5))
                 for r in _minute_rows(2, 0)]
    pq.write_table(from_rows(yesterday, SERVER_METRICS_MINUTELY),
                   os.path.join(other_day, "part-y.parquet"))
    untouched = os.stat(os.path.join(other_day, "part-y.parquet"))
    catalog = write_catalog(out, [SERVER_METRICS_MINUTELY])

    def read():
        with connect_catalog(catalog) as con:
            return (sorted(con.execute("select * exclude (avg_power_watts) from "
                                       "server_metrics_minutely_panes").fetchall(), key=repr),
                    con.execute("select count(*), max(pane_index) from "
                                "server_metrics_minutely").fetchone())

    with duckdb.connect() as con:
        before = sorted(con.execute(
            "select * exclude (avg_power_watts) from read_parquet(?, union_by_name=true, "
            "hive_partitioning=false)", [os.path.join(minutely, "**", "*.parquet")]
        ).fetchall(), key=repr)
    done = compact(out, [SERVER_METRICS_MINUTELY, DEAD_LETTERS])
    assert (done.tables, done.partitions, done.files_before, done.files_after) == (1, 1, 4, 1)
    assert "Compacted 1 table(s), 1 partition(s): 4 files" in done.line()
    files = [os.path.relpath(f, minutely) for f in data_files(minutely)]
    assert len(files) == 2 and files[0] == "date=2026-12-05/part-y.parquet"
    assert files[1].startswith("date=2026-12-06/part-compacted-")
    assert os.stat(os.path.join(other_day, "part-y.parquet")).st_mtime_ns == \
        untouched.st_mtime_ns
    panes, latest = read()
    assert panes == before and latest == (7, 3)
    assert compact(out, [SERVER_METRICS_MINUTELY]).tables == 0  # one file a partition


def test_compaction_moves_the_files_of_the_flat_layout_into_partitions(tmp_path):
    """A lakehouse written before tables were partitioned by day is read as it is, and
    compaction moves its files into the day folders."""
    from beam_pipelines.io.lakehouse import compact, data_files, table_dir, write_catalog
    from schemas.server_metrics import SERVER_METRICS_MINUTELY

    out = str(tmp_path)
    minutely = table_dir(out, SERVER_METRICS_MINUTELY)
    os.makedirs(minutely)
    rows = _minute_rows(3, 0) + [dict(r, window_start=r["window_start"].replace(day=7))
                                 for r in _minute_rows(2, 1)]
    pq.write_table(from_rows(rows, SERVER_METRICS_MINUTELY),
                   os.path.join(minutely, "part-old.parquet"))
    catalog = write_catalog(out, [SERVER_METRICS_MINUTELY])
    with connect_catalog(catalog) as con:
        assert con.execute("select count(*) from server_metrics_minutely_panes"
                           ).fetchone() == (5,)
    done = compact(out, [SERVER_METRICS_MINUTELY])
    assert (done.files_before, done.files_after) == (1, 2)
    days = {os.path.basename(os.path.dirname(f)): pq.read_table(f).num_rows
            for f in data_files(minutely)}
    assert days == {"date=2026-12-06": 3, "date=2026-12-07": 2}
    with connect_catalog(catalog) as con:
        assert con.execute("select count(*) from server_metrics_minutely_panes"
                           ).fetchone() == (5,)


def test_compact_is_a_command_and_its_mistakes_are_one_line(tmp_path, capsys):
    from beam_pipelines.cli import main
    from beam_pipelines.io.lakehouse import table_dir, write_catalog
    from schemas.server_metrics import SERVER_METRICS_MINUTELY

    assert main(["compact", "--output-dir", str(tmp_path / "none")]) == 2
    assert "is not a lakehouse" in capsys.readouterr().err
    # a lakehouse moved elsewhere: its views name their files relative to the folder
    import shutil

    from schemas.server_metrics import SERVER_METRICS_BRONZE

    old = str(tmp_path / "old")
    os.makedirs(table_dir(old, SERVER_METRICS_BRONZE))
    write_catalog(old, [SERVER_METRICS_BRONZE])
    moved = str(tmp_path / "moved")
    shutil.move(old, moved)
    assert main(["compact", "--output-dir", moved]) == 0
    with connect_catalog(moved) as con:
        assert con.execute("select count(*) from server_metrics_bronze").fetchone() == (0,)
    assert not os.path.exists(table_dir(moved, DEAD_LETTERS))  # no table made up
    out = str(tmp_path / "lake")
    minutely = table_dir(out, SERVER_METRICS_MINUTELY)
    os.makedirs(minutely)
    table = from_rows(_minute_rows(2, 0), SERVER_METRICS_MINUTELY)
    pq.write_table(table, os.path.join(minutely, "part-a.parquet"))
    pq.write_table(table.append_column("retired", pa.array([1, 2])),
                   os.path.join(minutely, "part-b.parquet"))
    write_catalog(out, [SERVER_METRICS_MINUTELY])
    assert main(["compact", "--output-dir", out]) == 2
    err = capsys.readouterr().err
    assert "column(s) retired the schema no longer declares" in err and err.count("\n") == 1
    assert sorted(os.listdir(minutely)) == ["part-a.parquet", "part-b.parquet"]  # as it was


def test_compacted_dead_letters_keep_a_file_per_pipeline(tmp_path):
    """A batch run replaces only its own pipeline's dead letters, file by file: compaction
    must not mix the pipelines in one file."""
    from beam_pipelines.io.lakehouse import clear_tables, compact, table_dir

    out = str(tmp_path)
    directory = table_dir(out, DEAD_LETTERS)
    os.makedirs(directory)
    for i, pipeline in enumerate(["server_metrics", "web_logs", "server_metrics"]):
        letter = dead_letter(pipeline=pipeline, layer="bronze", step="Parse",
                             reason="invalid_json", message="x", payload=f"p{i}",
                             source=f"s{i}")
        pq.write_table(from_rows([letter], DEAD_LETTERS), os.path.join(directory,
                                                                       f"part-{i}.parquet"))
    done = compact(out, [DEAD_LETTERS])
    assert (done.files_before, done.files_after) == (3, 2)
    clear_tables(out, [DEAD_LETTERS], "server_metrics")  # the metrics pipeline runs again
    left = read_table_dir(directory).column("pipeline").to_pylist()
    assert left == ["web_logs"]


def test_dead_letters_are_stamped_with_the_pipeline_once_at_the_sink(tmp_path):
    """Layers leave a dead letter's pipeline empty; the sink names it, in batches and in
    rows, and the batches keep the Arrow coder through the stamp."""
    from beam_pipelines.io.sinks import write_tables as write_to_sink
    from transforms.dead_letters import StampPipeline, stamped

    made = dead_letter(layer="bronze", step="Parse", reason="invalid_json", message="m",
                       payload=b"{")
    assert made["pipeline"] is None
    assert stamped(made, "web_logs")["pipeline"] == "web_logs"
    batch = from_rows([made, made], DEAD_LETTERS)
    again = stamped(batch, "web_logs")
    assert again.schema == batch.schema and again.column("pipeline").to_pylist() == [
        "web_logs", "web_logs"]

    out = str(tmp_path)
    with beam.Pipeline(options=PipelineOptions([], runner="FnApiRunner")) as p:
        batches = p | "Batches" >> beam.Create([batch, from_rows([made], DEAD_LETTERS)])
        batches.element_type = pa.Table
        assert (batches | "Probe" >> StampPipeline("x")).element_type is pa.Table
        write_to_sink(out, {DEAD_LETTERS.name: batches}, [DEAD_LETTERS],
                      pipeline="server_metrics", batches=True)
    names = read_table_dir(table_dir(out, DEAD_LETTERS)).column("pipeline").to_pylist()
    assert names == ["server_metrics"] * 3
