"""``python -m beam_pipelines.dashboard``: the dashboard in a browser (``make dashboard``).

Checks the source first, so a wrong folder or project is one line and exit status 2, then
becomes the Streamlit server (``exec``: stopping this process stops the server).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from beam_pipelines.errors import USAGE_ERROR, CommandParser, UserError

APP = Path(__file__).with_name("app.py")


def parser(prog: str = "python -m beam_pipelines.dashboard") -> CommandParser:
    p = CommandParser(prog=prog, description="A live dashboard over the lakehouse (or a "
                      "BigQuery warehouse): fleet health, map, alerts, web traffic, "
                      "pipeline health and a live view.")
    p.add_argument("--lakehouse", default="lakehouse", metavar="DIR",
                   help="the folder a local run wrote (its lakehouse.duckdb); default "
                        "lakehouse")
    p.add_argument("--bigquery-project", "--bq-project", dest="bigquery_project",
                   metavar="PROJECT", help="read a BigQuery warehouse instead (its "
                   "reporting views; BIGQUERY_EMULATOR_HOST points at an emulator)")
    p.add_argument("--bq-dataset-prefix", default="telemetry", metavar="PREFIX",
                   help="the warehouse's datasets are PREFIX_gold, PREFIX_reporting, …")
    p.add_argument("--refresh", type=_seconds, default=5.0, metavar="SECONDS",
                   help="how often the live page reads again (default 5; adjustable in "
                        "the page)")
    p.add_argument("--port", type=int, default=8501, help="default 8501")
    p.add_argument("--address", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only)")
    return p


def _seconds(text: str) -> float:
    import argparse

    from schemas.durations import positive_duration_arg

    value = positive_duration_arg(text)  # 5, 5s, 1m
    if not 1 <= value <= 3600:
        raise argparse.ArgumentTypeError("--refresh must be between 1 and 3600 seconds")
    return value


def app_args(args) -> list[str]:
    """The options the app itself reads (after Streamlit's own ``--``)."""
    out = ["--lakehouse", args.lakehouse, "--bq-dataset-prefix", args.bq_dataset_prefix,
           "--refresh", str(args.refresh)]
    if args.bigquery_project:
        out += ["--bigquery-project", args.bigquery_project]
    return out


def main(argv: list[str] | None = None, prog: str = "python -m beam_pipelines.dashboard"
         ) -> int:
    args = parser(prog).parse_args(argv)
    try:
        import streamlit  # noqa: F401
    except ImportError:
        print(f"{prog}: error: the dashboard needs its extra: pip install -e '.[dashboard]'",
              file=sys.stderr)
        return USAGE_ERROR
    from beam_pipelines.dashboard.sources import open_source

    try:
        open_source(args.lakehouse, args.bigquery_project, args.bq_dataset_prefix).close()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"Dashboard: http://{args.address}:{args.port}  (Ctrl-C stops it)", flush=True)
    command = [sys.executable, "-m", "streamlit", "run", str(APP),
               "--server.port", str(args.port), "--server.address", args.address,
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--theme.base", "light",
               "--client.toolbarMode", "viewer",
               "--", *app_args(args)]
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
