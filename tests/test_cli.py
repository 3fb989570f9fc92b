"""``python -m run`` end to end, and its errors: one clear line, never a traceback."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.lakehouse import data_files, table_dir
from beam_pipelines.server_metrics import TABLES
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.writers import write_metrics

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lakehouse")
    proc = run_cli("--output-dir", str(out), "--sample-servers", "6",
                   "--sample-duration", "30m", "--sample-interval", "10s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def test_default_run_writes_every_table_with_its_declared_schema(sample_run):
    out, _ = sample_run
    for schema in TABLES:
        files = data_files(table_dir(str(out), schema)) or glob.glob(
            str(out / schema.layer / schema.name / "part-*.parquet"))  # or the empty file
        assert files, schema.name
        written = pq.read_schema(files[0])
        declared = schema.arrow_schema()
        assert written.names == declared.names, schema.name
        assert [f.type for f in written] == [f.type for f in declared], schema.name
        assert [f.nullable for f in written] == [f.nullable for f in declared], schema.name


def test_the_samples_ground_truth_is_a_table_and_matches_the_printed_counts(sample_run):
    import re

    out, stdout = sample_run
    spikes, incidents = map(lambda s: int(s.replace(",", "")), re.search(
        r"([\d,]+) spikes, ([\d,]+) incidents", stdout).groups())
    with connect_catalog(out) as con:
        kinds = dict(con.execute("select kind, count(*) from injected_faults "
                                 "group by 1").fetchall())
        servers = con.execute("select count(*) from injected_faults where server_id not in "
                              "(select server_id from server_metrics_silver)").fetchone()[0]
    assert kinds.pop("spike", 0) == spikes and sum(kinds.values()) == incidents
    assert spikes + incidents > 0 and servers == 0


def test_summary_shows_layers_reasons_worst_servers_and_where(sample_run):
    out, stdout = sample_run
    assert "Records per layer" in stdout and "✗" not in stdout
    assert stdout.count("✓") == 7  # bronze, silver, four gold identities and the matrix
    assert "Alert signals, every rule" in stdout
    with connect_catalog(out) as con:
        incidents, lapsed, signals = con.execute(
            "select (select count(*) from alert_incidents where fired_at is not null), "
            "(select count(*) from alert_incidents where fired_at is null), "
            "(select count(*) from alert_signals)").fetchone()
    assert (f"Incidents (alert_incidents): {incidents:,} paged from {signals:,} signals; "
            f"{lapsed:,} more lapsed while pending (never paged)") in stdout
    assert "Dead letters by reason" in stdout and "duplicate_event" in stdout
    assert "Five least healthy servers" in stdout
    assert str(out / "lakehouse.duckdb") in stdout


def _duckdb_cli() -> str:
    cli = shutil.which("duckdb", path=os.path.dirname(sys.executable)) or shutil.which("duckdb")
    assert cli, "the duckdb command (duckdb-cli, a dev dependency) is missing"
    return cli


def test_catalog_answers_the_query_the_summary_prints(sample_run):
    import shlex

    out, stdout = sample_run
    printed = next(line for line in stdout.splitlines() if line.startswith("Query:"))
    words = shlex.split(printed.removeprefix("Query:"))
    assert words[0] == "duckdb"
    proc = subprocess.run([_duckdb_cli(), *words[1:-1], "-csv", "-c",
                           "select count(*) from server_health_summary"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) == 6  # six servers, one day
    with connect_catalog(out) as con:
        views = {r[0] for r in con.execute("select view_name from duckdb_views() "
                                           "where not internal").fetchall()}
    assert views == {t.name for t in TABLES} | {f"{t.name}_panes" for t in TABLES if t.key}


def test_a_moved_lakehouse_answers_from_inside_and_from_anywhere(sample_run, tmp_path):
    from beam_pipelines.dashboard.sources import LakehouseSource

    out, _ = sample_run
    moved = tmp_path / "elsewhere" / "lake"
    shutil.copytree(out, moved)
    query = "select count(*) from server_metrics_minutely"
    with connect_catalog(out) as con:
        expected = con.execute(query).fetchone()[0]
    assert expected > 0
    shutil.rmtree(out / "gold")  # the old place is gone: nothing may still read it
    try:
        proc = subprocess.run([_duckdb_cli(), "-readonly", "lakehouse.duckdb", "-csv", "-c",
                               query], capture_output=True, text=True, timeout=60, cwd=moved)
        assert proc.returncode == 0, proc.stderr
        assert int(proc.stdout.split()[-1]) == expected
        with connect_catalog(moved) as con:
            assert con.execute(query).fetchone()[0] == expected
        source = LakehouseSource(str(moved))
        assert int(source.query("select count(*) as n from ${gold}.server_metrics_minutely"
                                ).n[0]) == expected
    finally:
        shutil.copytree(moved / "gold", out / "gold")


def test_tables_are_partitioned_by_the_day_of_their_partition_field(sample_run):
    """``<layer>/<table>/date=YYYY-MM-DD/``: every file of a partitioned table lies in the
    folder of the UTC day all its rows have (the field BigQuery partitions by)."""
    out, _ = sample_run
    partitioned = set()
    for schema in TABLES:
        directory = table_dir(str(out), schema)
        for path in data_files(directory):
            folder = os.path.relpath(os.path.dirname(path), directory)
            if not schema.partition_field:
                assert folder == ".", path
                continue
            values = pq.read_table(path, columns=[schema.partition_field]).column(0)
            days = {v if isinstance(v, date) and not isinstance(v, datetime)
                    else v.astimezone(timezone.utc).date() for v in values.to_pylist()}
            assert [folder] == [f"date={d.isoformat()}" for d in days], path
            partitioned.add(schema.name)
    assert {"server_metrics_bronze", "server_metrics_silver", "server_metrics_minutely",
            "hourly_server_metrics", "server_health_summary"} <= partitioned


def test_a_second_run_replaces_the_tables(sample_run, tmp_path):
    out, _ = sample_run
    before = set(glob.glob(str(out / "silver" / "**" / "*.parquet"), recursive=True))
    proc = run_cli("--output-dir", str(out), "--sample-servers", "2",
                   "--sample-duration", "5m", "--no-summary")
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = set(glob.glob(str(out / "silver" / "**" / "*.parquet"), recursive=True))
    assert before and after and not before & after  # every earlier file replaced
    with connect_catalog(out) as con:
        assert con.execute("select count(distinct server_id) from server_metrics_silver"
                           ).fetchone()[0] == 2


def test_both_pipelines_share_a_lakehouse_without_losing_each_others_dead_letters(tmp_path):
    """The dead-letter table is written by every pipeline: a run replaces its own files
    there, never another pipeline's."""
    def dead_letters() -> dict:
        with connect_catalog(tmp_path) as con:
            return dict(con.execute("select pipeline, count(*) from dead_letters "
                                    "group by pipeline").fetchall())

    metrics = ("--output-dir", str(tmp_path), "--sample-servers", "3",
               "--sample-duration", "10m", "--no-summary")
    assert run_cli(*metrics).returncode == 0
    assert run_cli("logs", "--output-dir", str(tmp_path), "--sample-duration", "2m",
                   "--no-summary").returncode == 0
    both = dead_letters()
    assert both.get("server_metrics", 0) > 0 and both.get("web_logs", 0) > 0, both
    assert run_cli(*metrics).returncode == 0  # replaces its own, not doubled
    assert dead_letters() == both


