"""The metrics generator: determinism, realism, faults, formats, command line."""
from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from generators.cli import main
from generators.fleet import build_fleet
from generators.metrics import GeneratorConfig, JsonRenderer, MetricsGenerator
from generators.writers import write_metrics
from tests.conftest import NOW
from transforms.bronze import RawRecord
from transforms.dead_letters import RecordRejected
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_silver import to_silver
from transforms.server_metrics.rules import ServerMetricsRules


def generate(path, fmt="jsonl", **kw) -> MetricsGenerator:
    gen = MetricsGenerator(GeneratorConfig(**kw))
    write_metrics(gen, str(path), fmt)
    return gen


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_same_seed_gives_byte_identical_output(tmp_path, fmt):
    kw = dict(servers=7, count=5000, seed=3, malformed_rate=0.02, duplicate_rate=0.02,
              late_rate=0.02)
    generate(tmp_path / f"a.{fmt}", fmt, **kw)
    generate(tmp_path / f"b.{fmt}", fmt, **kw)
    generate(tmp_path / f"c.{fmt}", fmt, **{**kw, "seed": 4})
    assert digest(tmp_path / f"a.{fmt}") == digest(tmp_path / f"b.{fmt}")
    assert digest(tmp_path / f"a.{fmt}") != digest(tmp_path / f"c.{fmt}")


def test_fleet_identities_are_stable_and_follow_seed_000_naming():
    a, b = build_fleet(12, seed=5), build_fleet(12, seed=5)
    assert a == b
    assert len({s.server_id for s in a}) == 12
    assert a[2].server_name == f"{a[2].server_type}-server-003"
    assert {s.server_type for s in build_fleet(200, 1)} == \
        {"web", "database", "application", "cache", "file"}


def test_pacing_start_and_count():
    gen = MetricsGenerator(GeneratorConfig(servers=4, interval_ms=15, count=10,
                                           start=datetime(2026, 3, 1, tzinfo=timezone.utc)))
    events = list(gen.events())
    assert len(events) == 10
    stamps = [iso for _, _, iso, _ in events]
    assert stamps[:4] == ["2026-03-01T00:00:00.000Z"] * 4  # every server reports each tick
    assert stamps[4] == "2026-03-01T00:00:00.015Z"
    cfg = GeneratorConfig(servers=10, interval_ms=15, duration_s=3.0)
    assert cfg.total_events == 2000  # 10 servers every 15 ms for 3 s ≈ seed 000's 667 msg/s


def test_records_are_valid_and_servers_are_told_apart(tmp_path):
    # one day of a 15-server fleet: health must differ between servers (seed 000's did not)
    gen = MetricsGenerator(GeneratorConfig(servers=15, interval_ms=60_000, duration_s=86400,
                                           seed=11))
    per_server = defaultdict(list)
    rules = ServerMetricsRules()
    for raw in gen.render(JsonRenderer()):
        row = to_silver(to_bronze(RawRecord(raw), NOW), rules)
        per_server[row["server_id"]].append(row)
    scores = []
    for rows in per_server.values():
        cpu = statistics.fmean(r["cpu_usage"] for r in rows)
        mem = statistics.fmean(r["memory_usage"] for r in rows)
        high = 100 * sum(r["is_high_utilization"] for r in rows) / len(rows)
        scores.append(100 - (cpu * .4 + mem * .4 + high * .2))
    assert max(scores) - min(scores) > 15, scores
    assert gen.stats.incidents > 0 and gen.stats.anomalies > 0
    # a daily cycle: the busiest local hour is far busier than the quietest
    web = next(rows for rows in per_server.values() if rows[0]["server_type"] != "file")
    by_hour = defaultdict(list)
    for r in web:
        by_hour[r["hour_of_day"]].append(r["cpu_usage"])
    means = [statistics.median(v) for v in by_hour.values()]
    assert max(means) - min(means) > 10


