"""Command-line options: ours in a PipelineOptions subclass, Beam's accepted beside them.

Beam's own parser ignores unknown flags with a warning; ours rejects them with one clear
line (and a suggestion), so a typo never silently runs a different pipeline.
"""
from __future__ import annotations

import argparse
import difflib

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from beam_pipelines.errors import UserError
from schemas.durations import date_arg
from schemas.durations import duration_arg as _duration
from schemas.durations import positive_duration_arg as _span
from schemas.durations import positive_int_arg as _count
from schemas.durations import positive_rate_arg as _rate


def _flag(parser, name: str, **kwargs):
    """Register ``--some-flag`` and Beam's ``--some_flag`` spelling for the same option.
    Each flag is declared by one class only: a second declaration is argparse's error."""
    spellings = [f"--{name}"]
    if "-" in name:
        spellings.append(f"--{name.replace('-', '_')}")
    parser.add_argument(*spellings, dest=name.replace("-", "_"), **kwargs)


def _streaming_flags(parser) -> None:
    """Options of ``--streaming`` (Beam's own flag), alike in every pipeline."""
    _flag(parser, "subscription", default=None,
          help="--streaming: read projects/P/subscriptions/S (default: a live generator "
               "of the sample's records in the pipeline itself)")
    _flag(parser, "tcp-listen", default=None, metavar="HOST:PORT",
          help="--streaming: read lines (JSON records or log lines) from every sender that "
               "connects here, e.g. 127.0.0.1:9988 (local runs; TCP has no "
               "acknowledgement: see the README)")
    _flag(parser, "tcp-connect", default=None, metavar="HOST:PORT",
          help="--streaming: read the lines a server streams at HOST:PORT, reconnecting "
               "when it goes away (seed 001's live stream; local runs)")
    _flag(parser, "kafka-bootstrap", default=None, metavar="HOST:PORT",
          help="--streaming: read Kafka at HOST:PORT[,HOST:PORT] (with --kafka-topic)")
    _flag(parser, "kafka-topic", default=None, metavar="T[,T...]",
          help="--streaming: the Kafka topic(s) to read")
    _flag(parser, "kafka-group", default=None, metavar="GROUP",
          help="--kafka-topic: the consumer group whose committed offsets a run starts "
               "from and moves on (default telemetry-PIPELINE)")
    _flag(parser, "archive", default=None, metavar="DIR",
          help="--streaming: also keep every record received, as received, in DIR (or "
               "gs://…) by hour: dt=YYYY-MM-DD/hour=HH/*.jsonl.gz with the message "
               "attributes, for audit and 'python -m run replay --from-archive DIR'")
    _flag(parser, "kafka-join", action="store_true", default=False,
          help="--kafka-topic: the topics carry seed 002's parts of each record, one topic "
               "per metric family (python -m generators metrics --to kafka "
               "--topic-per-family): join them back per server and timestamp")
    _flag(parser, "kafka-join-wait", type=_span, default=30.0,
          help="--kafka-join: how long a record waits for its missing parts before it goes "
               "on as an 'incomplete_join' dead letter (default 30s)")
    _flag(parser, "run-for", type=_span, default=None,
          help="--streaming: stop reading after this long (wall-clock time), close every "
               "window and exit with the summary (default: run until Ctrl-C, which does "
               "the same)")
    # The former name; --duration is event time in the generators.
    parser.add_argument("--duration", dest="run_for", type=_span, default=None,
                        help=argparse.SUPPRESS)
    _flag(parser, "allowed-lateness", type=_duration, default=300.0,
          help="--streaming: how long after a window's end late records still update it; "
               "later ones become dead letters 'late' (default 5m)")
    _flag(parser, "early-firing", type=_duration, default=10.0,
          help="--streaming: processing time between early results of an open window "
               "(default 10s)")
    _flag(parser, "max-out-of-orderness", type=_duration, default=10.0,
          help="--streaming: the watermark trails the newest event time by this much; "
               "records further behind are late (default 10s)")
    _flag(parser, "heartbeat", type=_duration, default=30.0,
          help="--streaming: print a line this often with the records read, their rate "
               "and the watermark's lag (default 30s; 0: none)")
    _flag(parser, "max-source-outage", type=_span, default=300.0,
          help="--streaming --subscription: how long Pub/Sub may stay unreachable, or the "
               "subscription missing, before the run drains and exits 2 (default 5m)")


