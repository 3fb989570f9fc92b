"""`python -m run --streaming` end to end: the official Pub/Sub emulator or the live
generator, a bounded run that drains, and the lakehouse it leaves behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.ops.pubsub import setup
from tests.streaming_runs import drain_once, written_rows
from tests.test_pubsub import names

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("srv-a", "srv-b", "srv-c")


def record(server: str, at: datetime, cpu: float = 40.0) -> bytes:
    return json.dumps({
        "server_id": server, "server_name": f"web-{server}", "server_type": "web",
        "location": "europe", "timestamp": at.isoformat(timespec="milliseconds"),
        "cpu_usage": cpu, "memory_usage": 50.0, "disk_io": 10.0, "network_in": 5.0,
        "network_out": 4.0, "temperature_c": 55.0, "power_watts": 300.0,
    }).encode()


class Stream:
    """Publishes messages with explicit event ids, so redeliveries can be made on purpose."""

    def __init__(self, topic: str):
        from google.cloud import pubsub_v1

        self.topic = topic
        self.client = pubsub_v1.PublisherClient()
        self.seq = 0
        self.futures = []

    def send(self, data: bytes, at: datetime, event_id: str | None = None) -> str:
        if event_id is None:
            self.seq += 1
            event_id = f"test-{self.seq:06d}"
        self.futures.append(self.client.publish(
            self.topic, data, event_time=at.isoformat(timespec="milliseconds"),
            event_id=event_id))
        return event_id

    def flush(self):
        for future in self.futures:
            future.result(timeout=60)
        self.futures = []


def rows_while_running(output_dir: Path, table: str) -> int:
    """Counts through the catalog's view, as a user would while the pipeline writes."""
    catalog = output_dir / "lakehouse.duckdb"
    if not catalog.exists():
        return 0
    try:
        with connect_catalog(catalog) as con:
            return con.execute(f"select count(*) from {table}").fetchone()[0]
    except duckdb.IOException:  # the catalog is being written at start-up
        return 0


