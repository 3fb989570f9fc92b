"""kill -9 and restart, against the official Pub/Sub emulator: a message is acknowledged
only once its records are in a terminal table (silver or a dead letter), and a restart on
the same subscription and output directory resumes. Every published event is in bronze
exactly once and has exactly one outcome, and gold equals a batch run over the same
events, whatever moment the first run died at."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.delivery import DeliveryLedger, Resume
from beam_pipelines.ops.pubsub import setup
from tests.streaming_runs import drain_once, events_with_an_outcome, wait_for, written_rows
from tests.test_pubsub import names, pull_all
from tests.test_streaming_run import Stream, record
from transforms.bronze import RawRecord

ROOT = Path(__file__).resolve().parent.parent
SERVERS = tuple(f"srv-{i:02d}" for i in range(20))


# ---- the ledger alone ------------------------------------------------------------------
def test_a_message_is_ready_only_once_every_record_it_carried_is_written():
    ledger = DeliveryLedger()
    kept = ledger.admit("ack-1", [RawRecord(b"{}", "s#1/0"), RawRecord(b"{}", "s#1/1")])
    assert len(kept) == 2 and ledger.take_ready() == []
    ledger.written(["s#1/0"])
    assert ledger.take_ready() == [] and ledger.held_messages() == 1
    ledger.written(["s#1/1", None])
    assert ledger.take_ready() == ["ack-1"] and ledger.held_messages() == 0


def test_what_an_earlier_run_finished_is_acknowledged_without_being_processed_again():
    import pyarrow as pa

    ledger = DeliveryLedger(Resume(bronze=frozenset({"s#1", "s#2"}), terminal=frozenset({"s#1"})))
    assert ledger.admit("ack-1", [RawRecord(b"{}", "s#1")]) == []
    assert ledger.take_ready() == ["ack-1"] and ledger.skipped == 1
    # In bronze but with no outcome yet: processed on, its bronze row not written twice.
    assert len(ledger.admit("ack-2", [RawRecord(b"{}", "s#2")])) == 1
    bronze = pa.table({"source": ["s#2", "s#3"], "x": [1, 2]})
    assert ledger.unwritten_bronze(bronze).column("source").to_pylist() == ["s#3"]
    assert ledger.bronze_rewrites_dropped == 1


def test_held_messages_are_extended_and_pulling_pauses_when_too_many_wait():
    ledger = DeliveryLedger(max_held_records=2)
    ledger.admit("a", [RawRecord(b"{}", "s#1")])
    assert not ledger.saturated() and ledger.overdue(60) == []
    assert ledger.overdue(0) == ["a"]
    ledger.admit("b", [RawRecord(b"{}", "s#2")])
    assert ledger.saturated()
    ledger.written(["s#1", "s#2"])
    assert not ledger.saturated() and sorted(ledger.take_ready()) == ["a", "b"]


# ---- kill -9 and restart, end to end ----------------------------------------------------
def _run(subscription: str, out: Path, duration: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--subscription", subscription,
         "--run-for", duration, "--output-dir", str(out), "--early-firing", "1s",
         "--max-out-of-orderness", "600s", "--allowed-lateness", "600s"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ})


@pytest.mark.parametrize("moment", ["before_any_flush", "mid_flush", "after_silver"])
def test_kill_9_and_restart_loses_nothing_and_writes_nothing_twice(pubsub_emulator, tmp_path,
                                                                  moment):
    topic, subscription = names()
    setup(topic, subscription, ack_deadline_s=10)  # a killed run's messages come back soon
    stream = Stream(topic)
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    ids, payloads = [], []
    for second in range(150):
        at = t0 - timedelta(seconds=149 - second)
        for server in SERVERS:
            payloads.append(record(server, at, cpu=float(second % 97)))
            ids.append(stream.send(payloads[-1], at))
    bad = [stream.send(b"{not json", t0) for _ in range(7)]
    stream.flush()
    published = len(ids) + len(bad)

    out = tmp_path / "lake"
    first = _run(subscription, out, "120s")
    try:
        if moment == "before_any_flush":
            wait_for(first, lambda: (out / "lakehouse.duckdb").exists(), "the catalog")
        elif moment == "mid_flush":
            wait_for(first, lambda: written_rows(out, "bronze", "server_metrics_bronze") > 0,
                      "a bronze file")
        else:
            wait_for(first, lambda: written_rows(out, "silver", "server_metrics_silver") >= 1000,
                      "1,000 silver rows")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    killed_at = time.monotonic()
    written_before = written_rows(out, "bronze", "server_metrics_bronze")

    # The second run ends once every event has its outcome and the killed run's messages
    # have come back (the 10 s ack deadline, and a margin) to be settled.
    second = _run(subscription, out, "240s")
    stdout, stderr = drain_once(
        second, lambda: time.monotonic() - killed_at > 15
        and events_with_an_outcome(out) >= published, "every event's outcome")
    assert second.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    if written_before:
        assert "Resuming:" in stdout, stdout
    # This run's input, plus what the first one wrote, is what bronze accounts for.
    # ... and every gold identity holds: the windows open at the kill were computed whole.
    assert "MISMATCH" not in stdout and stdout.count("✓") == 7, stdout

    con = connect_catalog(out)
    q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
    event = "split_part(source, '#', 2)"
    in_bronze = dict(q(f"select {event}, count(*) from server_metrics_bronze group by 1"))
    assert set(in_bronze) == set(ids) and set(in_bronze.values()) == {1}
    # Exactly one outcome each: a silver row, or a dead letter (a redelivery's dead letter
    # is the outcome of that delivery, not of the event).
    outcomes = dict(q(f"""
        select e, count(*) from (
            select {event} e from server_metrics_silver
            union all
            select {event} e from dead_letters where reason <> 'redelivered')
        group by 1"""))
    assert set(outcomes) == set(ids) | set(bad) and set(outcomes.values()) == {1}
    assert len(outcomes) == published
    streamed = {table: q(_GOLD[table]) for table in _GOLD}
    con.close()
    assert pull_all(subscription, idle_s=2.0) == [], "messages left unacknowledged"

    # Gold equals a batch run over the same events.
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(payloads) + b"\n")
    batch = subprocess.run([sys.executable, "-m", "run", "--input", str(events),
                            "--output-dir", str(tmp_path / "batch"), "--no-summary"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert batch.returncode == 0, batch.stderr[-3000:]
    with connect_catalog(tmp_path / "batch") as con:
        for table, sql in _GOLD.items():
            assert streamed[table] == con.execute(sql).fetchall(), table


_GOLD = {
    "server_metrics_minutely": "select server_id, window_start, record_count, "
                               "round(avg_cpu_usage, 9) from server_metrics_minutely order by all",
    "hourly_server_metrics": "select server_id, window_start, record_count, "
                             "round(avg_cpu_usage, 9) from hourly_server_metrics order by all",
    "location_performance": "select location, window_start, record_count, server_count "
                            "from location_performance order by all",
}

