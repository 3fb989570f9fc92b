"""What every ``python -m run PIPELINE`` does around its own graph.

Batch: check the options, take the input files or generate the sample, run, write the
catalog. Streaming: check the options, pick the source (a subscription or the pipeline's
live generator), prepare the lakehouse so it can be queried during the run, and turn
Ctrl-C into a drain."""
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
from beam_pipelines.io.sources import COMPRESSED, count_input_records
from beam_pipelines.preflight import KafkaFeed, PubSubFeed, TcpFeed, preflight
from beam_pipelines.runners import is_local_streaming


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
    paths = files.get("jsonl", []) if isinstance(files, dict) else files
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


def batch(options: PipelineOptions, opts, title: str, tables, inputs, build,
          pipeline_name: str) -> dict:
    """``inputs(match)`` → the files to read (the sample when there is no ``--input``;
    ``match=False``: the patterns unexpanded); ``build(pipeline, files, sink)`` wires the
    graph."""
    plan = preflight(options, opts, pipeline_name, streaming=False)
    output_dir = opts.output_dir
    prepare_output_dir(output_dir, tables)
    sink = plan.sink
    files = inputs(not plan.offline)
    lakehouse = sink.name == "lakehouse" and is_local(output_dir)
    if lakehouse:
        clear_tables(output_dir, tables, pipeline_name)
    elif sink.name == "postgres" and not plan.offline:
        sink.clear(tables, pipeline_name)
    count = sum(len(v) for v in files.values()) if isinstance(files, dict) else len(files)
    print(f"Running the {title} medallion on {plan.runner} over {count} file(s) into "
          f"{sink.describe()}…", flush=True)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, files, sink)
    every = 0.0 if plan.dataflow else opts.progress
    with ProgressReporter(every, _line_file_bytes(files)):
        result = pipeline.run()  # the local batch runner runs the whole job in here
        if plan.dataflow:
            announce_dataflow_job(result, options)
        if opts.wait or not plan.dataflow:
            result.wait_until_finish()
    catalog = write_catalog(output_dir, tables) if lakehouse else None
    counted = count_input_records(files) if catalog or (
        sink.name == "postgres" and not plan.dataflow) else None
    return {"output_dir": output_dir, "catalog": catalog, "tables": tables, "sink": sink,
            "result": result, "dry_run": plan.offline, "input_records": counted}


def _resume(output_dir: str, tables, pipeline_name: str) -> delivery.DeliveryLedger:
    """A streaming run from a subscription appends to its lakehouse: what earlier runs
    wrote is kept, and their records are not written twice."""
    resume = delivery.Resume.load(output_dir, pipeline_name, tables)
    if resume.prior_input:
        print(f"Resuming: {resume.prior_input:,} record(s) already in {output_dir} are kept; "
              f"redelivered ones are not written twice", flush=True)
    return delivery.DeliveryLedger(resume)


def streaming(options: PipelineOptions, opts, title: str, tables, live_generator, build,
              peek: str, pipeline_name: str, batches: bool = False) -> dict:
    """``live_generator()`` → (generator class, its config, description);
    ``build(pipeline, source, streaming, drop_redeliveries, sink, replay)`` wires the
    graph (``replay``: None, or a root of the silver rows an earlier run wrote, for gold);
    ``peek`` is the table the start-up message suggests querying; ``batches``: the source
    emits live raw batches (one per poll), not records."""
    plan = preflight(options, opts, pipeline_name, streaming=True)
    output_dir = opts.output_dir
    prepare_output_dir(output_dir, tables)
    runner, dataflow, sink = plan.runner, plan.dataflow, plan.sink
    stop_at = time.time() + opts.run_for if opts.run_for else None
    feed = plan.feed
    if isinstance(feed, KafkaFeed):
        from beam_pipelines.io import kafka

        source = kafka.read_kafka(feed.bootstrap, feed.topics, feed.group, stop_at,
                                  opts.max_out_of_orderness, dataflow=dataflow,
                                  batches=batches, max_future_s=opts.max_future,
                                  join_wait_s=feed.join_wait_s)
        what = f"Kafka {','.join(feed.topics)} at {feed.bootstrap} (group {feed.group})"
    elif isinstance(feed, TcpFeed):
        from beam_pipelines.io import tcp as tcp_source

        source = tcp_source.read_tcp((feed.host, feed.port), feed.listen, stop_at,
                                     opts.max_out_of_orderness, batches=batches,
                                     max_future_s=opts.max_future)
        what = f"tcp://{feed.host}:{feed.port}" + (" (listening)" if feed.listen else "")
    elif isinstance(feed, PubSubFeed):
        source = live_sources.read_pubsub(feed.subscription, stop_at,
                                          opts.max_out_of_orderness, dataflow=dataflow,
                                          batches=batches, max_future_s=opts.max_future,
                                          max_outage_s=opts.max_source_outage)
        what = feed.subscription
    else:
        generator, settings, what = live_generator()
        source = live_sources.generate_live(generator, settings, stop_at,
                                            opts.max_out_of_orderness, batches=batches,
                                            max_future_s=opts.max_future)
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
        print(f"Streaming the {title} medallion on {runner} from {what} {until} into "
              f"{sink.describe()}…", flush=True)
        if catalog:
            print("Query while it runs: " + shell_command(
                output_dir, f"select * from {peek} order by window_start desc limit 10"),
                flush=True)
        if is_local_streaming(runner):
            from beam_pipelines.runners import local as local_runner

            local_runner.install()
        pipeline = beam.Pipeline(options=options)
        # A resumed run computes gold again from the silver rows earlier runs wrote.
        replay = delivery.replay_silver(ledger.resume.silver_files) if ledger else None
        build(pipeline, source, plan.mode, isinstance(feed, PubSubFeed), sink, replay)
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
