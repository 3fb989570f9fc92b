"""The preflight of a run: every check of the options at once, before anything is built
or read, and the typed plan the run then follows (:class:`RunPlan`). A user's mistake is
one line here (``UserError``), never a failed bundle later; the options object itself goes
no further than the launch layer (this module, ``runs`` and each kind's module)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.errors import UserError
from beam_pipelines.io import sinks
from beam_pipelines.io.lakehouse import is_local
from beam_pipelines.runners import choose_runner
from transforms.windowing import BATCH, Mode, Streaming


@dataclass(frozen=True)
class PubSubFeed:
    subscription: str


@dataclass(frozen=True)
class KafkaFeed:
    bootstrap: str
    topics: tuple[str, ...]
    group: str
    join_wait_s: float | None  # --kafka-join: how long a record waits for its partners


@dataclass(frozen=True)
class TcpFeed:
    host: str
    port: int
    listen: bool  # or connect to a generator that serves


#: A real feed of a streaming run: a run from one appends to what earlier runs wrote and
#: settles its messages once written (the live generator is none of them).
Feed = PubSubFeed | KafkaFeed | TcpFeed


@dataclass(frozen=True)
class RunPlan:
    """Where and how a run goes, checked: the pipeline (the name its dead letters carry),
    its mode (``BATCH`` or ``Streaming``), the runner, whether it is Dataflow, whether the
    job is only built (``--dry_run``), the sink, the feed, how far ahead of the clock an
    event may be (``--max-future``) and the record kind's own typed ``settings``."""

    pipeline: str
    mode: Mode
    runner: str
    dataflow: bool
    offline: bool
    sink: object
    feed: Feed | None = None  # batch, or the live generator of a streaming run
    max_future_s: float | None = None
    settings: object = None  # the kind's: e.g. server_metrics.MetricsSettings


def preflight(options: PipelineOptions, kind, streaming: bool | None = None) -> RunPlan:
    """Every check a run of ``kind`` (a :class:`beam_pipelines.runs.Launch`) needs before
    it starts, in one place: the flags that go together, the mode (``--streaming`` unless
    ``streaming`` says otherwise), the runner, Dataflow's requirements, the sink (its
    names, credentials, datasets, server), the feed, and last the kind's own settings
    (its rules, formats, topics, databases), once everything else is known to be right."""
    from apache_beam.options.pipeline_options import TestOptions

    opts = options.view_as(kind.options_class)
    pipeline = kind.pipeline
    if streaming is None:
        streaming = bool(options.view_as(StandardOptions).streaming)
    _check_flags(opts, pipeline, streaming)
    mode = _mode(opts) if streaming else BATCH
    runner = choose_runner(options, streaming=streaming)
    if streaming and runner.split(".")[-1].lower() in ("fnapirunner", "prismrunner",
                                                        "portablerunner"):
        raise UserError(f"--streaming runs locally on the BundleBasedDirectRunner (the "
                        f"default), not on {runner}")
    dataflow = _is_dataflow(runner)
    if dataflow:
        _check_dataflow(options, opts, streaming)
    offline = dataflow and bool(options.view_as(TestOptions).dry_run)
    sink = choose_sink(options, opts, pipeline, streaming, dataflow, offline)
    feed = _feed(opts, pipeline, dataflow, offline) if streaming else None
    plan = RunPlan(pipeline, mode, runner, dataflow, offline, sink, feed, opts.max_future)
    return dataclasses.replace(plan, settings=kind.settings(options, opts, plan))


def _check_flags(opts, pipeline: str, streaming: bool) -> None:
    """Flags that belong to the other mode, or that go together."""
    if not streaming:
        for flag in ("subscription", "run_for", "tcp_listen", "tcp_connect",
                     "kafka_bootstrap", "kafka_topic", "archive"):
            if getattr(opts, flag) is not None:
                raise UserError(f"--{flag.replace('_', '-')} needs --streaming")
        if opts.kafka_join:
            raise UserError("--kafka-join needs --streaming")
        return
    if opts.input:
        raise UserError("--input reads files in batch; --streaming reads --subscription "
                        "or the live generator")
    if opts.mode == "append":
        raise UserError("--mode append is for batch runs (a stream from a subscription, "
                        "Kafka or TCP appends to its lakehouse already)")
    if bool(opts.kafka_bootstrap) != bool(opts.kafka_topic):
        raise UserError("--kafka-bootstrap and --kafka-topic go together")
    feeds = [f for f in _FEED_FLAGS if getattr(opts, f)]
    if len(feeds) > 1:
        raise UserError("read one source: "
                        + " or ".join("--" + f.replace("_", "-") for f in feeds))
    if opts.kafka_join and (pipeline != "server_metrics" or not opts.kafka_topic):
        raise UserError(_KAFKA_JOIN)


