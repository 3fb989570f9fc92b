"""Local stand-ins for cloud services, for development, tests and benchmarks.

``python -m beam_pipelines.local_services pubsub`` runs the official Pub/Sub emulator on
127.0.0.1:8085 until interrupted; export ``PUBSUB_EMULATOR_HOST=127.0.0.1:8085`` in the
shells that publish or run pipelines.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PubSubEmulator:
    """The official Pub/Sub emulator (``gcloud beta emulators pubsub start``)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix="pubsub-emulator-", suffix=".log",
                                               delete=False)

    def start(self, timeout: float = 90.0) -> PubSubEmulator:
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise FileNotFoundError("the Pub/Sub emulator needs the Google Cloud CLI (gcloud) "
                                    "with its pubsub-emulator component")
        data_dir = tempfile.mkdtemp(prefix="pubsub-emulator-")
        self.process = subprocess.Popen(
            [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={self.host}",
             f"--data-dir={data_dir}", "--quiet"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Pub/Sub emulator exited: {self._tail()}")
            with open(self.log.name, errors="replace") as fh:
                if "Server started" in fh.read():
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Pub/Sub emulator did not start in {timeout:.0f}s: {self._tail()}")

    def _tail(self) -> str:
        with open(self.log.name, errors="replace") as fh:
            return fh.read()[-1500:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # gcloud starts a Java child
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["pubsub"]:
        print("usage: python -m beam_pipelines.local_services pubsub [--port N]",
              file=sys.stderr)
        return 2
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else 8085
    emulator = PubSubEmulator(port)
    try:
        emulator.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Pub/Sub emulator on {emulator.host}: export PUBSUB_EMULATOR_HOST={emulator.host}"
          "  (Ctrl-C stops it)", flush=True)
    try:
        emulator.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
