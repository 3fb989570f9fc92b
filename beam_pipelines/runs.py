"""The one launch path of every ``python -m run KIND``: the preflight, then a batch or a
streaming run as the plan's mode chooses, around the one graph :func:`build` wires.

A record kind gives the path a :class:`Launch` (``server_metrics.LAUNCH``,
``web_logs.LAUNCH``): its tables, its typed settings (checked in the preflight), its
sample and live generator, and its two medallions, batch and streaming. Batch: take the
input files or generate the sample, run, write the catalog. Streaming: pick the source (a
feed or the kind's live generator), prepare the lakehouse so it can be queried during the
run, and turn Ctrl-C into a drain."""
from __future__ import annotations

import os
import signal
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from beam_pipelines.catalog import shell_command
from beam_pipelines.io import delivery, live_sources
from beam_pipelines.io.lakehouse import (
    clear_tables,
    is_local,
    prepare_output_dir,
    write_catalog,
    write_empty_tables,
)
from beam_pipelines.io.progress import ProgressReporter
from beam_pipelines.io.sinks import write_tables
from beam_pipelines.io.sources import COMPRESSED, ReadRawBatches, count_input_records
from beam_pipelines.preflight import KafkaFeed, PubSubFeed, RunPlan, TcpFeed, preflight
from beam_pipelines.runners import is_local_streaming


class Launch:
    """What a record kind gives the launch path. The options (``opts``) reach only
    :meth:`settings`, :meth:`inputs` and :meth:`live_generator`; the graph is built from
    the plan and its typed settings alone."""

    pipeline: str            # the name its dead letters carry and its runs go by
    title: str               # what the start-up line calls its medallion
    label: str               # the medallion's step label
    options_class: type      # its PipelineOptions subclass
    tables: tuple            # every table a run writes
    peek: str                # the table the streaming start-up suggests querying
    streamed_batches: frozenset  # the tables a streaming medallion leaves as Arrow batches

    @property
    def appended_tables(self) -> tuple:
        """What a replay or an appending run writes (all its tables, by default)."""
        return self.tables

    @property
    def bronze(self):
        """Its bronze table's schema: the one of its tables in that layer."""
        return self._of_layer("bronze")

    @property
    def silver(self):
        return self._of_layer("silver")

    def _of_layer(self, layer: str):
        [schema] = [t for t in self.tables if t.layer == layer]
        return schema

    def settings(self, options: PipelineOptions, opts, plan: RunPlan):
        """Its own options, checked (a mistake is a ``UserError``), as a typed value."""
        raise NotImplementedError

    def inputs(self, opts, match: bool = True) -> dict[str, list[str]]:
        """The files of ``--input`` by format (``match=False``: the patterns unexpanded),
        or the sample, generated."""
        raise NotImplementedError

    def live_generator(self, opts) -> tuple:
        """(generator class, its config, a description) of a streaming run with no feed."""
        raise NotImplementedError

    def batch_medallion(self, plan: RunPlan, prior_silver=None,
                        rechecked_bronze=None) -> beam.PTransform:
        """Raw batches → {table: PCollection of Arrow tables} in the global window
        (``prior_silver``, ``rechecked_bronze``: what an appending run adds)."""
        raise NotImplementedError

    def streaming_medallion(self, plan: RunPlan, drop_redeliveries: bool,
                            redelivery_shards: int, replayed_silver) -> beam.PTransform:
        """Live raw batches → {table: PCollection}, windowed as ``plan.mode`` says."""
        raise NotImplementedError

    def publish(self, tables: dict, plan: RunPlan, batches) -> None:
        """What else leaves the graph besides the sink (e.g. alerts to a topic)."""

    def sample_written(self, output_dir: str) -> None:
        """After a batch run over the generated sample: what goes beside it."""

    def summary_args(self, plan: RunPlan) -> dict:
        return {}


def launch(options: PipelineOptions, kind: Launch) -> dict:
    """``python -m run KIND``: the preflight, then the run its mode chooses."""
    opts = options.view_as(kind.options_class)
    plan = preflight(options, kind)
    run = plan.mode.choose(batch=_batch, streaming=_streaming)
    outcome = run(options, opts, kind, plan)
    return {**outcome, "summary_args": kind.summary_args(plan)}


def build(pipeline: beam.Pipeline, raw: beam.PCollection, kind: Launch, plan: RunPlan, *,
          drop_redeliveries: bool = False, replayed_silver=None) -> dict:
    """The one graph of every run: raw batches → the kind's medallion (the batch or the
    streaming one, as the plan's mode chooses) → the sink, and what the kind publishes.
    Returns every table's PCollection."""
    tables = raw | kind.label >> medallion(kind, plan, drop_redeliveries=drop_redeliveries,
                                           replayed_silver=replayed_silver)
    write(tables, kind, plan)
    return tables


