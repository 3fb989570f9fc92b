"""``telemetry COMMAND ...``: every command of the project behind one installed name.

Each command is the module a ``python -m`` line runs (the README shows both); this only
dispatches, so ``telemetry run logs --help`` and ``python -m run logs --help`` are the same
code. ``--help`` works anywhere; a usage error is one line and exit status 2.
"""
from __future__ import annotations

import importlib
import sys

from beam_pipelines.errors import USAGE_ERROR, guard_interrupts, leave, quiet_broken_pipe

#: command → (module with ``main(argv, prog)``, what it does).
COMMANDS = {
    "run": ("beam_pipelines.cli",
            "run a pipeline (metrics or logs), batch or --streaming, locally or on Dataflow"),
    "generate": ("generators.cli",
                 "server metrics, web logs or regional records to files, Pub/Sub, TCP or Kafka"),
    "pubsub": ("beam_pipelines.ops.pubsub", "create or remove a topic and its subscription"),
    "bigquery": ("beam_pipelines.bigquery.__main__",
                 "the warehouse: datasets, views, scheduled queries, Looker links"),
    "gcp": ("beam_pipelines.ops.gcp",
            "create or remove the cloud resources of configs/gcp.yaml"),
    "services": ("beam_pipelines.ops.local_services",
                 "run a local service (pubsub, bigquery, postgres, kafka) until interrupted"),
    "dashboard": ("beam_pipelines.dashboard.__main__",
                  "the dashboard over the lakehouse or BigQuery, in a browser"),
    "demo": ("beam_pipelines.ops.demo",
             "a whole path on this machine in one command (pubsub or bigquery)"),
    "template": ("beam_pipelines.ops.flex_template",
                 "the Dataflow flex template: its metadata, or a launch"),
}

USAGE = "usage: telemetry COMMAND [options]   (telemetry COMMAND --help for its options)\n\n" \
        "Commands:\n" + "".join(f"  {name:<10} {what}\n"
                                for name, (_, what) in COMMANDS.items())


def main(argv: list[str] | None = None) -> int:
    program = argv is None  # the installed command itself, not a call from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    name, rest = argv[0], argv[1:]
    if name == "help":  # telemetry help [COMMAND]
        if not rest:
            print(USAGE)
            return 0
        name, rest = rest[0], ["--help"]
    if name not in COMMANDS:
        print(f"telemetry: error: unknown command {name!r} (one of {', '.join(COMMANDS)})",
              file=sys.stderr)
        return USAGE_ERROR
    if program and name == "run":
        guard_interrupts()  # as ``python -m run``: a Ctrl-C Python would drop is raised again
    module = importlib.import_module(COMMANDS[name][0])
    try:
        code = module.main(rest, prog=f"telemetry {name}")
        if program:
            leave(code, f"telemetry {name}")
        return code
    except SystemExit as exc:  # argparse's --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 1
    except BrokenPipeError:
        return quiet_broken_pipe()


if __name__ == "__main__":
    raise SystemExit(main())
