"""Batch runs that accumulate in one lakehouse, day after day. ``--mode replace`` (the
default): a run's files replace their own earlier records and keep every other file's;
``--mode append``: a file read before is skipped. Either way gold over the days run one
by one is gold over all of them at once; ``--mode overwrite`` keeps nothing else."""
from __future__ import annotations

import contextlib
import glob
import io
import os

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.cli import main
from generators.cli import main as generate
from tests.equivalence import table_rows

GOLD = ("server_metrics_minutely", "hourly_server_metrics", "server_health_summary",
        "location_performance", "server_alert_matrix", "alert_signals", "anomalies",
        "alert_incidents", "server_metrics_bronze")


def run(*args) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(list(args)) == 0
    out = printed.getvalue()
    checks = 10 if args[:1] == ("logs",) else 7  # the summary's identities of each kind
    assert "MISMATCH" not in out and out.count("✓") == checks, out
    return out


def test_days_appended_one_by_one_make_the_gold_of_all_at_once(tmp_path):
    days = tmp_path / "in"
    days.mkdir()
    for day, start in ((1, "2026-01-05T00:00:00Z"), (2, "2026-01-05T00:30:00Z")):
        assert generate(["metrics", "--servers", "3", "--interval", "10s", "--duration",
                         "30m", "--malformed-rate", "0.02", "--start", start, "--output",
                         str(days / f"day{day}.jsonl")]) == 0
    day1, day2 = str(days / "day1.jsonl"), str(days / "day2.jsonl")
    appended, at_once = tmp_path / "appended", tmp_path / "at-once"
    out = run("--input", day1, "--output-dir", str(appended), "--mode", "append")
    assert "1 new file(s)" in out
    out = run("--input", day1, "--input", day2, "--output-dir", str(appended),
              "--mode", "append")
    assert "1 new file(s), 1 read before, skipped" in out
    run("--input", day1, "--input", day2, "--output-dir", str(at_once))
    assert table_rows(appended, GOLD) == table_rows(at_once, GOLD)
    # once more: every file read before, nothing changes
    out = run("--input", str(days), "--output-dir", str(appended), "--mode", "append")
    assert "0 new file(s), 2 read before, skipped" in out
    assert table_rows(appended, GOLD) == table_rows(at_once, GOLD)


def test_append_is_for_batch_runs_into_the_lakehouse(tmp_path, capsys):
    assert main(["--streaming", "--mode", "append", "--output-dir", str(tmp_path)]) == 2
    assert "--mode append is for batch runs" in capsys.readouterr().err


def _day(path, start: str, seed: int = 42, servers: int = 3) -> str:
    assert generate(["metrics", "--servers", str(servers), "--interval", "10s",
                     "--duration", "20m", "--malformed-rate", "0.02", "--duplicate-rate",
                     "0.02", "--start", start, "--seed", str(seed), "--output",
                     str(path)]) == 0
    return str(path)


def _lines(path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _dead_letters(lakehouse) -> list:
    with connect_catalog(lakehouse) as con:
        return sorted(con.execute("select layer, reason, source, count(*) from dead_letters "
                                  "group by all").fetchall())


def _day_files(lake, day: str) -> dict:
    """The bronze and silver files of one day's partitions, with what tells whether a run
    rewrote them (gold is computed again whole every run)."""
    paths = glob.glob(str(lake / "*" / "*" / f"date={day}" / "*.parquet"))
    return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in paths
            if os.sep + "gold" + os.sep not in p}