def _sink_flags(parser) -> None:
    """Where the tables go, alike in every pipeline."""
    _flag(parser, "sink", default="lakehouse", choices=("lakehouse", "bigquery", "postgres"),
          help="write the tables to the local lakehouse (default), to BigQuery, or all "
               "of them to PostgreSQL (with --postgres-dsn)")
    _flag(parser, "bq-project", default=None,
          help="--sink bigquery: project of the datasets (default: --project)")
    _flag(parser, "bq-dataset-prefix", default="telemetry",
          help="--sink bigquery: datasets are PREFIX_bronze, _silver, _gold and _ops "
               "(default telemetry)")
    _flag(parser, "bq-location", default="US",
          help="--sink bigquery: location of the datasets (default US)")
    _flag(parser, "bq-write-method", default="auto",
          choices=("auto", "FILE_LOADS", "STREAMING_INSERTS", "STORAGE_WRITE_API"),
          help="--sink bigquery: auto is FILE_LOADS in batch and STREAMING_INSERTS in "
               "streaming; STORAGE_WRITE_API needs Java at submit time")
    _flag(parser, "wait", action=argparse.BooleanOptionalAction, default=True,
          help="Dataflow batch: wait until the job ends (default); --no-wait returns once "
               "it is submitted, as a flex template launch must")
    _flag(parser, "bq-layers", default="bronze,silver,gold",
          help="--sink bigquery: the layers the pipeline writes (dead letters always); "
               "'bronze' leaves silver and gold to the scheduled queries of sql/scheduled")
    _flag(parser, "postgres-dsn", default=None,
          help="also keep PostgreSQL hot tables (minute summaries, health, alerts, "
               "incidents, web traffic) up to date by upserts, e.g. "
               "postgresql://user@host:5432/db")
    _flag(parser, "postgres-schema", default="telemetry",
          help="--postgres-dsn: the schema of the hot tables (default telemetry)")
    _flag(parser, "postgres-retention", type=_duration, default=7 * 86400.0,
          help="--postgres-dsn: keep rows within this span of each table's newest row "
               "(default 7d; 0 keeps everything)")


class CommonOptions(PipelineOptions):
    """The flags of every pipeline kind, declared once here; each kind's class declares
    only its own and inherits these."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _flag(parser, "input", action="append", default=None,
              help="file, glob or directory to read; repeat or comma-separate for several "
                   "(default: a generated sample)")
        _flag(parser, "output-dir", default="lakehouse",
              help="directory of the local lakehouse (default: ./lakehouse)")
        _flag(parser, "mode", default="replace", choices=("replace", "append", "overwrite"),
              help="batch into the lakehouse: replace (default) the records of the input "
                   "files and keep every other file's; append: files read before are "
                   "skipped; in both, gold is computed again over all of silver; "
                   "overwrite: the pipeline's tables hold this run's records alone")
        _flag(parser, "seed", type=int, default=42, help="seed of the generated sample")
        _flag(parser, "sample-duration", type=_span, default=6 * 3600.0,
              help="event time the generated sample covers (default 6h)")
        _flag(parser, "summary", action=argparse.BooleanOptionalAction, default=True,
              help="print the run summary (default on)")
        _flag(parser, "progress", type=_duration, default=10.0,
              help="batch on the local runner: print a line this often with the input "
                   "read so far, records/s and the time left (default 10s; 0: none)")
        _flag(parser, "log-level", default="warning",
              choices=("debug", "info", "warning", "error"),
              help="what the run logs besides its own lines (default warning; info shows "
                   "Beam's, such as a Dataflow job's progress)")
        parser.add_argument("-v", dest="log_level", action="store_const", const="info",
                            help="the same as --log-level info")
        _flag(parser, "max-future", type=_duration, default=300.0,
              help="a record dated further ahead of the processing time is a dead letter "
                   "'future_event', never a gold row or a watermark move (default 5m)")
        _streaming_flags(parser)
        _sink_flags(parser)


class ServerMetricsOptions(CommonOptions, PipelineOptions):
    """Options of ``python -m run [metrics]`` (PipelineOptions named again: Beam collects
    the direct subclasses' flags)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _flag(parser, "input-format", default="auto",
              choices=("auto", "jsonl", "csv", "parquet"),
              help="format of the input files (default: from each file's extension)")
        _flag(parser, "config", default=None,
              help="rules file: thresholds, health weights, alert rules, locations "
                   "(default: configs/server_metrics.yaml)")
        _flag(parser, "inventory", default=None, metavar="FILE",
              help="server inventory, CSV or YAML (server_id, server_name, server_type, "
                   "location): fills what records do not say, and gives a regional "
                   "server (seed 001) its location instead of its region")
        _flag(parser, "sample-servers", type=_count, default=20,
              help="servers in the generated sample (default 20; the generator's --servers)")
        _flag(parser, "sample-interval", type=_span, default=None,
              help="time between a server's reports in the sample (default 10s; 1s for the "
                   "live generator of --streaming)")
        _flag(parser, "alerts-topic", default=None,
              help="also publish every notification of alert_notifications (an incident "
                   "firing, escalated, resolved), once each, to this Pub/Sub "
                   "topic (projects/P/topics/T), for chat and paging integrations")


