"""Generated lines over TCP (``--to tcp``): seed 001's live stream, one line per record.

``--tcp-connect HOST:PORT`` pushes to a pipeline listening there (``python -m run
--streaming --tcp-listen``); ``--tcp-listen HOST:PORT`` serves the stream to every client
that connects, as seed 001's server did on port 9988, and waits for the first client
before it starts, so no record is generated into nobody's socket. Paced like the Pub/Sub
publisher: a live fleet sends each record when it is due.
"""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from generators.pacing import paced


@dataclass
class TcpStats:
    lines: int = 0
    clients: int = 0

    def line(self) -> str:
        return f"{self.lines:,} lines to {self.clients} client(s)"


def _clients_of_server(server: socket.socket, clients: list, lock: threading.Lock,
                       stop: threading.Event, stats: TcpStats) -> None:
    server.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        with lock:
            clients.append(conn)
            stats.clients += 1


def stream_lines(generator, address: tuple[str, int], listen: bool, pace: bool = True,
                 stop: threading.Event | None = None, connect_timeout_s: float = 30.0,
                 on_listening=None) -> TcpStats:
    """Send every line the generator renders; returns what was sent."""
    stop = stop or threading.Event()
    stats = TcpStats()
    clients: list[socket.socket] = []
    lock = threading.Lock()
    server = None
    if listen:
        server = socket.create_server(address)
        if on_listening:
            on_listening(server.getsockname()[1])
        threading.Thread(target=_clients_of_server, daemon=True,
                         args=(server, clients, lock, stop, stats)).start()
        while not clients and not stop.wait(0.05):
            pass  # the first client starts the stream
    else:
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                clients.append(socket.create_connection(address, timeout=5))
                stats.clients = 1
                break
            except OSError:
                if time.monotonic() > deadline or stop.wait(0.2):
                    raise
    try:
        for _, _, line in paced(generator.render_timed(), pace, stop):
            data = (line if isinstance(line, bytes) else line.encode()) + b"\n"
            with lock:
                for conn in list(clients):
                    try:
                        conn.sendall(data)
                    except OSError:  # that client went away; the others go on
                        clients.remove(conn)
                        conn.close()
                if not clients and not listen:
                    raise ConnectionError(f"{address[0]}:{address[1]} closed the connection")
                if clients:
                    stats.lines += 1
    finally:
        stop.set()
        with lock:
            for conn in clients:
                try:
                    conn.shutdown(socket.SHUT_WR)  # the reader sees the end of the stream
                except OSError:
                    pass
                conn.close()
        if server is not None:
            server.close()
    return stats