def test_explicit_inputs_in_several_formats(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    for fmt in ("csv", "parquet"):
        write_metrics(MetricsGenerator(GeneratorConfig(servers=3, count=90, seed=8)),
                      str(data / f"m.{fmt}"), fmt)
    out = tmp_path / "out"
    proc = run_cli("--input", str(data / "*.csv"), "--input", str(data / "m.parquet"),
                   "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with connect_catalog(out) as con:
        # the same 90 events from two files: 90 kept, 90 duplicates dead-lettered
        assert con.execute("select count(*) from server_metrics_silver").fetchone()[0] == 90
        assert con.execute("select count(*) from dead_letters where reason = "
                           "'duplicate_event'").fetchone()[0] == 90


@pytest.mark.parametrize("args, message", [
    (["--outptu-dir", "x"], "unknown option --outptu-dir (did you mean --output-dir?)"),
    # the hyphen spelling the help shows, not Beam's underscore twin
    (["--output", "x"], "unknown option --output (did you mean --output-dir?)"),
    (["--input", "/no/such/file.jsonl"], "no file matches"),
    (["--input", "setup.cfg"], "cannot tell the format"),
    (["--input-format", "xml"], "invalid choice"),
    (["--sample-servers", "many"], "not a whole number"),
    (["--sample-duration", "forever"], "not a duration"),
    (["--sample-interval", "0"], "'0' must be longer than zero"),
    (["logs", "--sample-duration", "0s"], "'0s' must be longer than zero"),
    (["--streaming", "--run-for", "0"], "'0' must be longer than zero"),
    (["--config", "/no/such.yaml"], "does not exist"),
    (["--runner", "WarpDrive"], "unknown runner"),
    (["pipelines"], "unknown pipeline 'pipelines'"),
    (["metrics", "stray"], "unexpected argument stray"),
    (["logs", "--trusted-proxies", "10.0.0.0/8"], "needs the X-Forwarded-For field"),
    (["logs", "--log-format", "nginx_main", "--trusted-proxies", "10.0.0.0/33"],
     "--trusted-proxies: trusted proxy '10.0.0.0/33' is not an address or network"),
    (["logs", "--log-format", "apache"], "nor an Apache or nginx format string"),
])
def test_user_mistakes_are_one_clear_line(args, message, tmp_path, capsys):
    from beam_pipelines.cli import main

    assert main([*args, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_mistake_ends_the_process_with_one_line_and_exit_2(tmp_path):
    """What the in-process cases above show, for the process as a user starts it."""
    proc = run_cli("--sample-servers", "many", "--output-dir", str(tmp_path), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("python -m run: error: argument "
                                   "--sample-servers/--sample_servers: 'many' is not a whole "
                                   "number"), proc.stderr


def test_a_corrupt_parquet_file_is_a_clear_error(tmp_path, mistake):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet file" in mistake("--input", str(bad), "--output-dir",
                                                    str(tmp_path / "o"))


def test_help_lists_the_options():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for flag in ("--input", "--input-format", "--output-dir", "--config", "--runner"):
        assert flag in proc.stdout


def test_views_show_the_latest_pane_of_each_key(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipelines.io.lakehouse import table_dir, write_catalog
    from schemas.server_metrics import SERVER_HEALTH_SUMMARY as S

    rows = []
    for pane, count in ((0, 5), (1, 7), (2, 9)):  # a window fired three times
        row = {n: None for n in S.names}
        row.update(window_start=datetime(2026, 1, 5, tzinfo=timezone.utc),
                   window_end=datetime(2026, 1, 6, tzinfo=timezone.utc),
                   metric_date=date(2026, 1, 5), pane_index=pane,
                   pane_timing="EARLY" if pane < 2 else "ON_TIME", server_id="a",
                   record_count=count, high_utilization_count=0)
        rows.append(row)
    os.makedirs(table_dir(str(tmp_path), S))
    pq.write_table(pa.Table.from_pylist(rows, schema=S.arrow_schema()),
                   os.path.join(table_dir(str(tmp_path), S), "part-0.parquet"))
    with connect_catalog(write_catalog(str(tmp_path), [S])) as con:
        assert con.execute(f"select record_count from {S.name}").fetchall() == [(9,)]
        assert con.execute(f"select count(*) from {S.name}_panes").fetchone()[0] == 3


def test_the_cli_and_the_template_dispatch_on_the_registry_of_pipeline_kinds(monkeypatch):
    """A kind registered once is a CLI word, a template choice, and its launch goes down
    the one launch path."""
    from beam_pipelines import cli, kinds, runs
    from beam_pipelines.ops import flex_template

    ran = []
    kind = kinds.PipelineKind("probe", "probe records", "a probe",
                              kinds.KINDS["logs"].options_ref, "tests.test_cli:_PROBE",
                              "beam_pipelines.summary:render_logs")
    monkeypatch.setitem(kinds.KINDS, "probe", kind)
    monkeypatch.setattr(runs, "launch", lambda options, launch: ran.append(launch) or {
        "catalog": None, "dry_run": True})
    assert cli.main(["probe", "--windows", "1m"]) == 0 and ran == [_PROBE]
    regex = next(p for p in flex_template.metadata()["parameters"]
                 if p["name"] == "pipeline")["regexes"][0]
    assert regex == "^(metrics|logs|probe)$"
    with pytest.raises(ValueError, match="twice"):
        kinds.register(kinds.KINDS["metrics"])


_PROBE = object()  # the probe kind's launch, as the registry loads it


def test_each_flag_is_declared_by_one_options_class_and_a_second_declaration_fails():
    import argparse

    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.options import (
        CommonOptions,
        ServerMetricsOptions,
        WebLogsOptions,
        _flag,
    )

    def own(cls):
        parser = argparse.ArgumentParser(add_help=False)
        cls._add_argparse_args(parser)
        return {a.dest for a in parser._actions}

    common, metrics, logs = own(CommonOptions), own(ServerMetricsOptions), own(WebLogsOptions)
    assert not (common & metrics) and not (common & logs) and not (metrics & logs)
    assert {"input", "output_dir", "subscription", "sink"} <= common
    parser = argparse.ArgumentParser(add_help=False)
    _flag(parser, "windows")
    with pytest.raises(argparse.ArgumentError):
        _flag(parser, "windows")
    # Beam's own view of a kind's options has the shared flags too.
    opts = PipelineOptions(["--output-dir", "x", "--windows", "5m"]).view_as(WebLogsOptions)
    assert (opts.output_dir, opts.windows) == ("x", "5m")
    all_options = PipelineOptions(["--sample-servers", "3"]).get_all_options()
    assert all_options["sample_servers"] == 3 and all_options["output_dir"] == "lakehouse"


def test_a_flag_of_another_pipeline_kind_is_refused_not_silently_taken(capsys):
    from beam_pipelines import cli

    assert cli.main(["logs", "--sample-servers", "3"]) == 2
    assert "unknown option --sample-servers" in capsys.readouterr().err


def test_a_demo_routes_each_flag_to_the_kinds_that_declare_it():
    from beam_pipelines.ops.demo import for_kind

    argv = ["--sample-duration", "20m", "--sample-servers", "3", "--windows=1m",
            "--no-summary", "--sample-rate", "2", "--runner", "FnApiRunner"]
    assert for_kind(argv, "metrics") == ["--sample-duration", "20m", "--sample-servers", "3",
                                         "--no-summary", "--runner", "FnApiRunner"]
    assert for_kind(argv, "logs") == ["--sample-duration", "20m", "--windows=1m",
                                      "--no-summary", "--sample-rate", "2", "--runner",
                                      "FnApiRunner"]


def _as_nobody(path, mode) -> bool:
    """os.access for a user who is neither owner nor in the group: the other bits."""
    st = os.stat(path)
    need = ((4 if mode & os.R_OK else 0) | (2 if mode & os.W_OK else 0)
            | (1 if mode & os.X_OK else 0))
    return st.st_mode & need == need


@pytest.mark.parametrize("pipeline,table", [("metrics", "bronze/server_metrics_bronze"),
                                            ("logs", "gold/web_traffic_by_country")])
def test_an_output_dir_whose_tables_this_user_may_not_replace_is_one_line(
        pipeline, table, monkeypatch, capsys):
    """Tables another user wrote: refused before anything is changed, one line, exit 2.
    As root (where permissions do not apply) the run is made as `nobody`; where `nobody`
    cannot read this checkout, the same command runs in this process with os.access
    answering as `nobody` would."""
    import tempfile

    prefix = []
    if os.geteuid() == 0:
        prefix = [shutil.which("setpriv") or pytest.fail("setpriv (util-linux) is needed"),
                  "--reuid=65534", "--regid=65534", "--clear-groups"]
    top = tempfile.mkdtemp(prefix="lake-perm-")
    try:
        out = Path(top) / "lake"
        theirs = out / table
        theirs.mkdir(parents=True)
        (theirs / "part-0.parquet").write_bytes(b"theirs")
        os.chmod(top, 0o777)
        os.chmod(out, 0o777)  # the directory is open to all; the table is not
        os.chmod(theirs, 0o755 if prefix else 0o555)
        expected = (f"python -m run: error: --output-dir {out}: {theirs} may not be replaced "
                    f"by this user (permission denied); choose another --output-dir")
        argv = [pipeline, "--output-dir", str(out)]
        can_run = not prefix or subprocess.run(
            [*prefix, sys.executable, "-c", "import beam_pipelines"], cwd=ROOT,
            capture_output=True, timeout=60).returncode == 0
        if can_run:
            proc = subprocess.run([*prefix, sys.executable, "-m", "run", *argv], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert proc.stderr.strip() == expected, proc.stderr
        else:
            from beam_pipelines.cli import main

            monkeypatch.setattr(os, "access", _as_nobody)
            assert main(argv) == 2
            assert capsys.readouterr().err.strip() == expected
        assert (theirs / "part-0.parquet").read_bytes() == b"theirs"
    finally:
        os.chmod(top, 0o700)
        for path in Path(top).rglob("*"):
            if path.is_dir():
                os.chmod(path, 0o755)
        shutil.rmtree(top)


def test_a_bad_earliest_event_is_one_line(mistake, tmp_path):
    err = mistake("logs", "--earliest-event", "1990-02-30", "--output-dir", str(tmp_path))
    assert err.strip().endswith("'1990-02-30' is not a date YYYY-MM-DD"), err


def test_a_long_batch_run_prints_its_progress(tmp_path):
    """The progress line: the input read so far (its share of the bytes, non-decreasing),
    then once it is all read, exactly as many records as the file holds."""
    import re

    data = tmp_path / "m.jsonl"
    gen = MetricsGenerator(GeneratorConfig(servers=20, interval_ms=10_000, count=60_000,
                                           seed=3, malformed_rate=0.01))
    write_metrics(gen, str(data), "jsonl")
    lines = data.read_bytes().count(b"\n")
    proc = run_cli("--input", str(data), "--output-dir", str(tmp_path / "out"), "--progress",
                "0.1s", "--no-summary")
    assert proc.returncode == 0, proc.stderr
    progress = [ln for ln in proc.stdout.splitlines() if ln.startswith("Progress: ")]
    shares = [int(m.group(1)) for ln in progress if (m := re.search(r"\((\d+)%\)", ln))]
    assert shares == sorted(shares) and all(0 < s <= 100 for s in shares), progress
    finished = [ln for ln in progress if ln.startswith("Progress: input read (")]
    assert finished and f"({lines:,} records in" in finished[-1], progress
    quiet = run_cli("--input", str(data), "--output-dir", str(tmp_path / "out2"), "--progress",
                 "0", "--no-summary")
    assert quiet.returncode == 0 and "Progress:" not in quiet.stdout


def test_the_progress_reporter_reads_this_process_counters():
    import io
    import time

    from beam_pipelines.io import progress

    out = io.StringIO()
    with progress.ProgressReporter(0.05, total_bytes=1000, out=out) as reporter:
        progress.add(10, 250)
        time.sleep(0.12)
        progress.add(30, 750)
        time.sleep(0.12)
    assert reporter.lines[0].startswith("Progress: 0 of 0 MiB read (25%), 10 records")
    assert "all read in about" in reporter.lines[0]
    assert reporter.lines[-1].startswith("Progress: input read (40 records in")
    assert out.getvalue().splitlines() == reporter.lines
