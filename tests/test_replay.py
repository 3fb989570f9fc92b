"""``python -m run replay``: an archive or dead letters through the medallion again,
appended to the lakehouse, with no change on a second replay; mistakes are one line.
(The server-metrics replays run against a real stream's lakehouse in
``test_streaming_run.py``; publishing to a topic in ``test_pubsub.py``.)"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.cli import main
from beam_pipelines.io.archive import ArchiveWriter
from tests.equivalence import table_rows
from transforms.bronze import RawRecord

T0 = datetime(2026, 12, 6, 10, 30, tzinfo=timezone.utc)
WEB_GOLD = ("web_traffic_by_country", "web_traffic_by_city", "web_traffic_by_status",
            "web_top_paths", "web_traffic_by_agent")


def log_line(i: int) -> bytes:
    return (f'203.0.113.{i % 50} - - [06/Dec/2026:10:{i % 60:02d}:00 +0000] "GET /p/{i % 7} '
            f'HTTP/1.1" {200 if i % 9 else 404} {100 + i} "-" "Mozilla/5.0 (X11; Linux)"'
            ).encode()


@pytest.fixture
def log_archive(tmp_path):
    """Two hours of an archive: 40 lines received at 10:30 (one unparseable), 20 at 11:30."""
    now = [T0]
    writer = ArchiveWriter(str(tmp_path / "archive"), lambda: now[0])
    first = [(0, RawRecord(log_line(i), f"tcp://127.0.0.1:9988#{i}")) for i in range(39)]
    writer.write(first + [(0, RawRecord(b"not a log line", "tcp://127.0.0.1:9988#39"))])
    now[0] = T0.replace(hour=11)
    writer.write([(0, RawRecord(log_line(i), f"tcp://127.0.0.1:9988#{i}"))
                  for i in range(40, 60)])
    return tmp_path / "archive"


def count(lakehouse, sql: str):
    with connect_catalog(lakehouse) as con:
        return con.execute(sql).fetchone()[0]


def test_web_logs_replayed_from_an_archive_land_once(log_archive, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("WEB_LOGS_IP_SALT", "the-salt-of-the-earlier-runs")
    out = tmp_path / "lakehouse"
    replay = ["replay", "logs", "--from-archive", str(log_archive), "--output-dir", str(out)]
    # The first hour only.
    assert main(replay + ["--end", "2026-12-06T11:00Z"]) == 0
    printed = capsys.readouterr().out
    assert "Replaying the archive" in printed and "40 new record(s)" in printed
    assert "MISMATCH" not in printed and "✓" in printed
    assert count(out, "select count(*) from web_logs_silver") == 39
    assert count(out, "select reason from dead_letters") == "unparseable_log_line"
    # All of it: the first hour is there already, the second is new.
    assert main(replay) == 0
    printed = capsys.readouterr().out
    assert "20 new record(s), 40 already in the lakehouse, skipped" in printed
    assert "MISMATCH" not in printed
    assert count(out, "select count(*) from web_logs_bronze") == 59
    assert count(out, "select count(*) from dead_letters") == 1
    assert count(out, "select sum(requests) from web_traffic_by_status "
                      "where granularity = 'minute'") == 59
    once = table_rows(out, WEB_GOLD)
    assert main(replay) == 0
    assert table_rows(out, WEB_GOLD) == once
    capsys.readouterr()
    # dead letters chosen by time: none since a day to come; the one line since 2000
    dead = ["replay", "logs", "--dead-letters", "--output-dir", str(out), "--since"]
    assert main(dead + ["2099-01-01"]) == 0
    assert "Nothing to replay" in capsys.readouterr().out
    assert main(dead + ["2000-01-01", "--reason", "unparseable_log_line"]) == 0
    assert "1 dead letter(s) taken again" in capsys.readouterr().out
    assert count(out, "select count(*) from dead_letters") == 1  # unparseable still
    assert table_rows(out, WEB_GOLD) == once


@pytest.mark.parametrize("args, message", [
    ([], "replay what: --from-archive DIR or --dead-letters"),
    (["--from-archive", "A", "--dead-letters"], "replay what"),
    (["--from-archive", "A", "--reason", "late"], "--reason and --since choose dead letters"),
    (["--dead-letters", "--start", "2026-12-06"], "--start and --end choose from an archive"),
    (["--dead-letters", "--reason", "lat"], "--reason lat: not a dead-letter reason"),
    (["--from-archive", "A", "--start", "yesterday"], "--start 'yesterday' is not a time"),
    (["--from-archive", "A", "--start", "2026-12-06T11:00", "--end", "2026-12-06T10:00"],
     "is not after --start"),
    (["--from-archive", "missing"], "--from-archive missing: no such directory"),
    (["--from-archive", "A", "--start", "2030-01-01"], "no archived record"),
    (["--from-archive", "A", "--streaming"], "replay runs in batch"),
    (["--from-archive", "A", "--input", "x.jsonl"], "not --input"),
    (["--from-archive", "A", "--bogus"], "unknown option --bogus"),
    (["nope", "--dead-letters"], "unknown pipeline 'nope'"),
])
def test_replay_mistakes_are_one_line(args, message, log_archive, tmp_path, monkeypatch,
                                      capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "A").symlink_to(log_archive)
    assert main(["replay", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_replay_help_and_nothing_to_replay(tmp_path, capsys):
    assert main(["replay", "--help"]) == 0
    assert "--from-archive DIR" in capsys.readouterr().out
    assert main(["replay", "--dead-letters", "--output-dir", str(tmp_path)]) == 0
    assert "Nothing to replay" in capsys.readouterr().out