_FEED_FLAGS = ("tcp_listen", "tcp_connect", "subscription", "kafka_topic")
_KAFKA_JOIN = ("--kafka-join joins server metrics split over two or more --kafka-topic "
               "topics (one per metric family)")


def _feed(opts, pipeline: str, dataflow: bool, offline: bool) -> Feed | None:
    """The feed the flags name, checked: its address or names, and (on the local runner)
    that it answers and exists."""
    if opts.kafka_topic:
        from beam_pipelines.io import kafka

        topics = kafka.parse_topics(opts.kafka_topic)
        if opts.kafka_join and len(topics) < 2:
            raise UserError(_KAFKA_JOIN)
        if not dataflow and not offline:
            kafka.check(opts.kafka_bootstrap, topics)
        return KafkaFeed(opts.kafka_bootstrap, topics,
                         opts.kafka_group or f"telemetry-{pipeline}",
                         opts.kafka_join_wait if opts.kafka_join else None)
    if opts.tcp_listen or opts.tcp_connect:
        from beam_pipelines.io import tcp

        listen = bool(opts.tcp_listen)
        host, port = tcp.parse_address(opts.tcp_listen or opts.tcp_connect,
                                       "--tcp-listen" if listen else "--tcp-connect")
        if listen:
            tcp.check_listen((host, port))
        return TcpFeed(host, port, listen)
    if opts.subscription:
        from beam_pipelines.ops import pubsub

        pubsub.check_subscription(opts.subscription)
        if not offline:
            pubsub.require_credentials()
        if not dataflow:
            pubsub.check_subscription_exists(opts.subscription)
        return PubSubFeed(opts.subscription)
    return None


def _mode(opts) -> Streaming:
    if opts.early_firing < 1:
        raise UserError("--early-firing must be at least 1s")
    return Streaming(allowed_lateness_s=round(opts.allowed_lateness),
                     early_firing_s=opts.early_firing)


_REGION = re.compile(r"[a-z]+(-[a-z]+)+[0-9]+")


def _is_dataflow(runner: str) -> bool:
    return runner.split(".")[-1].lower().startswith("dataflow")


def is_dataflow(options: PipelineOptions) -> bool:
    return _is_dataflow(options.view_as(StandardOptions).runner or "")