def test_fault_rates_and_their_fate_in_bronze_and_silver(tmp_path):
    gen = generate(tmp_path / "m.jsonl", servers=10, count=20000, seed=2,
                   malformed_rate=0.05, duplicate_rate=0.03, late_rate=0.02)
    s = gen.stats
    assert s.events == 20000 and s.written == 20000 + s.duplicates
    for count, rate in ((s.malformed, 0.05), (s.duplicates, 0.03), (s.late, 0.02)):
        assert abs(count / 20000 - rate) < rate * 0.2
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == s.written
    rejected = Counter()
    for text in lines:
        try:
            to_silver(to_bronze(RawRecord(text), NOW), ServerMetricsRules())
        except RecordRejected as exc:
            rejected[exc.reason] += 1
    assert sum(rejected.values()) == s.malformed  # every malformed record is caught
    assert {"invalid_json", "wrong_type", "missing_required_field", "out_of_range"} \
        <= set(rejected)
    # late records arrive out of order
    stamps = [ts for t in lines if t.endswith("}") and (ts := json.loads(t).get("timestamp"))]
    assert sum(a > b for a, b in zip(stamps, stamps[1:], strict=False)) >= s.late * 0.9


def test_csv_and_parquet_outputs_are_readable(tmp_path):
    generate(tmp_path / "m.csv", "csv", servers=3, count=30)
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0].startswith("server_id,server_name,server_type,location,timestamp,cpu_usage")
    assert len(rows) == 31
    generate(tmp_path / "m.parquet", "parquet", servers=3, count=30)
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.num_rows == 30 and str(table.schema.field("timestamp").type) == \
        "timestamp[ms, tz=UTC]"


def test_command_line(tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["metrics", "--servers", "2", "--count", "6", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 7
    assert "wrote 6 events" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["metrics", "--servers", "0"], "must be at least 1"),
    (["metrics", "--interval", "fast"], "not a duration"),
    (["metrics", "--malformed-rate", "2"], "within [0, 1]"),
    (["metrics", "--start", "tomorrow"], "ISO 8601"),
    (["metrics", "--format", "xml"], "invalid choice"),
    (["metrics", "--count", "3", "--duration", "1m"], "not allowed with"),
    (["metrics", "--malformed-rate", ".6", "--late-rate", ".6"], "more than 1"),
    (["metrics", "--format", "parquet"], "stdout"),
    (["metrics", "-o", "/nonexistent/dir/x.jsonl"], "No such file"),
])
def test_command_line_errors_are_one_clear_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "generators", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_progress_bar_on_request(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "generators", "metrics", "--servers", "5",
                           "--count", "20000", "--progress", "-o", str(tmp_path / "m.jsonl")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "100%" in proc.stderr and "20.0k/20.0k" in proc.stderr


def test_the_ground_truth_lists_exactly_the_faults_that_reached_the_output(tmp_path):
    """One line per injected fault in the records written (never one of the part of a
    block generated past the end), and the printed counts are that file's."""
    out, truth = tmp_path / "m.jsonl", tmp_path / "truth.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--servers", "8", "--interval", "10s",
         "--duration", "3h", "--seed", "5", "--incidents-per-day", "24",
         "--output", str(out), "--ground-truth", str(truth)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    faults = [json.loads(line) for line in truth.read_text().splitlines()]
    kinds = Counter(f["kind"] for f in faults)
    assert f"{kinds['spike']:,} spikes" in proc.stderr
    assert f"{sum(v for k, v in kinds.items() if k != 'spike'):,} incidents" in proc.stderr
    assert kinds["spike"] > 10 and set(kinds) - {"spike"}, kinds
    records = {(r["server_id"], r["timestamp"]): r
               for r in map(json.loads, out.read_text().splitlines())}
    for fault in faults:
        assert fault["start"] <= fault["end"]
        if fault["kind"] == "spike":  # a record of that server at that time, 95–100 %
            record = records[fault["server_id"], fault["start"]]
            assert record["cpu_usage"] >= 95 and record["memory_usage"] >= 95, fault
        else:  # an incident begins within the records written
            assert fault["start"] <= max(t for _, t in records)


def test_a_single_record_counts_no_fault_it_does_not_carry(tmp_path):
    from generators.metrics import GeneratorConfig, MetricsGenerator

    generator = MetricsGenerator(GeneratorConfig(servers=10, count=1, seed=1,
                                                 anomaly_rate=0.5))
    assert len(list(generator.events())) == 1
    assert generator.stats.anomalies == len(generator.faults) <= 1
