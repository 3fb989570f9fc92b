"""kill -9 and restart of a web-log stream, against the official Pub/Sub emulator (the
server-metrics cases, and why, are in ``test_streaming_resume.py``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.ops.pubsub import setup
from tests.streaming_runs import drain_once, events_with_an_outcome, wait_for, written_rows
from tests.test_pubsub import names
from tests.test_streaming_resume import ROOT


def test_web_logs_resume_after_kill_9_with_whole_gold(pubsub_emulator, tmp_path):
    """The same for web logs, four lines a message: a kill once silver has rows, a restart,
    and every identity of the summary holds (gold counts each silver request once)."""
    from generators.publisher import publish
    from generators.weblogs import WebLogConfig, WebLogGenerator

    topic, subscription = names()
    setup(topic, subscription, ack_deadline_s=10)
    start = datetime.now(timezone.utc) - timedelta(seconds=150)
    gen = WebLogGenerator(WebLogConfig(duration_s=120, rate_per_s=20, start=start,
                                       malformed_rate=0.02))
    stats = publish(gen, topic, envelope=4, pace=False, handle_signals=False)
    assert stats.failed == 0
    out = tmp_path / "lake"

    def run(duration: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "run", "logs", "--streaming", "--subscription",
             subscription, "--run-for", duration, "--output-dir", str(out),
             "--early-firing", "1s", "--max-out-of-orderness", "600s",
             "--allowed-lateness", "600s"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ})

    first = run("120s")
    try:
        wait_for(first, lambda: written_rows(out, "silver", "web_logs_silver") > 0, "silver rows")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    killed_at = time.monotonic()
    second = run("240s")
    stdout, stderr = drain_once(
        second, lambda: time.monotonic() - killed_at > 15
        and events_with_an_outcome(out, "web_logs_silver") >= stats.events, "every line's outcome")
    assert second.returncode == 0, stderr[-3000:]
    assert "Resuming:" in stdout and "MISMATCH" not in stdout, stdout
    assert stdout.count("✓") == 10, stdout
    with connect_catalog(out) as con:
        bronze, once = con.execute("select count(*), count(distinct source) "
                                   "from web_logs_bronze").fetchone()
        dead = con.execute("select count(*) from dead_letters where layer = 'bronze' "
                           "and reason <> 'redelivered'").fetchone()[0]
    assert bronze == once and bronze + dead == stats.events
