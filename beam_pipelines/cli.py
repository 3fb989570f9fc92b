"""``python -m run [metrics] [options]``: run a pipeline; errors are one line, not a trace."""
from __future__ import annotations

import logging
import sys

from beam_pipelines.errors import INTERRUPTED, UserError, interrupt_taken
from beam_pipelines.kinds import DEFAULT, KINDS

USAGE = """usage: {prog} [PIPELINE] [options]

Pipelines:
""" + "".join(f"  {k.name:<9} {k.description}\n" for k in KINDS.values()) + f"""
Commands:
  replay    a raw archive or dead letters through a pipeline again ('{{prog}} replay --help')
  compact   each day partition of a lakehouse's tables into one file ('{{prog}} compact --help')

With no PIPELINE, runs '{DEFAULT}'. With no --input, runs on a generated sample.
'{{prog}} {DEFAULT} --help' lists the options.
"""


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, as Python raises it or as Beam re-raises it from a bundle (a RuntimeError
    whose message or cause is the KeyboardInterrupt)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, KeyboardInterrupt) or (
                isinstance(exc, RuntimeError) and str(exc).startswith("KeyboardInterrupt")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _not_an_interrupt(record: logging.LogRecord) -> bool:
    """Beam logs the traceback of a bundle that Ctrl-C stopped before re-raising it: the
    interrupt is one line of ours, not that."""
    return not (record.exc_info and record.exc_info[0] is not None
                and issubclass(record.exc_info[0], KeyboardInterrupt))


def _clean_after_interrupt(options, ours) -> None:
    """The temporary files an interrupted batch run leaves in the lakehouse."""
    if options is None:
        return
    from beam_pipelines.io.lakehouse import is_local, remove_temporary_files

    output_dir = getattr(options.view_as(ours), "output_dir", None)
    if output_dir and is_local(output_dir):
        remove_temporary_files(output_dir)


def _compact(argv: list[str], prog: str) -> int:
    """Each day partition of a lakehouse's tables into one file (``lakehouse.compact``)."""
    import os

    from beam_pipelines.catalog import CATALOG
    from beam_pipelines.errors import RaisingParser
    from beam_pipelines.io.lakehouse import compact, table_dir, write_catalog
    from schemas.render import TABLES

    parser = RaisingParser(prog=f"{prog} compact",
                    description="Rewrite each day partition of a lakehouse's tables as one "
                                "file (a streaming run writes one every few seconds), and "
                                "its catalog (after the folder moved); run it when no run "
                                "writes there.")
    parser.add_argument("--output-dir", "--output_dir", default="lakehouse",
                        help="the lakehouse (default: ./lakehouse)")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.output_dir, CATALOG)):
        raise UserError(f"--output-dir {args.output_dir} is not a lakehouse (no {CATALOG})")
    present = [t for t in TABLES if os.path.isdir(table_dir(args.output_dir, t))]
    print(compact(args.output_dir, present).line())
    write_catalog(args.output_dir, present)  # views of tables that appeared since
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m run") -> int:
    """Every outcome is a return code: 0, 2 for a user's mistake (one line), 130 for
    Ctrl-C (one line, temporary files removed), whenever it comes."""
    run: dict = {}
    try:
        return _main(argv, run, prog)
    except KeyboardInterrupt:
        interrupt_taken()
    except RuntimeError as exc:
        if not _interrupted(exc):
            raise
        interrupt_taken()
    _clean_after_interrupt(run.get("options"), run.get("ours"))
    print(f"{prog}: interrupted", file=sys.stderr)
    return INTERRUPTED


def _main(argv: list[str] | None, run: dict, prog: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_an_interrupt)
    name = DEFAULT
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
    asked_help = name == "help" or "-h" in argv or "--help" in argv
    if name == "help":  # python -m run help [PIPELINE|COMMAND]
        name = argv.pop(0) if argv and not argv[0].startswith("-") else DEFAULT
        if name in ("replay", "compact"):
            argv = ["--help"]
    if name == "compact":  # python -m run compact [--output-dir DIR]
        try:
            return _compact(argv, prog)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
    if name == "replay":  # python -m run replay [PIPELINE] ...: not a kind of its own
        from beam_pipelines import replay

        try:
            return replay.main(argv, prog)
        except UserError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
    if name not in KINDS:
        print(f"{prog}: error: unknown pipeline {name!r} "
              f"(one of {', '.join(KINDS)})", file=sys.stderr)
        return 2
    from beam_pipelines import options as opts_module

    kind = KINDS[name]
    ours = kind.options
    if asked_help:  # anywhere on the line: the help, not a run
        print(USAGE.format(prog=prog))
        print(opts_module.help_text(ours, f"{prog} {name}", kind.description))
        return 0
    try:
        options = opts_module.parse_options(argv, ours, f"{prog} {name}")
        logging.getLogger().setLevel(options.view_as(ours).log_level.upper())
        run.update(options=options, ours=ours)
        outcome = kind.run(options)
        if outcome["catalog"] and options.view_as(ours).summary:
            print(kind.summary(outcome["catalog"], outcome["output_dir"],
                               input_records=outcome.get("input_records"),
                               **outcome.get("summary_args", {})))
        elif outcome.get("dry_run"):
            print("Dry run: the Dataflow job was built and checked, not submitted.")
        elif outcome["sink"].name == "postgres" and not outcome.get("dry_run"):
            pipeline = {"metrics": "server_metrics", "logs": "web_logs"}[name]
            if options.view_as(ours).summary and outcome.get("input_records") is not None:
                print(outcome["sink"].accounting(pipeline, outcome.get("input_records")))
            print(f"Done: the tables are in {outcome['sink'].describe()}.")
        elif outcome["sink"].name == "bigquery":
            print(f"Done: the tables are in {outcome['sink'].describe()}; Looker Studio "
                  "reads the views of the _reporting dataset.")
        if outcome.get("failure"):  # the source gave up; what was read is written
            raise UserError(outcome["failure"])
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0
