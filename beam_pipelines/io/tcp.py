"""Lines over TCP as a streaming source (``--tcp-listen`` or ``--tcp-connect``): seed 001's
live stream of JSON lines, or access-log lines.

``--tcp-listen HOST:PORT`` accepts any number of senders; ``--tcp-connect HOST:PORT``
reads from a server that streams lines (reconnecting, with back-off, when it goes away).
Reader threads put complete lines on a bounded queue; when the pipeline falls behind the
queue fills, the readers stop reading and TCP's own flow control slows the senders, so
nothing is dropped here. Each poll hands the queued lines to the pipeline as one batch.

TCP has no acknowledgement: a line the process received but had not written when it died
is lost, and the sender cannot know. Use Pub/Sub (or Kafka) where that matters; the
run's summary still accounts for every line received.

A line's event time is its ``timestamp`` field when it is a JSON object with one (the
canonical record), else the time it arrived; bronze reads each record's own time either
way.
"""
from __future__ import annotations

import collections
import queue
import re
import socket
import threading
import time
from datetime import datetime, timezone

from beam_pipelines.errors import UserError
from beam_pipelines.io.live_sources import LiveRead, Poller
from transforms.bronze import RawRecord

#: A line longer than this is cut off there (and fails bronze's parsing, as a dead letter).
MAX_LINE = 1 << 20


def parse_address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = (text or "").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{flag} {text!r}: expected HOST:PORT (e.g. 127.0.0.1:9988)")
    return host.strip("[]") or "0.0.0.0", int(port)


#: A canonical record's own time, found without decoding the whole line (bronze decodes it
#: once, later); on every line, so kept to one search.
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*"([^"]{10,40})"')


def _event_micros(line: bytes, arrival: int) -> int:
    found = _TIMESTAMP.search(line) if line[:1] == b"{" else None
    if found:
        try:
            when = datetime.fromisoformat(found.group(1).decode().replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return int(when.timestamp() * 1_000_000)
        except ValueError:
            pass  # bronze dead-letters what it cannot read
    return arrival


def _origin(host: str, port: int) -> str:
    """A connection's name in each record's ``source``: unique per connection (its start
    time), so a run appending to a lakehouse never takes a new line for one already
    written."""
    return f"tcp://{host}:{port}@{time.time_ns() // 1_000_000}"


class TcpLinePoller(Poller):
    """The lines of one or more TCP connections, in arrival order per connection."""

    def __init__(self, address: tuple[str, int], listen: bool, max_records: int = 5000,
                 max_queued: int = 100_000, retry_s: float = 1.0):
        self.address = address
        self.listen = listen
        self.max_records = max_records
        self.retry_s = retry_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._connections: set = set()
        self._overflow: collections.deque = collections.deque()
        self._lock = threading.Lock()

    def open(self):
        if self._threads:
            return
        if self.listen:
            self._server = socket.create_server(self.address, reuse_port=False)
            self._server.settimeout(0.2)
            self._start(self._accept)
        else:
            self._start(self._connect)

    def bound_port(self) -> int:
        return self._server.getsockname()[1]

    def _start(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"tcp-{target.__name__}")
        self._threads.append(thread)
        thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, peer = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._start(self._read, conn, _origin(peer[0], peer[1]))

    def _connect(self):
        host, port = self.address
        while not self._stop.is_set():
            try:
                conn = socket.create_connection((host, port), timeout=5)
            except OSError:
                self._stop.wait(self.retry_s)  # the server is not there (yet, or again)
                continue
            self._read(conn, _origin(host, port))
            self._stop.wait(self.retry_s)

    def _read(self, conn: socket.socket, origin: str):
        with self._lock:
            self._connections.add(conn)
        conn.settimeout(0.2)
        pending = b""
        number = 0
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE:
                    lines.append(pending[:MAX_LINE])
                    pending = b""
                for line in lines:
                    number = self._put(line, origin, number)
            if pending.strip():  # the last line of a stream that ends without a newline
                self._put(pending, origin, number)
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _put(self, line: bytes, origin: str, number: int) -> int:
        line = line.rstrip(b"\r")
        if not line.strip():
            return number
        item = (line, RawRecord(line, f"{origin}#{number}"))
        while True:
            try:
                if self._stop.is_set():
                    self._queue.put_nowait(item)
                else:  # the pipeline is behind: stop reading, TCP slows the sender
                    self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                if self._stop.is_set():  # a drain: keep what was received, never drop it
                    with self._lock:
                        self._overflow.append(item)
                    break
        return number + 1

    def poll(self, now: float):
        arrival = round(now * 1_000_000)
        items = []
        while len(items) < self.max_records:
            try:
                line, record = self._queue.get_nowait()
            except queue.Empty:
                with self._lock:  # what a drain kept while the queue was full
                    if not self._overflow:
                        break
                    line, record = self._overflow.popleft()
            items.append((_event_micros(line, arrival), record))
        self.has_more = self.pending()
        return items

    def stop_reading(self):
        """Accept and read nothing more; what is queued is still polled (a drain hands it
        over before the run ends)."""
        self._stop.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(timeout=5)

    def pending(self) -> bool:
        with self._lock:
            return not self._queue.empty() or bool(self._overflow)

    def close(self):
        self.stop_reading()


def read_tcp(address: tuple[str, int], listen: bool, stop_at: float | None,
             max_out_of_orderness_s: float, batches: bool = False,
             max_future_s: float | None = None):
    return LiveRead(TcpLinePoller(address, listen), stop_at, max_out_of_orderness_s,
                    batches=batches, max_future_s=max_future_s)


def check_listen(address: tuple[str, int]) -> None:
    """Fail fast, one line, when the address cannot be listened on."""
    try:
        with socket.create_server(address):
            pass
    except OSError as exc:
        raise UserError(f"--tcp-listen {address[0]}:{address[1]}: {exc.strerror}") from None
