"""Lines over TCP (seed 001's live stream): the source alone over loopback, its drain,
and both pipelines end to end with the generator, in both directions."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.live_sources import LiveRead
from beam_pipelines.io.tcp import TcpLinePoller, parse_address
from beam_pipelines.ops.local_services import free_port

ROOT = Path(__file__).resolve().parent.parent


def _poll_until(poller, count: int, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += poller.poll(time.time())
        time.sleep(0.02)
    return got


def test_the_listener_takes_every_line_of_every_sender_in_order():
    poller = TcpLinePoller(("127.0.0.1", 0), listen=True)
    poller.open()
    try:
        port = poller.bound_port()
        first = socket.create_connection(("127.0.0.1", port))
        second = socket.create_connection(("127.0.0.1", port))
        # a line split across sends, CRLF, a blank line, a last line with no newline
        first.sendall(b'{"server_id": "a", "timestamp": "2026-01-05T10:00:00Z"}\r\n{"ser')
        second.sendall(b"second-1\n\nsecond-2\n")
        time.sleep(0.1)
        first.sendall(b'ver_id": "b"}\nnot json at all')
        first.close()
        second.close()
        items = _poll_until(poller, 5)
    finally:
        poller.close()
    lines = [record.payload for _, record in items]
    assert sorted(lines) == sorted([b'{"server_id": "a", "timestamp": "2026-01-05T10:00:00Z"}',
                                    b'{"server_id": "b"}', b"not json at all",
                                    b"second-1", b"second-2"])
    assert lines.index(b"second-1") < lines.index(b"second-2")
    sources = [record.source for _, record in items]
    assert len(set(sources)) == 5
    assert all(re.fullmatch(r"tcp://127\.0\.0\.1:\d+@\d+#\d", s) for s in sources)
    assert len({s.split("#")[0] for s in sources}) == 2  # one name per connection
    # event time: the record's own timestamp when it has one, else the arrival
    by_line = dict((record.payload, micros) for micros, record in items)
    assert by_line[lines[lines.index(b'{"server_id": "a", "timestamp": '
                                     b'"2026-01-05T10:00:00Z"}')]] == 1767607200 * 10**6
    assert abs(by_line[b"second-1"] / 1e6 - time.time()) < 30


def test_the_reader_reconnects_when_its_server_goes_away():
    port = free_port()
    served = []

    def serve_twice():
        with socket.create_server(("127.0.0.1", port)) as server:
            for batch in ([b"one\n", b"two\n"], [b"three\n"]):
                conn, _ = server.accept()
                for line in batch:
                    conn.sendall(line)
                served.extend(batch)
                conn.close()  # the server drops the client; it comes back

    thread = threading.Thread(target=serve_twice, daemon=True)
    thread.start()
    time.sleep(0.1)
    poller = TcpLinePoller(("127.0.0.1", port), listen=False, retry_s=0.2)
    poller.open()
    try:
        items = _poll_until(poller, 3)
    finally:
        poller.close()
        thread.join(5)
    assert [record.payload for _, record in items] == [b"one", b"two", b"three"]


def test_a_drain_hands_over_what_was_received_before_it_ends():
    poller = TcpLinePoller(("127.0.0.1", 0), listen=True)
    read = LiveRead(poller, stop_at=None, batches=False)
    read.read(time.time())  # opens the listener
    with socket.create_connection(("127.0.0.1", poller.bound_port())) as conn:
        conn.sendall(b"".join(b"line-%d\n" % i for i in range(50)))
    deadline = time.monotonic() + 5
    while not poller.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    read.stop_at = time.time() - 1  # the run ends now, lines still queued
    got, finished = [], False
    while not finished:
        out, _, finished = read.read(time.time())
        got += out
    assert sorted(v.value.payload for v in got) == sorted(b"line-%d" % i for i in range(50))


def test_a_drain_with_a_full_queue_keeps_every_line():
    """The pipeline is behind (the queue is full) when the run ends: the readers keep what
    they received instead of dropping it, and the drain hands it all over."""
    poller = TcpLinePoller(("127.0.0.1", 0), listen=True, max_queued=10)
    read = LiveRead(poller, stop_at=None, batches=False)
    read.read(time.time())
    with socket.create_connection(("127.0.0.1", poller.bound_port())) as conn:
        conn.sendall(b"".join(b"row-%d\n" % i for i in range(40)))
        time.sleep(0.5)  # 10 queued, the reader waits with the 11th
        read.stop_at = time.time() - 1
        got, finished = [], False
        while not finished:
            out, _, finished = read.read(time.time())
            got += out
    # the reader had all 40 lines in hand (one read over loopback): none is dropped
    assert [v.value.payload for v in got] == [b"row-%d" % i for i in range(40)]


def _run(*args, timeout=300, **kwargs):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _lines_sent(stderr: str) -> int:
    match = re.search(r"([\d,]+) lines to \d+ client", stderr)
    assert match, stderr[-2000:]
    return int(match.group(1).replace(",", ""))


def _accounted(out: Path, bronze: str, pipeline: str) -> tuple[int, int]:
    with connect_catalog(out) as con:
        rows = con.execute(f"SELECT count(*) FROM {bronze}").fetchone()[0]
        dead = con.execute("SELECT count(*) FROM dead_letters WHERE layer = 'bronze' AND "
                           "pipeline = ?", [pipeline]).fetchone()[0]
    return rows, dead


def test_metrics_stream_from_a_generator_that_connects(tmp_path):
    """The pipeline listens; the generator pushes a faulty fleet: every line sent is in
    bronze or a bronze dead letter, and the summary's checks pass."""
    port = free_port()
    pipeline = _run("-m", "run", "--streaming", "--tcp-listen", f"127.0.0.1:{port}",
                    "--run-for", "14s", "--output-dir", str(tmp_path), "--heartbeat", "0")
    time.sleep(4)  # the listener is up well before the generator gives up connecting
    generator = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--to", "tcp", "--tcp-connect",
         f"127.0.0.1:{port}", "--servers", "4", "--interval", "1s", "--duration", "6s",
         "--malformed-rate", "0.2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert generator.returncode == 0, generator.stderr
    out, err = pipeline.communicate(timeout=180)
    assert pipeline.returncode == 0, err[-3000:]
    sent = _lines_sent(generator.stderr)
    assert sent >= 16
    rows, dead = _accounted(tmp_path, "server_metrics_bronze", "server_metrics")
    assert rows + dead == sent and dead > 0
    assert re.search(rf"\binput\s+{sent:,}\n", out), out
    assert "✗" not in out