def test_streaming_from_pubsub_accounts_for_every_record(pubsub_emulator, tmp_path):
    """Malformed, duplicate, redelivered, late-but-allowed and too-late records each end in
    their place; the bounded run drains and the summary's identities hold."""
    topic, subscription = names()
    setup(topic, subscription)
    stream = Stream(topic)
    t0 = datetime.now(timezone.utc).replace(microsecond=0)

    # The backlog, published before the pipeline starts: 3 servers × 50 s, on time.
    ids = {}
    for second in range(50):
        at = t0 - timedelta(seconds=49 - second)
        for server in SERVERS:
            ids[server, second] = stream.send(record(server, at), at)
    for i in range(5):  # malformed: not JSON, a wrong type, a missing field
        bad = [b"{not json", record("srv-a", t0).replace(b'"cpu_usage": 40.0', b'"cpu_usage":'
                                                          b' "high"'),
               b'{"server_id": "srv-a"}'][i % 3]
        stream.send(bad, t0)
    for second in (1, 2, 3, 4):  # the same event again, under a new message id
        at = t0 - timedelta(seconds=49 - second)
        stream.send(record("srv-b", at), at)
    for second in (5, 6, 7):  # the same message again: a redelivery
        at = t0 - timedelta(seconds=49 - second)
        stream.send(record("srv-c", at), at, event_id=ids["srv-c", second])
    stream.flush()

    out = tmp_path / "lakehouse"
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--subscription", subscription,
         "--run-for", "150s", "--output-dir", str(out), "--allowed-lateness", "30s",
         "--max-out-of-orderness", "2s", "--early-firing", "2s",
         "--archive", str(tmp_path / "archive")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ})
    try:
        # Once the backlog is through bronze, the watermark stands near t0: publish the
        # stragglers. Too late: their minute closed minutes ago. Late but allowed: behind
        # the watermark, within the allowed lateness.
        deadline = time.monotonic() + 60
        while rows_while_running(out, "server_metrics_bronze") == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the pipeline read nothing"
            time.sleep(0.5)
        for server in SERVERS:
            stream.send(record(server, t0 - timedelta(seconds=300)),
                        t0 - timedelta(seconds=300))
            stream.send(record(server, t0 - timedelta(milliseconds=500), cpu=41.5),
                        t0 - timedelta(milliseconds=500))
        stream.flush()
        # Drained once every record has its outcome (157 in bronze; 5 malformed, 3
        # redelivered, 3 too late and 4 duplicates in the dead letters) and an early pane
        # is written: the drain then writes the final panes.
        stdout, stderr = drain_once(
            proc, lambda: written_rows(out, "bronze", "server_metrics_bronze") >= 157
            and written_rows(out, "dead_letter", "dead_letters") >= 15
            and written_rows(out, "gold", "server_metrics_minutely",
                             "pane_timing = 'EARLY'") > 0, "every outcome and an early pane")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "MISMATCH" not in stdout and stdout.count("✓") == 7, stdout
    assert "Traceback" not in stderr and "moved backwards" not in stderr, stderr[-3000:]

    con = connect_catalog(out)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    reasons = dict(((layer, reason), n) for layer, reason, n in q(
        "select layer, reason, count(*) from dead_letters group by all"))
    assert reasons.pop(("bronze", "redelivered")) == 3
    assert reasons.pop(("bronze", "late")) == 3
    assert reasons.pop(("silver", "duplicate_event")) == 4
    assert sum(n for (layer, _), n in reasons.items() if layer == "bronze") == 5
    assert not [k for k in reasons if k[0] != "bronze"], reasons
    # 150 on time + 4 copies + 3 late but allowed reach silver's dedupe; 153 are unique.
    assert q("select count(*) from server_metrics_bronze") == [(157,)]
    assert q("select count(*) from server_metrics_silver") == [(153,)]
    assert q("select count(*) from server_metrics_silver where cpu_usage = 41.5") == [(3,)]
    assert q("select sum(record_count) from server_metrics_minutely") == [(153,)]
    assert q("select sum(record_count) from hourly_server_metrics") == [(153,)]
    # The redelivered and too-late payloads are kept verbatim.
    late = q("select payload, source from dead_letters where reason = 'late'")
    assert all(json.loads(p)["server_id"] in SERVERS and s.startswith(subscription)
               for p, s in late)
    # Tables filled while running: early panes, then the final ones of the drain.
    panes = q("select count(*), count(distinct pane_timing) from server_metrics_minutely_panes")
    assert panes[0][0] > q("select count(*) from server_metrics_minutely")[0][0]
    con.close()
    replay_the_archive_and_the_dead_letters(tmp_path / "archive", out, tmp_path)


def replay_the_archive_and_the_dead_letters(archive: Path, out: Path, tmp_path: Path):
    """The raw archive holds the 168 records as received (a redelivery twice) with their
    attributes; replayed in batch it gives them all again, and into the stream's own
    lakehouse it adds nothing; the too-late records' dead letters, replayed, reach silver
    once; replaying twice changes no gold table."""
    from beam_pipelines.cli import main
    from beam_pipelines.io.archive import archive_files, read_archive_file
    from tests.equivalence import table_rows

    entries = [e for f in archive_files(str(archive)) for e in read_archive_file(f)]
    assert len(entries) == 168
    assert all(e["attributes"]["event_id"] and e["attributes"]["event_time"]
               for e in entries)
    assert len({e["source"] for e in entries}) == 165  # 3 redelivered

    def replay(*args):
        import contextlib
        import io

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(["replay", *args]) == 0
        summary = printed.getvalue()  # every identity of the run summary holds
        assert "MISMATCH" not in summary and summary.count("✓") == 7, summary

    def count(lakehouse: Path, sql: str):
        with connect_catalog(lakehouse) as con:
            return con.execute(sql).fetchone()[0]

    # A lakehouse of its own: batch has no lateness, so the too-late records reach silver;
    # a redelivered copy is a duplicate of its event.
    fresh = tmp_path / "replayed"
    replay("--from-archive", str(archive), "--output-dir", str(fresh))
    assert count(fresh, "select count(*) from server_metrics_bronze") == 163
    assert count(fresh, "select count(*) from server_metrics_silver") == 156
    assert count(fresh, "select count(*) from dead_letters") == 5 + 4 + 3

    # Into the stream's own lakehouse: every record is there already.
    gold = ("server_metrics_minutely", "hourly_server_metrics", "server_health_summary",
            "alert_signals", "alert_incidents", "anomalies", "server_alert_matrix")
    replay("--from-archive", str(archive), "--output-dir", str(out))
    assert count(out, "select count(*) from server_metrics_bronze") == 157
    assert count(out, "select sum(record_count) from server_metrics_minutely") == 153
    once = table_rows(out, gold)
    replay("--from-archive", str(archive), "--output-dir", str(out))
    assert table_rows(out, gold) == once

    # The too-late records, taken again from their dead letters: on time in batch.
    replay("--dead-letters", "--reason", "late", "--output-dir", str(out))
    assert count(out, "select count(*) from dead_letters where reason = 'late'") == 0
    assert count(out, "select count(*) from server_metrics_bronze") == 160
    assert count(out, "select count(*) from server_metrics_silver") == 156
    assert count(out, "select sum(record_count) from server_metrics_minutely") == 156
    after = table_rows(out, gold)
    assert after != once
    replay("--dead-letters", "--output-dir", str(out))  # the rest fail as before
    assert table_rows(out, gold) == after
    assert count(out, "select count(*) from dead_letters") == 5 + 4 + 3


