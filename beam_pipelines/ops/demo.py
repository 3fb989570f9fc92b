"""Whole paths on one machine, in one command each; everything is stopped at the end.

``python -m beam_pipelines.ops.demo pubsub``: the official Pub/Sub emulator, a topic and
subscription, the publisher paced like seed 000 (with malformed, duplicate and late
events), and ``python -m run --streaming --subscription ...`` reading it for
``--run-for``. Options after ``pubsub``: ``--run-for`` (default 2m), ``--servers`` (10),
``--interval`` (15ms), ``--output-dir`` (lakehouse); anything else goes to ``python -m run``.

``python -m beam_pipelines.ops.demo bigquery``: the BigQuery emulator (``make bqemulator``),
``python -m beam_pipelines.bigquery setup``, the metrics pipeline writing bronze and the
web-log pipeline bronze and silver (``--sink bigquery``), one cycle of the scheduled
queries building the rest, and a look at the reporting views.
Options after ``bigquery`` go to both ``python -m run`` calls.
"""
from __future__ import annotations

import os
import subprocess
import sys

from beam_pipelines.ops.local_services import PubSubEmulator
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


def for_kind(argv: list[str], kind: str) -> list[str]:
    """``argv`` less the flags (and their values) that another pipeline kind declares and
    ``kind`` does not, so one ``ARGS`` can feed both pipelines of a demo."""
    import argparse

    from beam_pipelines.kinds import KINDS
    from beam_pipelines.options import add_arguments

    def actions(options_class) -> dict[str, argparse.Action]:
        parser = argparse.ArgumentParser(add_help=False)
        add_arguments(options_class, parser)
        return {s: a for a in parser._actions for s in a.option_strings}

    own = actions(KINDS[kind].options)
    others = {flag: action for name, k in KINDS.items() if name != kind
              for flag, action in actions(k.options).items() if flag not in own}
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        flag, has_value = token.split("=", 1)[0], "=" in token
        if flag in others:
            skip = not has_value and others[flag].nargs != 0
            continue
        out.append(token)
    return out


def bigquery_demo(argv: list[str]) -> int:
    from beam_pipelines.ops.local_services import BigQueryEmulator

    project, prefix = "local-demo", "telemetry"
    emulator = BigQueryEmulator(project=project)
    try:
        emulator.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"python -m beam_pipelines.ops.demo: error: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "BIGQUERY_EMULATOR_HOST": emulator.url}
    where = ["--project", project, "--dataset-prefix", prefix]
    sink = ["--sink", "bigquery", "--bq-project", project, "--bq-dataset-prefix", prefix]
    try:
        print(f"BigQuery emulator on {emulator.url}", flush=True)
        for step, (what, command) in enumerate((
                ("the warehouse: datasets, tables, views and rule tables",
                 [sys.executable, "-m", "beam_pipelines.bigquery", "setup", *where]),
                ("the server-metrics pipeline's bronze into BigQuery (a generated sample)",
                 [sys.executable, "-m", "run", "metrics", *sink, "--bq-layers", "bronze",
                  "--no-summary", *for_kind(argv, "metrics")]),
                ("the web-log pipeline's bronze and silver into BigQuery (a generated "
                 "sample)",
                 [sys.executable, "-m", "run", "logs", *sink, "--bq-layers", "bronze,silver",
                  "--no-summary", *for_kind(argv, "logs")])), start=1):
            print(f"Step {step} of 4: {what}…", flush=True)
            subprocess.run(command, env=env, check=True)
        os.environ["BIGQUERY_EMULATOR_HOST"] = emulator.url
        from beam_pipelines.bigquery.emulator import client

        bq = client(project)
        # The scheduler's run_time is "now"; the sample's events are older: run as of them.
        newest = list(bq.query(f"SELECT MAX(timestamp) AS t FROM "
                               f"`{project}.{prefix}_bronze.server_metrics_bronze`").result())
        print("Step 4 of 4: silver and gold built by the scheduled SQL (one cycle, as of "
              "the newest event)…", flush=True)
        subprocess.run([sys.executable, "-m", "beam_pipelines.bigquery", "run-scheduled",
                        *where, "--bq-layers", "bronze", "--run-time",
                        newest[0]["t"].isoformat()],
                       env=env, check=True)
        print("\nWorst servers (telemetry_reporting.server_health_daily):")
        for row in bq.query(
                f"SELECT day, server, health_score_points, cpu_avg_pct, memory_avg_pct "
                f"FROM `{project}.{prefix}_reporting.server_health_daily` "
                "ORDER BY health_score_points LIMIT 5").result():
            print(f"  {row['day']}  {row['server']:<26} health {row['health_score_points']:5.1f}"
                  f"  cpu {row['cpu_avg_pct']:5.1f} %  memory {row['memory_avg_pct']:5.1f} %")
        print("Top countries (telemetry_reporting.geo_requests_per_country):")
        for row in bq.query(
                f"SELECT country, SUM(requests) AS requests FROM "
                f"`{project}.{prefix}_reporting.geo_requests_per_country` "
                "GROUP BY country ORDER BY requests DESC LIMIT 5").result():
            print(f"  {row['country']:<28} {row['requests']:>7,}")
        print("Looker Studio links for your own project: python -m beam_pipelines.bigquery "
              "looker --project YOUR_PROJECT")
        return 0
    except KeyboardInterrupt:
        return 130
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        emulator.stop()


def main(argv: list[str] | None = None, prog: str = "python -m beam_pipelines.ops.demo") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"], ["help"]) or ("-h" in argv or "--help" in argv):
        print(f"usage: {prog} pubsub|bigquery [options]\n\n{__doc__}")
        return 0
    if argv[:1] == ["bigquery"]:
        return bigquery_demo(argv[1:])
    if argv[:1] != ["pubsub"]:
        what = f"unknown demo {argv[0]!r}" if argv else "which demo?"
        print(f"{prog}: error: {what} (pubsub or bigquery)", file=sys.stderr)
        return 2
    argv = argv[1:]
    run_for = _take(argv, "--duration", _take(argv, "--run-for", "2m"))  # the former name
    servers = _take(argv, "--servers", "10")
    interval = _take(argv, "--interval", "15ms")
    try:
        seconds = parse_duration(run_for)
    except ValueError as exc:
        print(f"python -m beam_pipelines.ops.demo: error: --run-for {exc}", file=sys.stderr)
        return 2
    emulator = PubSubEmulator()
    try:
        emulator.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"python -m beam_pipelines.ops.demo: error: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": emulator.host}
    publisher = None
    try:
        print(f"Pub/Sub emulator on {emulator.host}", flush=True)
        subprocess.run([sys.executable, "-m", "beam_pipelines.ops.pubsub", "setup", "--topic",
                        TOPIC, "--subscription", SUBSCRIPTION], env=env, check=True)
        publisher = subprocess.Popen(
            [sys.executable, "-m", "generators", "metrics", "--to", "pubsub", "--topic", TOPIC,
             "--servers", servers, "--interval", interval, "--duration", f"{seconds + 30}s",
             "--malformed-rate", "0.005", "--duplicate-rate", "0.005", "--late-rate",
             "0.005", "--no-progress"], env=env, stdout=subprocess.DEVNULL)
        print(f"Publishing {servers} servers every {interval} to {TOPIC}", flush=True)
        return subprocess.run(
            [sys.executable, "-m", "run", "--streaming", "--subscription", SUBSCRIPTION,
             "--run-for", f"{seconds}s", *argv], env=env).returncode
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