def test_web_logs_stream_from_a_generator_that_serves(tmp_path):
    """Seed 001's direction: the generator serves the stream, the pipeline connects."""
    port = free_port()
    generator = _run("-m", "generators", "logs", "--to", "tcp", "--tcp-listen",
                     f"127.0.0.1:{port}", "--rate", "20", "--duration", "3s")
    pipeline = subprocess.run(
        [sys.executable, "-m", "run", "logs", "--streaming", "--tcp-connect",
         f"127.0.0.1:{port}", "--run-for", "7s", "--output-dir", str(tmp_path),
         "--heartbeat", "0"], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert pipeline.returncode == 0, pipeline.stderr[-3000:]
    _, err = generator.communicate(timeout=60)
    assert generator.returncode == 0, err
    sent = _lines_sent(err)
    assert sent >= 30
    rows, dead = _accounted(tmp_path, "web_logs_bronze", "web_logs")
    assert rows + dead == sent
    assert "✗" not in pipeline.stdout


@pytest.mark.parametrize("args, message", [
    (["--tcp-listen", "127.0.0.1:9"], "--tcp-listen needs --streaming"),
    (["--streaming", "--tcp-listen", "nowhere"], "--tcp-listen 'nowhere': expected HOST:PORT"),
    (["--streaming", "--tcp-connect", "127.0.0.1:9", "--subscription",
      "projects/p/subscriptions/s"], "read one source: --tcp-connect or --subscription"),
])
def test_a_tcp_mistake_is_one_line_and_exit_2(args, message, tmp_path, mistake):
    assert message in mistake(*args, "--output-dir", str(tmp_path))


def test_the_generator_needs_one_address():
    proc = subprocess.run([sys.executable, "-m", "generators", "metrics", "--to", "tcp"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--to tcp needs one of --tcp-connect HOST:PORT or --tcp-listen" in proc.stderr


def test_addresses_are_host_and_port():
    assert parse_address("127.0.0.1:9988", "--x") == ("127.0.0.1", 9988)
    assert parse_address(":9988", "--x") == ("0.0.0.0", 9988)
    assert parse_address("[::1]:9988", "--x") == ("::1", 9988)