def medallion(kind: Launch, plan: RunPlan, *, drop_redeliveries: bool = False,
              replayed_silver=None, prior_silver=None,
              rechecked_bronze=None) -> beam.PTransform:
    """The kind's medallion for the plan's mode."""
    def streaming():
        # One process: one redelivery key per minute; a runner spreading keys over
        # workers: a few, so no minute is one hot key.
        shards = 1 if is_local_streaming(plan.runner) else 8
        return kind.streaming_medallion(plan, drop_redeliveries, shards, replayed_silver)

    return plan.mode.choose(
        batch=lambda: kind.batch_medallion(plan, prior_silver, rechecked_bronze),
        streaming=streaming)()


def write(tables: dict, kind: Launch, plan: RunPlan, schemas=None) -> None:
    """A medallion's ``tables`` to the plan's sink (``schemas``: the kind's tables by
    default), and to what the kind publishes."""
    batches = plan.mode.choose(batch=True, streaming=kind.streamed_batches)
    write_tables(plan.sink, tables, schemas or kind.tables, pipeline=plan.pipeline,
                 mode=plan.mode, batches=batches)
    kind.publish(tables, plan, batches)


def _drain_on_interrupt():
    """First Ctrl-C (or SIGTERM): drain, i.e. stop reading and close every window, then
    print the summary. A second one aborts."""
    def handler(signum, frame):
        if live_sources.drain_requested():
            raise KeyboardInterrupt
        print("\nDraining: no more input; closing open windows (Ctrl-C again to abort)…",
              file=sys.stderr, flush=True)
        live_sources.request_drain()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _line_file_bytes(files) -> int | None:
    """Bytes of the uncompressed local line files among the inputs (what the progress line
    measures its share of), or None."""
    paths = files.get("jsonl", [])
    sizes = [os.path.getsize(p) for p in paths
             if is_local(p) and not p.lower().endswith(COMPRESSED) and os.path.isfile(p)]
    return sum(sizes) or None


def dataflow_console_url(project: str, region: str, job_id: str) -> str:
    return (f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}"
            f"?project={project}")


def announce_dataflow_job(result, options: PipelineOptions) -> str | None:
    """Print the submitted job's id and console link (Beam says it only at INFO level);
    a dry run has no job."""
    job_id = getattr(result, "job_id", None)
    job_id = job_id() if callable(job_id) else job_id
    if not job_id:
        return None
    cloud = options.view_as(GoogleCloudOptions)
    url = dataflow_console_url(cloud.project, cloud.region, job_id)
    print(f"Dataflow job {job_id}: {url}", flush=True)
    return url


def _batch(options: PipelineOptions, opts, kind: Launch, plan: RunPlan) -> dict:
    """A batch run: ``--mode append`` and ``--mode replace`` in place keep what the
    lakehouse holds (:mod:`beam_pipelines.replay`); otherwise the input files (or the
    generated sample) replace the tables."""
    from beam_pipelines import replay

    output_dir = opts.output_dir
    kept, files = replay.into_place(options, opts, kind, plan)
    if kept:
        return kept
    prepare_output_dir(output_dir, kind.tables)
    sink = plan.sink
    if files is None:
        files = kind.inputs(opts, match=not plan.offline)
    lakehouse = sink.name == "lakehouse" and is_local(output_dir)
    if lakehouse:
        clear_tables(output_dir, kind.tables, kind.pipeline)
    elif sink.name == "postgres" and not plan.offline:
        sink.clear(kind.tables, kind.pipeline)
    count = sum(len(v) for v in files.values())
    print(f"Running the {kind.title} medallion on {plan.runner} over {count} file(s) into "
          f"{sink.describe()}…", flush=True)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, pipeline | "ReadFiles" >> ReadRawBatches(files), kind, plan)
    every = 0.0 if plan.dataflow else opts.progress
    with ProgressReporter(every, _line_file_bytes(files)):
        result = pipeline.run()  # the local batch runner runs the whole job in here
        if plan.dataflow:
            announce_dataflow_job(result, options)
        if opts.wait or not plan.dataflow:
            result.wait_until_finish()
    catalog = write_catalog(output_dir, kind.tables) if lakehouse else None
    if catalog and not opts.input:
        kind.sample_written(output_dir)
    counted = count_input_records(files) if catalog or (
        sink.name == "postgres" and not plan.dataflow) else None
    return {"output_dir": output_dir, "catalog": catalog, "tables": kind.tables,
            "sink": sink, "result": result, "dry_run": plan.offline,
            "input_records": counted}


def _resume(output_dir: str, tables, pipeline_name: str) -> delivery.DeliveryLedger:
    """A streaming run from a subscription appends to its lakehouse: what earlier runs
    wrote is kept, and their records are not written twice."""
    resume = delivery.Resume.load(output_dir, pipeline_name, tables)
    if resume.prior_input:
        print(f"Resuming: {resume.prior_input:,} record(s) already in {output_dir} are kept; "
              f"redelivered ones are not written twice", flush=True)
    return delivery.DeliveryLedger(resume)


