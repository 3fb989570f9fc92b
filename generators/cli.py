"""``python -m generators metrics|logs ...``: a seeded stream of server metrics or web
access logs, to a file, stdout or Pub/Sub."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone

from beam_pipelines.errors import CommandParser
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.weblogs import WebLogConfig, WebLogGenerator
from generators.writers import FORMATS, format_from_path, write_lines, write_metrics
from schemas.durations import duration_arg as _duration
from schemas.durations import positive_int_arg as _positive_int

_Parser = CommandParser


def _start(text: str) -> datetime:
    if text == "now":
        return datetime.now(timezone.utc).replace(microsecond=0)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time or 'now'") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction within [0, 1]")
    return value


def _start_and_seed(p) -> None:
    p.add_argument("--start", type=_start, default=None,
                   help="event time of the first record, ISO 8601 or 'now' (default: "
                        "2026-01-05T00:00:00Z for files, fixed so runs are reproducible; "
                        "now for Pub/Sub, TCP and Kafka)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")


def _publishing(p, what: str, file_help: str) -> None:
    """Where the records go: a file (or files), or Pub/Sub."""
    p.add_argument("--to", choices=("file", "pubsub", "tcp", "kafka"), default="file",
                   help=f"{file_help} (default), publish to Pub/Sub, send lines over "
                        "TCP, or produce to Kafka")
    p.add_argument("--kafka-bootstrap", metavar="HOST:PORT",
                   help="--to kafka: the broker(s)")
    p.add_argument("--kafka-topic", metavar="TOPIC",
                   help="--to kafka: the topic (created, 3 partitions, when missing)")
    p.add_argument("--topic-per-family", action="store_true",
                   help="--to kafka, server metrics: split each record over one topic per "
                        "metric family, TOPIC-cpu, -mem, -net and -disk, as seed 002 did "
                        "(read with python -m run --streaming --kafka-join)")
    p.add_argument("--tcp-connect", metavar="HOST:PORT",
                   help="--to tcp: send to a pipeline listening there (python -m run "
                        "--streaming --tcp-listen HOST:PORT)")
    p.add_argument("--tcp-listen", metavar="HOST:PORT",
                   help="--to tcp: serve the stream to every client that connects (seed "
                        "001's server on port 9988); starts when the first client connects")
    p.add_argument("--topic", help="Pub/Sub topic, projects/PROJECT/topics/NAME (with --to "
                                   "pubsub; the emulator is used when PUBSUB_EMULATOR_HOST is set)")
    p.add_argument("--envelope", type=_positive_int, default=1,
                   help=f"{what} per Pub/Sub message, packed as NDJSON (default 1)")
    p.add_argument("--pace", action=argparse.BooleanOptionalAction, default=True,
                   help="publish in real time (default); --no-pace publishes as fast as "
                        "Pub/Sub accepts")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


def _common(p, what: str) -> None:
    """Options every stream generator has: size, time, seed, faults, destination."""
    size = p.add_mutually_exclusive_group()
    size.add_argument("--duration", type=_duration, default=None,
                      help="event time to cover, e.g. 90s, 10m, 6h, 2d (default 1m)")
    size.add_argument("--count", type=int, default=None, help=f"number of {what} instead")
    _start_and_seed(p)
    p.add_argument("--malformed-rate", type=_rate, default=0.0,
                   help=f"fraction of malformed {what}")
    p.add_argument("--duplicate-rate", type=_rate, default=0.0,
                   help=f"fraction of {what} sent twice")
    p.add_argument("--late-rate", type=_rate, default=0.0,
                   help=f"fraction of {what} delivered late, out of order")
    p.add_argument("--late-by", type=_duration, default=120.0,
                   help="how much later late records arrive, in event time (default 2m)")
    _publishing(p, what, "write to a file or stdout")
    p.add_argument("--output", "-o", default="-", help="file to write, or - for stdout")


def build_parser(prog: str = "python -m generators") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog,
                     description="Seeded, realistic telemetry for the pipelines.")
    sub = parser.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    m = sub.add_parser("metrics", help="server metrics (JSON lines, CSV or Parquet)",
                       description="Server metrics from a seeded fleet: types with their own "
                                   "baselines, a daily cycle, noise and incidents.")
    m.add_argument("--servers", type=_positive_int, default=10, help="fleet size (default 10)")
    m.add_argument("--interval", type=_duration, default=0.015,
                   help="time between two reports of one server (default 15ms, as seed 000)")
    m.add_argument("--anomaly-rate", type=_rate, default=0.01,
                   help="fraction of records that are CPU+memory spikes of 95–100 %% "
                        "(default 0.01, as seed 000)")
    m.add_argument("--incidents-per-day", type=float, default=4.0,
                   help="mean incidents (CPU saturation, memory leak, overheating) per server "
                        "and day, scaled by each server's proneness (default 4)")
    m.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from the file name, else jsonl)")
    m.add_argument("--ground-truth", default=None, metavar="FILE",
                   help="also write one JSON line per injected fault that reached the "
                        "output (kind: spike, cpu_saturation, memory_leak, overheating; "
                        "server_id; start; end), to score alerts against")
    _common(m, "records")
    g = sub.add_parser("logs", help="web access logs (Combined Log Format)",
                       description="Access-log lines of a seeded site: popular and rare "
                                   "pages, returning visitors with stable IPs (IPv4 and "
                                   "IPv6), real browsers and bots, a realistic status mix.")
    g.add_argument("--visitors", type=_positive_int, default=2000,
                   help="distinct visitors (default 2000)")
    g.add_argument("--rate", type=float, default=50.0,
                   help="requests per second of event time, on average (default 50)")
    g.add_argument("--pages", type=_positive_int, default=2000,
                   help="pages in the site's catalogue (default 2000)")
    g.add_argument("--ipv6-share", type=_rate, default=0.2,
                   help="fraction of visitors on IPv6 (default 0.2)")
    g.add_argument("--bot-share", type=_rate, default=0.08,
                   help="fraction of visitors that are bots (default 0.08)")
    _common(g, "lines")
    h = sub.add_parser("host", help="this machine's real metrics, in seed 003's shape",
                       description="Samples this machine with psutil every --interval, in "
                                   "seed 003's record shape (host, cpu, memory, load1/5/15, "
                                   "disk, network rates, os, arch).")
    h.add_argument("--interval", type=_duration, default=5.0,
                   help="time between two samples (default 5s)")
    size = h.add_mutually_exclusive_group()
    size.add_argument("--duration", type=_duration, default=None,
                      help="how long to sample (default 1m)")
    size.add_argument("--count", type=_positive_int, default=None,
                      help="number of samples instead")
    _publishing(h, "samples", "write to a file or stdout")
    h.add_argument("--output", "-o", default="-", help="file to write, or - for stdout")
    r = sub.add_parser("regional", help="seed 001's India CSV, USA JSON lines, Germany Parquet",
                       description="Three files in the regional shapes of seed 001 (their own "
                                   "column names, units and time conventions), from one "
                                   "seeded fleet: every third server reports in each region.")
    r.add_argument("--servers", type=_positive_int, default=9,
                   help="fleet size, split over the three regions (default 9)")
    r.add_argument("--interval", type=_duration, default=10.0,
                   help="time between two reports of one server (default 10s)")
    r.add_argument("--duration", type=_duration, default=3600.0,
                   help="event time to cover (default 1h)")
    _start_and_seed(r)
    r.add_argument("--malformed-rate", type=_rate, default=0.0,
                   help="fraction of records whose temperature no conversion takes")
    r.add_argument("--output-dir", "-o", default=None,
                   help="directory for india.csv, usa.jsonl and germany.parquet")
    r.add_argument("--out-dir", dest="output_dir", help=argparse.SUPPRESS)  # former name
    # On Pub/Sub each record is a JSON object in its region's own names.
    _publishing(r, "records", "write the three files into --output-dir")
    return parser


def config_from_args(args):
    duration = args.duration if args.duration is not None or args.count is not None else 60.0
    start = args.start
    if start is None:
        start = (datetime.now(timezone.utc).replace(microsecond=0)
                 if args.to in ("pubsub", "tcp", "kafka") else GeneratorConfig.start)
    if args.kind == "logs":
        return WebLogConfig(
            visitors=args.visitors, rate_per_s=args.rate, pages=args.pages,
            ipv6_share=args.ipv6_share, bot_share=args.bot_share, start=start,
            count=args.count, duration_s=duration, seed=args.seed,
            malformed_rate=args.malformed_rate, duplicate_rate=args.duplicate_rate,
            late_rate=args.late_rate, late_by_s=args.late_by)
    return GeneratorConfig(
        servers=args.servers, interval_ms=max(1, int(round(args.interval * 1000))),
        start=start, count=args.count, duration_s=duration, seed=args.seed,
        anomaly_rate=args.anomaly_rate, incidents_per_server_day=args.incidents_per_day,
        malformed_rate=args.malformed_rate, duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate, late_by_s=args.late_by)


def _regional(args) -> int:
    from generators.regional import RegionalGenerator, write_regional

    try:
        start = args.start or (datetime.now(timezone.utc).replace(microsecond=0)
                               if args.to == "pubsub" else GeneratorConfig.start)
        config = GeneratorConfig(servers=args.servers,
                                 interval_ms=max(1, int(round(args.interval * 1000))),
                                 start=start, duration_s=args.duration, seed=args.seed,
                                 anomaly_rate=0.0)
        if args.to == "pubsub":
            return _publish(RegionalGenerator(config, args.malformed_rate), args)
        if not args.output_dir:
            raise ValueError("give --output-dir DIR for the three files (or --to pubsub)")
        paths, stats = write_regional(config, args.output_dir, args.malformed_rate)
    except (OSError, ValueError) as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {stats.line()} to {', '.join(paths.values())}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m generators") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.kind == "regional":
        return _regional(args)
    if args.kind == "host":
        return _host(args)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    logs = args.kind == "logs"
    generator = WebLogGenerator(config) if logs else MetricsGenerator(config)
    if args.to in _SENDERS:
        code = _SENDERS[args.to](generator, args)
        return _write_ground_truth(generator, args) or code
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=config.total_events, unit="ev", unit_scale=True, file=sys.stderr)
    try:
        progress = bar.update if bar else None
        if logs:
            write_lines(generator, generator.render(), args.output, progress=progress)
        else:
            write_metrics(generator, args.output, args.format or format_from_path(args.output),
                          progress=progress)
    except (OSError, ValueError) as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("python -m generators: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if bar:
            bar.close()
    if args.output != "-":
        print(f"wrote {generator.stats.line()} to {args.output}", file=sys.stderr)
    return _write_ground_truth(generator, args)


def _host(args) -> int:
    from generators.host import HostConfig, HostSampler

    duration = args.duration if args.duration is not None or args.count is not None else 60.0
    sampler = HostSampler(HostConfig(interval_s=args.interval, count=args.count,
                                     duration_s=duration))
    if args.to in _SENDERS:
        return _SENDERS[args.to](sampler, args)
    try:  # a line as soon as it is sampled, not in blocks
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
        with out if out is not sys.stdout else _nullcontext():
            for line in sampler.render():
                out.write(line + "\n")
                out.flush()
    except OSError as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass  # the samples so far are written
    if args.output != "-":
        print(f"wrote {sampler.stats.line()} to {args.output}", file=sys.stderr)
    return 0


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def _write_ground_truth(generator, args) -> int:
    path = getattr(args, "ground_truth", None)
    if not path:
        return 0
    from generators.writers import write_ground_truth

    try:
        write_ground_truth(generator.faults, path)
    except OSError as exc:
        print(f"python -m generators: error: --ground-truth {path}: {exc.strerror}",
              file=sys.stderr)
        return 2
    print(f"wrote {len(generator.faults):,} injected faults to {path}", file=sys.stderr)
    return 0



def _stop_on_signals():
    """An event Ctrl-C or SIGTERM sets: the sender stops after the record in hand and
    reports what it sent."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _produce_kafka(generator, args) -> int:
    from beam_pipelines.errors import UserError
    from beam_pipelines.io.kafka import parse_topics
    from generators.kafka import produce

    try:
        if not (args.kafka_bootstrap and args.kafka_topic):
            raise UserError("--to kafka needs --kafka-bootstrap HOST:PORT and "
                            "--kafka-topic TOPIC")
        topics = parse_topics(args.kafka_topic)
        if len(topics) != 1:
            raise UserError("--to kafka writes one --kafka-topic")
        topic = topics[0]
        if args.topic_per_family and args.kind != "metrics":
            raise UserError("--topic-per-family splits server metrics (generators metrics)")
    except UserError as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    stop = _stop_on_signals()
    started = time.monotonic()
    try:
        stats = produce(generator, args.kafka_bootstrap, topic, pace=args.pace, stop=stop,
                        per_family=args.topic_per_family)
    except Exception as exc:  # noqa: BLE001 - the client's own words, on one line
        print(f"python -m generators: error: Kafka {args.kafka_bootstrap}: "
              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 1
    where = f"{topic}-{{cpu,mem,net,disk}}" if args.topic_per_family else topic
    print(f"{stats.line()} to {where} in {time.monotonic() - started:.1f}s; generator: "
          f"{generator.stats.line()}", file=sys.stderr)
    return 1 if stats.failed else 0


def _send_tcp(generator, args) -> int:
    from beam_pipelines.errors import UserError
    from beam_pipelines.io.tcp import parse_address
    from generators.tcp import stream_lines

    try:
        if bool(args.tcp_connect) == bool(args.tcp_listen):
            raise UserError("--to tcp needs one of --tcp-connect HOST:PORT or "
                            "--tcp-listen HOST:PORT")
        listen = bool(args.tcp_listen)
        flag = "--tcp-listen" if listen else "--tcp-connect"
        address = parse_address(args.tcp_listen or args.tcp_connect, flag)
    except UserError as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    stop = _stop_on_signals()
    started = time.monotonic()
    try:
        stats = stream_lines(generator, address, listen, pace=args.pace, stop=stop,
                             on_listening=lambda port: print(
                                 f"serving on {address[0]}:{port}; starting when a client "
                                 "connects", file=sys.stderr, flush=True))
    except OSError as exc:
        print(f"python -m generators: error: {flag} {address[0]}:{address[1]}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{stats.line()} in {time.monotonic() - started:.1f}s; generator: "
          f"{generator.stats.line()}", file=sys.stderr)
    return 0


def _publish(generator, args) -> int:
    from beam_pipelines.errors import UserError
    from beam_pipelines.ops.pubsub import check_topic, require_credentials
    from generators.publisher import publish

    try:
        if not args.topic:
            raise UserError("--to pubsub needs --topic projects/PROJECT/topics/NAME")
        check_topic(args.topic)
        require_credentials()
    except UserError as exc:
        print(f"python -m generators: error: {exc}", file=sys.stderr)
        return 2
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    started = time.monotonic()
    stats = publish(generator, args.topic, envelope=args.envelope, pace=args.pace,
                    progress=show)
    seconds = time.monotonic() - started
    print(f"{stats.line()} to {args.topic} in {seconds:.1f}s "
          f"({stats.messages / max(seconds, 1e-9):,.0f} msg/s); generator: "
          f"{generator.stats.line()}", file=sys.stderr)
    return 1 if stats.failed else 0


#: ``--to`` (other than a file) → the function that sends a generator's records there.
_SENDERS = {"pubsub": _publish, "tcp": _send_tcp, "kafka": _produce_kafka}
