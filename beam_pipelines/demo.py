"""``python -m beam_pipelines.demo pubsub``: the whole streaming path on one machine, in one
command: the official Pub/Sub emulator, a topic and subscription, the publisher paced like
seed 000 (with malformed, duplicate and late events), and ``python -m run --streaming
--subscription ...`` reading it for ``--duration``; then everything is stopped.

Options after ``pubsub``: ``--duration`` (default 2m), ``--servers`` (10), ``--interval``
(15ms), ``--output-dir`` (lakehouse); anything else is passed to ``python -m run``.
"""
from __future__ import annotations

import os
import subprocess
import sys

from beam_pipelines.local_services import PubSubEmulator
from schemas.durations import parse_duration

TOPIC = "projects/local-demo/topics/server-metrics"
SUBSCRIPTION = "projects/local-demo/subscriptions/server-metrics-pipeline"


def _take(argv: list[str], flag: str, default: str) -> str:
    """Remove every ``flag value`` pair from argv; the last value wins, as in argparse."""
    value = default
    while flag in argv and argv.index(flag) + 1 < len(argv):
        i = argv.index(flag)
        value = argv[i + 1]
        del argv[i:i + 2]
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["pubsub"]:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    argv = argv[1:]
    duration = _take(argv, "--duration", "2m")
    servers = _take(argv, "--servers", "10")
    interval = _take(argv, "--interval", "15ms")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        print(f"python -m beam_pipelines.demo: error: --duration {exc}", file=sys.stderr)
        return 2
    emulator = PubSubEmulator()
    try:
        emulator.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"python -m beam_pipelines.demo: error: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulator.host}
    publisher = None
    try:
        print(f"Pub/Sub emulator on {emulator.host}", flush=True)
        subprocess.run([sys.executable, "-m", "beam_pipelines.pubsub", "setup", "--topic",
                        TOPIC, "--subscription", SUBSCRIPTION], env=env, check=True)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "generators", "metrics", "--to", "pubsub", "--topic", TOPIC,
             "--servers", servers, "--interval", interval, "--duration", f"{seconds + 30}s",
             "--malformed-rate", "0.005", "--duplicate-rate", "0.005", "--late-rate",
             "0.005", "--no-progress"], env=env, stdout=subprocess.DEVNULL)
        print(f"Publishing {servers} servers every {interval} to {TOPIC}", flush=True)
        return subprocess.run(
            [sys.executable, "-m", "run", "--streaming", "--subscription", SUBSCRIPTION,
             "--duration", f"{seconds}s", *argv], env=env).returncode
    except KeyboardInterrupt:
        return 130
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        if publisher is not None and publisher.poll() is None:
            publisher.terminate()
            try:
                publisher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                publisher.kill()
        emulator.stop()


if __name__ == "__main__":
    raise SystemExit(main())
