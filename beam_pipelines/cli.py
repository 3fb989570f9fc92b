"""``python -m run [metrics] [options]``: run a pipeline; errors are one line, not a trace."""
from __future__ import annotations

import logging
import sys

from beam_pipelines.errors import UserError
from beam_pipelines.kinds import DEFAULT, KINDS

USAGE = """usage: python -m run [PIPELINE] [options]

Pipelines:
""" + "".join(f"  {k.name:<9} {k.description}\n" for k in KINDS.values()) + f"""
With no PIPELINE, runs '{DEFAULT}'. With no --input, runs on a generated sample.
'python -m run {DEFAULT} --help' lists the options.
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    name = DEFAULT
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
    if name not in KINDS:
        print(f"python -m run: error: unknown pipeline {name!r} "
              f"(one of {', '.join(KINDS)})", file=sys.stderr)
        return 2
    from beam_pipelines import options as opts_module

    kind = KINDS[name]
    ours = kind.options
    if argv in (["-h"], ["--help"]) or (not argv and name == "help"):
        print(USAGE)
        print(opts_module.help_text(ours, f"python -m run {name}", kind.description))
        return 0
    try:
        options = opts_module.parse_options(argv, ours, f"python -m run {name}")
        outcome = kind.run(options)
        if outcome["catalog"] and options.view_as(ours).summary:
            print(kind.summary(outcome["catalog"], outcome["output_dir"],
                               input_records=outcome.get("input_records"),
                               **outcome.get("summary_args", {})))
        elif outcome.get("dry_run"):
            print("Dry run: the Dataflow job was built and checked, not submitted.")
        elif outcome["sink"].name == "bigquery":
            print(f"Done: the tables are in {outcome['sink'].describe()}; Looker Studio "
                  "reads the views of the _reporting dataset.")
    except UserError as exc:
        print(f"python -m run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m run: interrupted", file=sys.stderr)
        return 130
    return 0