class WebLogsOptions(CommonOptions, PipelineOptions):
    """Options of ``python -m run logs``; ``--input`` reads access logs (Combined or Common
    Log Format)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        _flag(parser, "geo-database", default=None,
              help="MaxMind-format city database, local or gs:// (default: the embedded "
                   "DB-IP City Lite, CC BY 4.0)")
        _flag(parser, "ip-privacy", default="truncate", choices=("truncate", "hash"),
              help="what silver keeps of a client address: its network (default) or a "
                   "salted hash")
        _flag(parser, "ip-salt", default=None,
              help="secret salt of hashed addresses and visitor ids (default: "
                   "$WEB_LOGS_IP_SALT, else a new one each run, so ids cannot be linked "
                   "across runs); --ip-salt-file or the variable keep it out of process "
                   "lists and job options")
        _flag(parser, "ip-salt-file", default=None,
              help="read the salt from this file (local or gs://; one line)")
        _flag(parser, "ipv4-prefix", type=int, default=24,
              help="network kept of an IPv4 address (default /24)")
        _flag(parser, "ipv6-prefix", type=int, default=48,
              help="network kept of an IPv6 address (default /48)")
        _flag(parser, "windows", default="1m,1h",
              help="gold window sizes, comma-separated (default 1m,1h)")
        _flag(parser, "top-paths", type=_count, default=20,
              help="paths kept per window in web_top_paths (default 20)")
        _flag(parser, "sample-rate", type=_rate, default=5.0,
              help="requests per second in the generated sample (default 5)")
        _flag(parser, "log-format", default="combined", metavar="PRESET|FORMAT",
              help="how the lines are written: combined (default: Combined or Common Log "
                   "Format, told apart per line), common, vhost_combined (Debian's), "
                   "nginx_main (nginx's main: combined and \"$http_x_forwarded_for\"), "
                   "nginx_iso8601 (nginx's main shape with $time_iso8601), json (a JSON "
                   "object a line, keys named as nginx's variables; json:KEY=VARIABLE,... "
                   "names others), or the server's own format string: Apache LogFormat "
                   "('%%h %%l %%u %%t \"%%r\" %%>s %%b %%D') or nginx log_format "
                   "('$remote_addr ... $request_time'); each directive lands in its column")
        _flag(parser, "trusted-proxies", default=None, metavar="CIDR[,CIDR...]",
              help="the load balancers and proxies in front of the servers: the client is "
                   "then the right-most address of the X-Forwarded-For chain (and the "
                   "connecting address) that is not one of them, as nginx's realip does; "
                   "geolocation, privacy and visitors use it (--log-format nginx_main)")
        _flag(parser, "earliest-event", type=date_arg, default="1990-01-01",
              help="lines dated before this UTC date are dead letters "
                   "'timestamp_out_of_range' (default 1990-01-01: archives from the 1990s "
                   "read as they are)")
        _flag(parser, "dedupe-identical-lines", action=argparse.BooleanOptionalAction,
              default=False,
              help="drop a line identical to one already read as a copy (duplicate_event), "
                   "for sources known to ship a log twice; off by default, since real logs "
                   "repeat lines that are requests (health checks, range requests)")


def add_arguments(options_class, parser) -> None:
    """Every flag of a kind's options class: its own and those it inherits, each once (as
    Beam's own parsing of a class walks its ancestors)."""
    own = []
    for cls in options_class.mro():
        if cls is PipelineOptions:
            break
        if "_add_argparse_args" in cls.__dict__:
            own.append(cls)
    for cls in reversed(own):  # the shared flags first, as the help lists them
        cls._add_argparse_args(parser)


class _StrictParser(_BeamArgumentParser):
    def error(self, message):
        raise UserError(message)


def _beam_option_classes():
    """Beam's options classes and any other library's: every PipelineOptions subclass but
    the pipeline kinds' own."""
    seen, stack = [], list(PipelineOptions.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return [c for c in seen if not issubclass(c, CommonOptions)]


def parse_options(argv: list[str], ours=ServerMetricsOptions, prog="python -m run"):
    """Validate ``argv`` strictly, then return Beam's PipelineOptions for it."""
    own = _StrictParser(prog=prog, allow_abbrev=False, add_help=False)
    add_arguments(ours, own)
    args, rest = own.parse_known_args(argv)
    beam_parser = _StrictParser(prog=prog, allow_abbrev=False, add_help=False)
    for cls in _beam_option_classes():
        try:
            cls._add_argparse_args(beam_parser)
        except argparse.ArgumentError:
            pass  # an option registered twice by two classes: the first is enough
    _, unknown = beam_parser.parse_known_args(rest)
    if unknown:
        flag = unknown[0].split("=", 1)[0]
        known = [s for a in own._actions + beam_parser._actions for s in a.option_strings]
        close = difflib.get_close_matches(flag, known, n=1)
        if close and close[0].replace("_", "-") in known:
            close = [close[0].replace("_", "-")]  # the spelling the help shows
        hint = f" (did you mean {close[0]}?)" if close else ""
        what = "unknown option" if flag.startswith("-") else "unexpected argument"
        raise UserError(f"{what} {flag}{hint}")
    return PipelineOptions(argv)


def help_text(ours=ServerMetricsOptions, prog="python -m run", description="") -> str:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     epilog="--streaming runs the same layers continuously "
                                            "(event-time windows, early and late panes). "
                                            "Every Apache Beam pipeline option is accepted too "
                                            "(--runner, --direct_num_workers, --project, ...).")
    add_arguments(ours, parser)
    return parser.format_help()
