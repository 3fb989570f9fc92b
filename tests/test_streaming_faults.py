"""Faults of the service and of the clock, against the official Pub/Sub emulator: an
emulator that goes away and comes back (its subscription gone meanwhile) is waited for
with backoff, a line per change of state; one that stays away past --max-source-outage
ends the run, drained, with its summary, one line and exit 2. A record dated 2099 in an
hour-old backlog is a dead letter and leaves the backlog on time."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.live_sources import ServiceHealth
from beam_pipelines.ops.pubsub import setup
from tests.services import PubSubEmulator, require
from tests.streaming_runs import drain_once, wait_for, written_rows
from tests.test_pubsub import names
from tests.test_streaming_run import Stream, record

ROOT = Path(__file__).resolve().parent.parent
SERVERS = tuple(f"srv-{i:02d}" for i in range(10))


# ---- the backoff alone -------------------------------------------------------------------
def test_an_outage_is_said_once_per_change_of_state_and_backs_off_to_a_ceiling():
    now, said = [0.0], []
    health = ServiceHealth("Pub/Sub s", max_outage_s=60, clock=lambda: now[0],
                           say=said.append)
    waits = []
    for _ in range(6):
        health.failed("the service is unreachable")
        waits.append(health._next_try - now[0])
        now[0] = health._next_try
        assert health.due()
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    health.failed("the subscription does not exist")
    health.succeeded()
    assert len(said) == 3 and said[-1].startswith("Pub/Sub s: reading again after")


def test_an_outage_past_the_limit_gives_up_and_drains():
    from beam_pipelines.io import live_sources

    live_sources.reset_drain()
    now = [0.0]
    health = ServiceHealth("Pub/Sub s", max_outage_s=10, clock=lambda: now[0],
                           say=lambda _: None)
    health.failed("the subscription does not exist")
    now[0] = 11.0
    health.failed("the subscription does not exist")
    assert live_sources.drain_requested()
    assert "does not exist for 11s (--max-source-outage 10s)" in live_sources.source_failure()
    live_sources.reset_drain()


# ---- the real emulator -------------------------------------------------------------------
@pytest.fixture
def own_emulator():
    """An emulator of this test alone, which it may stop and start again on its port."""
    require("gcloud", "the Pub/Sub emulator")
    emulator = PubSubEmulator().start()
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    box = {"emulator": emulator}
    try:
        yield box
    finally:
        box["emulator"].stop()
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


def _publish(topic: str, seconds: range, prefix: str) -> list[str]:
    stream = Stream(topic)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    ids = []
    for second in seconds:
        at = now - timedelta(seconds=second)
        for server in SERVERS:
            ids.append(stream.send(record(server, at), at, event_id=f"{prefix}-{server}-{second}"))
    stream.flush()
    return ids


def _run(subscription: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--subscription", subscription,
         "--output-dir", str(out), "--early-firing", "1s", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ})


def _running(out: Path, seconds: int, *flags: str):
    """A subscription with ``seconds`` × servers records, and a run reading it that has
    brought them all to silver: (topic, subscription, ids, the process)."""
    topic, subscription = names()
    setup(topic, subscription)
    ids = _publish(topic, range(seconds, 0, -1), "before")
    proc = _run(subscription, out, *flags)
    try:
        wait_for(proc, lambda: written_rows(out, "silver", "server_metrics_silver") >= len(ids),
                  "the records in silver")
    except BaseException:
        proc.kill()
        raise
    return topic, subscription, ids, proc


def test_an_emulator_restart_is_waited_for_and_reading_resumes(own_emulator, tmp_path):
    out = tmp_path / "lake"
    topic, subscription, before, proc = _running(
        out, 20, "--run-for", "180s", "--max-out-of-orderness", "120s")
    try:
        port = own_emulator["emulator"].port
        own_emulator["emulator"].stop()
        time.sleep(4)
        own_emulator["emulator"] = PubSubEmulator(port=port).start()
        time.sleep(3)  # the pipeline now finds no subscription: it keeps trying
        setup(topic, subscription)
        after = _publish(topic, range(5, 0, -1), "after")
        # Drained once what was published after the restart is in silver too.
        stdout, stderr = drain_once(
            proc, lambda: written_rows(out, "silver", "server_metrics_silver")
            >= len(before) + len(after), "the records published after the restart")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.strip().splitlines()
             if line and not line.startswith("Draining: ")]
    # One line per change of state, not one per retry.
    assert any("unreachable" in line or "does not exist" in line for line in lines), stderr
    assert lines[-1].startswith(f"Pub/Sub {subscription}: reading again after"), stderr
    assert 2 <= len(lines) <= 4, stderr
    with connect_catalog(out) as con:
        got = {s for (s,) in con.execute(
            "select split_part(source, '#', 2) from server_metrics_silver").fetchall()}
    assert set(before) | set(after) <= got
    assert "MISMATCH" not in stdout, stdout


def test_a_subscription_missing_past_the_limit_ends_the_run_with_its_summary(own_emulator,
                                                                             tmp_path):
    from google.cloud import pubsub_v1

    out = tmp_path / "lake"
    _, subscription, _, proc = _running(out, 10, "--run-for", "120s",
                                        "--max-source-outage", "5s")
    try:
        with pubsub_v1.SubscriberClient() as client:
            client.delete_subscription(subscription=subscription)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr[-3000:]
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert lines[-1].startswith(f"python -m run: error: Pub/Sub {subscription}: the "
                                f"subscription does not exist for "), stderr
    assert lines[-1].endswith("(--max-source-outage 5s)"), stderr
    assert len(lines) == 2, stderr  # the change of state, then the end
    assert "Records per layer" in stdout and "MISMATCH" not in stdout, stdout


def test_one_record_from_2099_in_an_hour_old_backlog_leaves_the_backlog_on_time(
        pubsub_emulator, tmp_path):
    topic, subscription = names()
    setup(topic, subscription)
    stream = Stream(topic)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    for second in range(0, 1200, 10):  # 20 minutes of an hour ago, every 10 s
        at = start + timedelta(seconds=second)
        for server in SERVERS:
            stream.send(record(server, at), at)
        if second == 600:
            future = datetime(2099, 1, 1, tzinfo=timezone.utc)
            stream.send(record("srv-00", future), future, event_id="from-2099")
    stream.flush()
    out = tmp_path / "lake"
    proc = _run(subscription, out, "--run-for", "180s")
    # Drained once the backlog is in silver and the record from 2099 in its dead letters.
    stdout, stderr = drain_once(
        proc, lambda: written_rows(out, "silver", "server_metrics_silver") >= 120 * len(SERVERS)
        and written_rows(out, "dead_letter", "dead_letters") >= 1, "the backlog written")
    assert proc.returncode == 0, stderr[-3000:]
    with connect_catalog(out) as con:
        reasons = dict(con.execute(
            "select reason, count(*) from dead_letters group by 1").fetchall())
        silver = con.execute("select count(*) from server_metrics_silver").fetchone()[0]
    assert reasons == {"future_event": 1}, reasons
    assert silver == 120 * len(SERVERS)
    assert "MISMATCH" not in stdout, stdout