def _streaming(options: PipelineOptions, opts, kind: Launch, plan: RunPlan) -> dict:
    """A streaming run: from its feed (a subscription, Kafka, TCP) or the kind's live
    generator, into a lakehouse that can be queried while it runs; Ctrl-C drains."""
    tables, pipeline_name = kind.tables, kind.pipeline
    output_dir = opts.output_dir
    prepare_output_dir(output_dir, tables)
    runner, dataflow, sink = plan.runner, plan.dataflow, plan.sink
    stop_at = time.time() + opts.run_for if opts.run_for else None
    feed = plan.feed
    if isinstance(feed, KafkaFeed):
        from beam_pipelines.io import kafka

        source = kafka.read_kafka(feed.bootstrap, feed.topics, feed.group, stop_at,
                                  opts.max_out_of_orderness, dataflow=dataflow,
                                  batches=True, max_future_s=plan.max_future_s,
                                  join_wait_s=feed.join_wait_s)
        what = f"Kafka {','.join(feed.topics)} at {feed.bootstrap} (group {feed.group})"
    elif isinstance(feed, TcpFeed):
        from beam_pipelines.io import tcp as tcp_source

        source = tcp_source.read_tcp((feed.host, feed.port), feed.listen, stop_at,
                                     opts.max_out_of_orderness, batches=True,
                                     max_future_s=plan.max_future_s)
        what = f"tcp://{feed.host}:{feed.port}" + (" (listening)" if feed.listen else "")
    elif isinstance(feed, PubSubFeed):
        source = live_sources.read_pubsub(feed.subscription, stop_at,
                                          opts.max_out_of_orderness, dataflow=dataflow,
                                          batches=True, max_future_s=plan.max_future_s,
                                          max_outage_s=opts.max_source_outage)
        what = feed.subscription
    else:
        generator, config, what = kind.live_generator(opts)
        source = live_sources.generate_live(generator, config, stop_at,
                                            opts.max_out_of_orderness, batches=True,
                                            max_future_s=plan.max_future_s)
    if opts.archive:
        source = live_sources.with_archive(source, opts.archive)
        what += f", archived in {opts.archive}"
    catalog = None
    ledger = None
    if sink.name == "lakehouse" and is_local(output_dir):
        if feed and not dataflow:
            ledger = _resume(output_dir, tables, pipeline_name)
        else:  # the live generator: a new stream each time
            clear_tables(output_dir, tables, pipeline_name)
        write_empty_tables(output_dir, tables)
        catalog = write_catalog(output_dir, tables)
    elif sink.name == "postgres" and not feed and not plan.offline:
        sink.clear(tables, pipeline_name)  # the live generator: a new stream each time
    until = f"for {opts.run_for:g}s" if opts.run_for else "until Ctrl-C"
    live_sources.reset_drain()
    delivery.start(ledger)
    # From the first line on, Ctrl-C drains: during the build, the source then stops as
    # soon as it starts, and the run still ends with its summary.
    previous = _drain_on_interrupt()
    try:
        print(f"Streaming the {kind.title} medallion on {runner} from {what} {until} into "
              f"{sink.describe()}…", flush=True)
        if catalog:
            print("Query while it runs: " + shell_command(
                output_dir, f"select * from {kind.peek} order by window_start desc limit 10"),
                flush=True)
        if is_local_streaming(runner):
            from beam_pipelines.runners import local as local_runner

            local_runner.install()
        pipeline = beam.Pipeline(options=options)
        # A resumed run computes gold again from the silver rows earlier runs wrote.
        replayed = delivery.replay_silver(ledger.resume.silver_files) if ledger else None
        build(pipeline, pipeline | "ReadLive" >> source, kind, plan,
              drop_redeliveries=isinstance(feed, PubSubFeed),
              replayed_silver=pipeline | "ReplaySilver" >> replayed if replayed else None)
        live_sources.set_heartbeat(opts.heartbeat)
        result = pipeline.run()
        if dataflow:
            announce_dataflow_job(result, options)
        if not dataflow:
            result.wait_until_finish()  # a Dataflow job runs on until drained or cancelled
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        unsettled = delivery.finish() if ledger else 0
    if unsettled:
        print(f"{unsettled:,} message(s) left unacknowledged: the next run reads them "
              f"again", flush=True)
    if catalog and not dataflow:  # a file every few seconds per table: one each now
        from beam_pipelines.io.lakehouse import compact

        print(compact(output_dir, tables).line(), flush=True)
    read = live_sources.records_read() if not dataflow else None
    if ledger is not None and read is not None:
        # This run's records, plus what earlier runs wrote, minus the bronze rows it did
        # not write twice: what bronze and its dead letters must hold now.
        read += ledger.resume.prior_input - ledger.bronze_rewrites_dropped
    elif sink.name == "postgres" and feed:
        read = None  # appended to earlier runs' rows, which this run did not count
    return {"output_dir": output_dir, "catalog": catalog, "tables": tables, "sink": sink,
            "result": result, "dry_run": plan.offline, "input_records": read,
            "failure": live_sources.source_failure() if not dataflow else None}