def test_replace_keeps_other_files_and_replaces_the_files_read_again(tmp_path):
    day1 = _day(tmp_path / "day1.jsonl", "2026-01-05T00:00:00Z")
    day2 = _day(tmp_path / "day2.jsonl", "2026-01-06T00:00:00Z")
    lake, at_once = tmp_path / "lake", tmp_path / "at-once"
    tables = GOLD + ("server_metrics_silver",)

    def same() -> None:
        assert table_rows(lake, tables) == table_rows(at_once, tables)
        assert _dead_letters(lake) == _dead_letters(at_once)

    run("--input", day1, "--output-dir", str(lake))
    first_day = _day_files(lake, "2026-01-05")
    assert {os.path.basename(os.path.dirname(os.path.dirname(p))) for p in first_day} == {
        "server_metrics_bronze", "server_metrics_silver"}
    out = run("--input", day2, "--output-dir", str(lake))  # day 2 does not replace day 1
    assert f"1 file(s); {_lines(day1):,} records of other inputs kept" in out
    assert _day_files(lake, "2026-01-05") == first_day  # not even rewritten
    second_day = _day_files(lake, "2026-01-06")
    assert second_day
    run("--input", day1, "--input", day2, "--output-dir", str(at_once))
    same()
    # Day 1 again, corrected (another fleet): its earlier records go, day 2's stay.
    before = _lines(day1)
    _day(tmp_path / "day1.jsonl", "2026-01-05T00:00:00Z", seed=7, servers=4)
    out = run("--input", day1, "--output-dir", str(lake))
    assert (f"1 read before ({before:,} earlier records replaced); {_lines(day2):,} "
            "records of other inputs kept") in out
    run("--input", day1, "--input", day2, "--output-dir", str(at_once))
    same()
    assert _day_files(lake, "2026-01-06") == second_day
    assert not set(_day_files(lake, "2026-01-05")) & set(first_day)  # replaced
    with connect_catalog(lake) as con:
        assert con.execute("select count(distinct server_id) from server_metrics_silver "
                           "where source = ?", [day1]).fetchone()[0] == 4
    # overwrite: this run's records alone
    out = run("--input", day2, "--output-dir", str(lake), "--mode", "overwrite")
    assert "Replacing in" not in out
    with connect_catalog(lake) as con:
        assert con.execute("select distinct source from server_metrics_silver"
                           ).fetchall() == [(day2,)]


def test_web_logs_replace_what_their_files_cover(tmp_path):
    logs = []
    for day, start in ((1, "2026-01-05T00:00:00Z"), (2, "2026-01-06T00:00:00Z")):
        logs.append(str(tmp_path / f"access-{day}.log"))
        assert generate(["logs", "--duration", "3m", "--rate", "5", "--malformed-rate",
                         "0.02", "--start", start, "--output", logs[-1]]) == 0
    lake, at_once = tmp_path / "lake", tmp_path / "at-once"
    tables = ("web_logs_bronze", "web_logs_silver", "web_traffic_by_status", "web_top_paths")
    salt = ("--ip-salt", "one-salt")  # visitor ids that runs can share
    for _ in range(2):  # the second time, each file replaces its own records
        for path in logs:
            run("logs", "--input", path, "--output-dir", str(lake), *salt)
    run("logs", "--input", logs[0], "--input", logs[1], "--output-dir", str(at_once), *salt)
    assert table_rows(lake, tables) == table_rows(at_once, tables)
    assert _dead_letters(lake) == _dead_letters(at_once)


def test_a_generated_sample_is_never_kept_beside_real_records(tmp_path, capsys):
    # Days apart from the sample's (it starts on 2026-01-05, the same fleet's ids).
    day1 = _day(tmp_path / "day1.jsonl", "2026-02-05T00:00:00Z")
    day2 = _day(tmp_path / "day2.jsonl", "2026-02-06T00:00:00Z")
    lake, at_once = tmp_path / "lake", tmp_path / "at-once"
    sample = ("--sample-servers", "2", "--sample-duration", "10m")
    run("--output-dir", str(lake), *sample, "--mode", "append")
    run("--input", day1, "--output-dir", str(lake), "--mode", "append")
    out = run("--input", day2, "--output-dir", str(lake))  # replace: the sample goes
    assert "the generated sample's" in out and "records removed" in out
    assert f"; {_lines(day1):,} records of other inputs kept" in out
    run("--input", day1, "--input", day2, "--output-dir", str(at_once))
    assert table_rows(lake, GOLD) == table_rows(at_once, GOLD)
    # A sample into a lakehouse of real records would mix with them: refused, one line.
    capsys.readouterr()
    assert main(["--output-dir", str(lake), *sample]) == 2
    assert "a generated sample would mix with" in capsys.readouterr().err
    with connect_catalog(lake) as con:
        assert {s for (s,) in con.execute("select distinct source from "
                                          "server_metrics_silver").fetchall()} == {day1, day2}
