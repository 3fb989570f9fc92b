"""``python -m beam_pipelines.bigquery COMMAND``: operate the BigQuery warehouse.

  setup          create datasets, tables, rule tables and reporting views (idempotent)
  teardown       delete the warehouse's datasets and everything in them
  schedule       create or update the scheduled queries (--dry-run prints them)
  run-scheduled  run the scheduled queries once now (as the scheduler would)
  looker         print the Looker Studio report's link (or one per reporting view)

BIGQUERY_EMULATOR_HOST=http://host:port points every command but schedule at a local
emulator (``python -m beam_pipelines.ops.local_services bigquery``).
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from beam_pipelines.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


def _parser(prog: str = "python -m beam_pipelines.bigquery") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog,
                     description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        # Also under the names `run --sink bigquery` gives them, so one spelling works in
        # every command.
        sub.add_argument("--project", "--bq-project", dest="project", required=True,
                         help="Google Cloud project id")
        sub.add_argument("--dataset-prefix", "--bq-dataset-prefix", dest="dataset_prefix",
                         default="telemetry",
                         help="datasets are PREFIX_bronze, _silver, _gold, _ops, _reporting "
                              "(default telemetry)")
        sub.add_argument("--location", "--bq-location", dest="location", default="US",
                         help="dataset location (default US)")
        return sub

    setup = command("setup", "create datasets, tables, rule tables and reporting views")
    setup.add_argument("--config", default=None,
                       help="rules file loaded into the rule tables (default: "
                            "configs/server_metrics.yaml)")
    teardown = command("teardown", "delete the warehouse's datasets and their tables")
    teardown.add_argument("--yes", action="store_true", help="really delete (required)")
    def layers(sub):
        sub.add_argument("--bq-layers", default="bronze",
                         help="the layers the pipeline writes, as its own --bq-layers "
                              "(default bronze): the queries build the others, and never "
                              "a table the pipeline streams into")
        sub.add_argument("--only", choices=("silver", "gold"), default=None,
                         help=argparse.SUPPRESS)  # the former spelling: only this layer

    schedule = command("schedule", "create or update the scheduled queries")
    layers(schedule)
    schedule.add_argument("--schedule", default="every 15 minutes",
                          help="Data Transfer schedule (default: every 15 minutes)")
    schedule.add_argument("--service-account", default=None,
                          help="run the queries as this service account")
    schedule.add_argument("--dry-run", action="store_true",
                          help="print the transfer configs as JSON; call no API")
    run = command("run-scheduled", "run the scheduled queries once, now")
    layers(run)
    run.add_argument("--run-time", default=None,
                     help="@run_time, ISO 8601 (default: now)")
    looker = command("looker", "print the Looker Studio report's link (or one per view)")
    which = looker.add_mutually_exclusive_group(required=True)
    which.add_argument("--template-report-id", default=None,
                       help="the template report of docs/LOOKER.md: one link opens a copy "
                            "with every reporting view as its data sources")
    which.add_argument("--per-view", action="store_true",
                       help="a blank report per reporting view instead (no template)")
    return parser


def _run_time(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--run-time {text!r} is not an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def main(argv: list[str] | None = None,
         prog: str = "python -m beam_pipelines.bigquery") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser(prog)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    try:
        args = parser.parse_args(argv)
        from beam_pipelines.bigquery.warehouse import Warehouse

        warehouse = Warehouse(args.project, args.dataset_prefix, args.location)
        if args.command == "setup":
            from beam_pipelines.bigquery import admin, emulator
            from beam_pipelines.config import load_rules

            rules = load_rules(args.config)
            emulator.require_credentials()
            lines = admin.setup(warehouse, rules)
        elif args.command == "teardown":
            from beam_pipelines.bigquery import admin, emulator

            if not args.yes:
                raise UserError("teardown deletes every table of the warehouse: add --yes")
            emulator.require_credentials()
            lines = admin.teardown(warehouse)
        elif args.command == "schedule":
            from beam_pipelines.bigquery import emulator, scheduled

            builds = (args.only,) if args.only else scheduled.builds_for(args.bq_layers)
            if args.dry_run:
                print(scheduled.dry_run(warehouse, builds, args.schedule,
                                        args.service_account))
                return 0
            if emulator.emulator_url():
                raise UserError("the emulator has no Data Transfer API: use run-scheduled, "
                                "or schedule --dry-run")
            emulator.require_credentials()
            lines = scheduled.schedule(warehouse, builds, args.schedule,
                                       args.service_account)
        elif args.command == "run-scheduled":
            from beam_pipelines.bigquery import emulator, scheduled

            builds = (args.only,) if args.only else scheduled.builds_for(args.bq_layers)
            emulator.require_credentials()
            lines = scheduled.run_now(warehouse, _run_time(args.run_time), builds)
        else:
            from beam_pipelines.bigquery.looker import (
                TITLES,
                report_urls,
                warehouse_report_url,
            )

            if args.per_view:
                lines = [f"{TITLES.get(view, view)}: {url}"
                         for view, url in report_urls(warehouse).items()]
            else:
                lines = [f"Looker Studio report: "
                         f"{warehouse_report_url(warehouse, args.template_report_id)}"]
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