def test_streaming_with_the_live_generator_needs_no_service(tmp_path):
    out = tmp_path / "lakehouse"
    proc = subprocess.run(
        [sys.executable, "-m", "run", "--streaming", "--run-for", "12s", "--output-dir",
         str(out), "--sample-servers", "4", "--sample-interval", "200ms"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "live generator (4 servers every 0.2s" in proc.stdout
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 7, proc.stdout
    con = connect_catalog(out)
    bronze, servers = con.execute(
        "select count(*), count(distinct server_id) from server_metrics_bronze").fetchone()
    assert servers == 4 and 150 <= bronze <= 300  # 20 records/s for about 12 s
    assert con.execute("select count(*) from server_metrics_minutely").fetchone()[0] >= 4
    # a file every few seconds per table and day while it ran, one per table and day after
    # the drain (and the summary above, which holds, was read after the compaction)
    assert "Compacted" in proc.stdout
    folders = list(out.glob("*/*/")) + list(out.glob("*/*/date=*/"))
    assert any(f.name.startswith("date=") for f in folders)
    for folder in folders:
        assert len([f for f in folder.glob("part-*.parquet")
                    if f.name != "part-0-empty.parquet"]) <= 1, folder


@pytest.mark.parametrize("args, message", [
    (["--streaming", "--input", "x.jsonl"], "--input reads files in batch"),
    (["--streaming", "--subscription", "metrics"], "is not a subscription path"),
    (["--run-for", "10s"], "--run-for needs --streaming"),
    (["--streaming", "--early-firing", "500ms"], "--early-firing must be at least 1s"),
    (["--streaming", "--run-for", "soon"], "is not a duration"),
    (["--streaming", "--runner", "FnApiRunner"], "not on FnApiRunner"),
])
def test_streaming_mistakes_are_one_line(args, message, tmp_path, mistake):
    assert message in mistake(*args, "--output-dir", str(tmp_path))


def test_a_missing_subscription_is_one_line(pubsub_emulator, tmp_path):
    _, subscription = names()
    proc = subprocess.run([sys.executable, "-m", "run", "--streaming", "--subscription",
                           subscription, "--output-dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 2 and "does not exist" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_one_command_pubsub_demo_runs_and_cleans_up(tmp_path):
    """`make run-streaming-pubsub`: emulator, topic, publisher, pipeline, then all stopped."""
    from tests.services import require

    require("gcloud", "the Pub/Sub emulator")
    out = tmp_path / "lakehouse"
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.ops.demo", "pubsub", "--run-for", "20s",
         "--servers", "3", "--interval", "100ms", "--output-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "created subscription" in proc.stdout
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 7, proc.stdout
    with connect_catalog(out) as con:
        servers = con.execute("select count(distinct server_id) from server_metrics_silver")
        assert servers.fetchone()[0] == 3
    leftover = subprocess.run(["pgrep", "-f", "generators metrics --to pubsub"],
                              capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_ctrl_c_drains_and_prints_the_summary(tmp_path):
    import signal

    out = tmp_path / "lakehouse"
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--output-dir", str(out),
         "--sample-servers", "3", "--sample-interval", "200ms"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while rows_while_running(out, "server_metrics_bronze") == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Draining" in stderr, stderr[-2000:]
    assert "MISMATCH" not in stdout and stdout.count("✓") == 7, stdout
