"""``--mode append``: batch runs that accumulate in one lakehouse, day after day: a file
read before is skipped, and gold over the days appended one by one is gold over all of
them at once."""
from __future__ import annotations

import contextlib
import io

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
    assert "MISMATCH" not in out and out.count("✓") == 7, out
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