def _check_dataflow(options: PipelineOptions, opts, streaming: bool) -> None:
    """What would make a Dataflow job fail late, each as one line, before submitting."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    from beam_pipelines.bigquery.warehouse import check_project

    gcp = options.view_as(GoogleCloudOptions)
    problems = []
    if not gcp.project:
        problems.append("--project is required on Dataflow")
    else:
        try:
            check_project(gcp.project, "--project")
        except UserError as exc:
            problems.append(str(exc))
    if not gcp.region:
        problems.append("--region is required on Dataflow (e.g. europe-west1)")
    elif not _REGION.fullmatch(gcp.region):
        problems.append(f"--region {gcp.region!r} is not a Google Cloud region (e.g. "
                        f"europe-west1)")
    if not (gcp.temp_location or "").startswith("gs://"):
        problems.append("--temp_location must be a gs:// path on Dataflow")
    if gcp.staging_location and not gcp.staging_location.startswith("gs://"):
        problems.append("--staging_location must be a gs:// path on Dataflow")
    if opts.sink == "lakehouse" and is_local(opts.output_dir):
        problems.append("Dataflow workers cannot write a local --output-dir: use --sink "
                        "bigquery (or a gs:// --output-dir)")
    if streaming and (opts.tcp_listen or opts.tcp_connect):
        problems.append("TCP sources run on the local runner only; on Dataflow read a "
                        "--subscription")
    elif streaming and not (opts.subscription or opts.kafka_bootstrap):
        problems.append("the live generator runs on the local runner only; on Dataflow "
                        "read a --subscription or --kafka-topic")
    if streaming and opts.archive and is_local(opts.archive):
        problems.append("Dataflow workers cannot write a local --archive: give a gs:// path")
    if not streaming and not opts.input:
        problems.append("on Dataflow the workers read --input gs://BUCKET/path/*.jsonl "
                        "(the generated sample is local)")
    if problems:
        raise UserError("; ".join(problems))
    if streaming and not gcp.enable_streaming_engine:
        # Streaming Engine moves shuffle and state off the workers: smaller workers,
        # faster autoscaling, and updates that keep state.
        gcp.enable_streaming_engine = True


_PG_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def choose_sink(options, opts, pipeline: str, streaming: bool, dataflow: bool,
                offline: bool = False):
    """The sink the flags ask for, checked: names, write method, credentials, datasets,
    the PostgreSQL server (``offline``: a job only built, so nothing is contacted)."""
    if opts.sink == "postgres" or opts.postgres_dsn:
        if not _PG_SCHEMA.fullmatch(opts.postgres_schema):
            raise UserError(f"--postgres-schema {opts.postgres_schema!r}: lowercase letters, "
                            "digits and underscores, starting with a letter or underscore")
    if opts.sink == "postgres":
        from beam_pipelines.io.postgres import PostgresSink

        if not opts.postgres_dsn:
            raise UserError("--sink postgres needs --postgres-dsn (a libpq URL or "
                            "connection string)")
        sink = PostgresSink(opts.postgres_dsn, opts.postgres_schema,
                            opts.postgres_retention or None)
        if not offline:
            sink.check()
        return sink
    main = _main_sink(options, opts, pipeline, streaming, dataflow, offline)
    if not opts.postgres_dsn:
        return main
    from beam_pipelines.io.postgres import PostgresHotTables
    from schemas.render import POSTGRES_TABLES

    hot = PostgresHotTables(opts.postgres_dsn, opts.postgres_schema,
                            opts.postgres_retention or None)
    if not offline:
        hot.check(POSTGRES_TABLES)
    return sinks.WithHotTables(main, hot)


def _main_sink(options, opts, pipeline: str, streaming: bool, dataflow: bool,
               offline: bool):
    if opts.sink == "lakehouse":
        return sinks.LakehouseSink(opts.output_dir)
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    from beam_pipelines.bigquery import emulator
    from beam_pipelines.bigquery.sink import FILE_LOADS, STORAGE_WRITE_API, default_method
    from beam_pipelines.bigquery.warehouse import Warehouse, parse_layers

    gcp = options.view_as(GoogleCloudOptions)
    warehouse = Warehouse(opts.bq_project or gcp.project, opts.bq_dataset_prefix,
                          opts.bq_location)
    # --bq-write-method is one of its argparse choices already.
    method = default_method(streaming) if opts.bq_write_method == "auto" else \
        opts.bq_write_method
    layers = parse_layers(opts.bq_layers)
    if "silver" not in layers:
        from beam_pipelines.bigquery.scheduled import silver_built_for

        if pipeline not in silver_built_for():
            raise UserError(f"--bq-layers {opts.bq_layers}: the scheduled SQL cannot build "
                            f"{pipeline}'s silver (it needs the pipeline's parsing and "
                            "enrichment): include silver")
    local_emulator = emulator.emulator_url() is not None
    if local_emulator and dataflow:
        raise UserError("BIGQUERY_EMULATOR_HOST points this process at a local emulator; a "
                        "Dataflow job writes to the real BigQuery: unset it")
    if method == STORAGE_WRITE_API and local_emulator:
        raise UserError("--bq-write-method STORAGE_WRITE_API needs Beam's Java expansion "
                        "service and the real BigQuery; use FILE_LOADS or STREAMING_INSERTS "
                        "with the emulator")
    temp = gcp.temp_location
    if method == FILE_LOADS and not local_emulator and not (temp or "").startswith("gs://"):
        raise UserError("--bq-write-method FILE_LOADS stages files in Cloud Storage: pass "
                        "--temp_location gs://BUCKET/tmp (or use STREAMING_INSERTS)")
    emulator.use_emulator(warehouse.project)
    if offline:
        return sinks.BigQuerySink(warehouse, method, pipeline, temp, layers=layers)
    emulator.require_credentials()
    if not dataflow or local_emulator:
        from beam_pipelines.bigquery.admin import missing_datasets

        missing = missing_datasets(warehouse)
        if missing:
            raise UserError(
                f"BigQuery dataset(s) {', '.join(missing)} do not exist: create them with "
                f"`python -m beam_pipelines.bigquery setup --project {warehouse.project} "
                f"--dataset-prefix {warehouse.prefix}`")
    if local_emulator and method == FILE_LOADS:
        import tempfile

        # The emulator loads files from local paths, which Beam only accepts unvalidated.
        return sinks.BigQuerySink(warehouse, method, pipeline,
                            temp or tempfile.mkdtemp(prefix="bq-loads-"), validate=False,
                            layers=layers)
    return sinks.BigQuerySink(warehouse, method, pipeline, temp, layers=layers)
