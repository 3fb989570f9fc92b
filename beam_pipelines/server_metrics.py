"""The server-metrics pipeline: files (batch) or a live source (streaming) → medallion →
local lakehouse.

``build_pipeline`` wires the batch graph and ``build_streaming_pipeline`` the streaming
one, both on Arrow batches (``transforms.server_metrics``); both return every table's
PCollection (exposed for tests); ``run`` prepares the edges (inputs, sample, output
directory), runs, and writes the DuckDB catalog.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines import runs
from beam_pipelines.config import load_rules
from beam_pipelines.errors import UserError
from beam_pipelines.io import live_sources
from beam_pipelines.io.sinks import as_rows, write_tables
from beam_pipelines.io.sources import ReadServerMetricBatches, resolve_inputs
from beam_pipelines.options import ServerMetricsOptions
from beam_pipelines.runners import is_local_streaming
from schemas.dead_letter import DEAD_LETTERS
from schemas.ops import INJECTED_FAULTS
from schemas.server_metrics import (
    ALERT_NOTIFICATIONS,
    ANALYTICS_TABLES,
    GOLD_TABLES,
    INCIDENT_TABLES,
    SERVER_METRICS_BRONZE,
    SERVER_METRICS_SILVER,
)
from transforms.server_metrics.medallion import ServerMetricsBatchMedallion
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.streaming import BATCH_TABLES, ServerMetricsStreamingMedallion
from transforms.windowing import Streaming

log = logging.getLogger(__name__)

#: The name its dead letters carry (stamped at the sink) and its runs go by.
PIPELINE = "server_metrics"

TABLES = ((SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER) + GOLD_TABLES + ANALYTICS_TABLES
          + INCIDENT_TABLES + (DEAD_LETTERS, INJECTED_FAULTS))


def build_pipeline(p: beam.Pipeline, files: dict[str, list[str]], sink,
                   rules: ServerMetricsRules, clock=None,
                   alerts_topic: str | None = None,
                   max_future_s: float | None = None) -> dict[str, beam.PCollection]:
    """``sink``: a sink of :mod:`beam_pipelines.io.sinks`, or a lakehouse directory."""
    raw = p | "ReadServerMetrics" >> ReadServerMetricBatches(files)
    tables = raw | "ServerMetrics" >> ServerMetricsBatchMedallion(rules, clock=clock,
                                                                 max_future_s=max_future_s)
    write_tables(sink, tables, TABLES, pipeline=PIPELINE, batches=True)
    if alerts_topic:
        _publish_alerts(as_rows({ALERT_NOTIFICATIONS.name: tables[ALERT_NOTIFICATIONS.name]}),
                        alerts_topic)
    return tables


def build_streaming_pipeline(p: beam.Pipeline, source: beam.PTransform, sink,
                             rules: ServerMetricsRules, streaming: Streaming,
                             drop_redeliveries: bool,
                             alerts_topic: str | None = None,
                             max_future_s: float | None = None,
                             replay: beam.PTransform | None = None
                             ) -> dict[str, beam.PCollection]:
    """``source``: a live source emitting live raw batches (``batches=True``); ``replay``:
    a root of silver rows an earlier run wrote, fed to gold again."""
    raw = p | "ReadLive" >> source
    replayed = p | "ReplaySilver" >> replay if replay is not None else None
    runner = p.options.view_as(StandardOptions).runner or ""
    # One process: one redelivery key per minute; a runner spreading keys over workers:
    # a few, so no minute is one hot key.
    shards = 1 if is_local_streaming(runner) else 8
    tables = raw | "ServerMetrics" >> ServerMetricsStreamingMedallion(
        rules, streaming, drop_redeliveries=drop_redeliveries, redelivery_shards=shards,
        max_future_s=max_future_s, replayed_silver=replayed)
    write_tables(sink, tables, TABLES, pipeline=PIPELINE, mode=streaming,
                 batches=BATCH_TABLES)
    _publish_alerts(tables, alerts_topic)
    return tables


def _publish_alerts(tables, topic: str | None) -> None:
    """What a pager sends (incidents firing, escalated, resolved), not every signal."""
    if topic:
        from beam_pipelines.io.alerts import PublishAlerts

        tables[ALERT_NOTIFICATIONS.name] | "PublishAlerts" >> PublishAlerts(topic)


def _check_alerts_topic(options: PipelineOptions, opts: ServerMetricsOptions) -> None:
    """A wrong or missing topic is one line now, not a failed bundle later."""
    if not opts.alerts_topic:
        return
    from apache_beam.options.pipeline_options import TestOptions

    from beam_pipelines.ops import pubsub

    pubsub.check_topic(opts.alerts_topic)
    if options.view_as(TestOptions).dry_run:
        return
    pubsub.require_credentials()
    pubsub.check_topic_exists(opts.alerts_topic)


def _rules(opts: ServerMetricsOptions) -> ServerMetricsRules:
    """The rules file's rules, with the server inventory when one is given."""
    import dataclasses

    from beam_pipelines.config import load_inventory

    rules = load_rules(opts.config)
    inventory = load_inventory(opts.inventory)
    return dataclasses.replace(rules, inventory=inventory) if inventory else rules


def _generator_config(opts: ServerMetricsOptions, **kwargs):
    # The generators (Faker) are local-only: a Dataflow job never imports them.
    from generators.metrics import GeneratorConfig

    try:
        return GeneratorConfig(
            servers=opts.sample_servers, seed=opts.seed, malformed_rate=0.01,
            duplicate_rate=0.005, late_rate=0.005, incidents_per_server_day=12.0, **kwargs)
    except ValueError as exc:
        raise UserError(f"sample: {exc}") from None


def generate_sample(output_dir: str, opts: ServerMetricsOptions) -> str:
    """The embedded default input: a seeded fleet with a few faults of every kind."""
    from generators.metrics import MetricsGenerator
    from generators.writers import write_ground_truth, write_metrics

    path = os.path.join(output_dir, "_sample", "server_metrics.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    interval = opts.sample_interval or 10.0
    generator = MetricsGenerator(_generator_config(
        opts, interval_ms=round(interval * 1000), duration_s=opts.sample_duration))
    write_metrics(generator, path, "jsonl")
    write_ground_truth(generator.faults, os.path.join(output_dir, "_sample", GROUND_TRUTH))
    log.info("generated sample: %s", generator.stats.line())
    print(f"Generated sample: {generator.stats.line()}\n  → {path}")
    return path


#: The sample's ground truth, beside it; loaded into the lakehouse as ``injected_faults``.
GROUND_TRUTH = "injected_faults.jsonl"


def load_ground_truth(output_dir: str) -> int:
    """The sample's injected faults → the lakehouse table ``injected_faults``; their
    number."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipelines.io.lakehouse import table_dir
    from transforms.batches import from_rows

    source = os.path.join(output_dir, "_sample", GROUND_TRUTH)
    with open(source, encoding="utf-8") as fh:
        faults = [json.loads(line) for line in fh if line.strip()]
    for fault in faults:
        for edge in ("start", "end"):
            fault[edge] = datetime.fromisoformat(fault[edge].replace("Z", "+00:00"))
    table = (from_rows(faults, INJECTED_FAULTS) if faults
             else INJECTED_FAULTS.arrow_schema().empty_table())
    directory = table_dir(output_dir, INJECTED_FAULTS)
    os.makedirs(directory, exist_ok=True)
    pq.write_table(pa.Table.from_batches(table.to_batches(), INJECTED_FAULTS.arrow_schema()),
                   os.path.join(directory, "part-ground-truth.parquet"))
    return len(faults)


def run(options: PipelineOptions) -> dict:
    if options.view_as(StandardOptions).streaming:
        return run_streaming(options)
    opts = options.view_as(ServerMetricsOptions)
    rules = _rules(opts)
    _check_alerts_topic(options, opts)

    def inputs(match=True):
        if opts.input:
            return resolve_inputs([p for arg in opts.input for p in arg.split(",")],
                                  opts.input_format, match)
        return {"jsonl": [generate_sample(opts.output_dir, opts)]}

    from beam_pipelines import replay as replaying

    kept, files = replaying.into_place(
        options, opts, inputs, PIPELINE, _APPENDED_TABLES, SERVER_METRICS_BRONZE,
        SERVER_METRICS_SILVER, _appending(opts, rules), ReadServerMetricBatches)
    if kept:
        if not opts.input and opts.mode == "replace":
            from beam_pipelines.io.lakehouse import write_catalog

            load_ground_truth(opts.output_dir)
            kept = {**kept, "catalog": write_catalog(opts.output_dir, TABLES)}
        return {**kept, "tables": TABLES, "summary_args": _summary_args(rules)}
    outcome = runs.batch(options, opts, "server-metrics", TABLES,
                         inputs if files is None else lambda match=True: files,
                         lambda p, files, sink: build_pipeline(
                             p, files, sink, rules, alerts_topic=opts.alerts_topic,
                             max_future_s=opts.max_future),
                         pipeline_name=PIPELINE)
    if outcome["catalog"] and not opts.input:
        load_ground_truth(opts.output_dir)
    return {**outcome, "summary_args": _summary_args(rules)}


def _summary_args(rules) -> dict:
    return {"matrix_copies": rules.alert_matrix.window_s // rules.alert_matrix.period_s}


def run_streaming(options: PipelineOptions) -> dict:
    opts = options.view_as(ServerMetricsOptions)
    rules = _rules(opts)
    _check_alerts_topic(options, opts)

    def live_generator():
        from generators.metrics import MetricsGenerator

        interval = opts.sample_interval or 1.0
        config = _generator_config(opts, interval_ms=round(interval * 1000), duration_s=None,
                                   start=live_sources.live_start(interval))
        return MetricsGenerator, config, (f"a live generator ({config.servers} servers "
                                          f"every {interval:g}s, with faults)")

    def build(pipeline, source, streaming, drop_redeliveries, sink, replay=None):
        build_streaming_pipeline(pipeline, source, sink, rules, streaming, drop_redeliveries,
                                 alerts_topic=opts.alerts_topic, max_future_s=opts.max_future,
                                 replay=replay)

    outcome = runs.streaming(options, opts, "server-metrics", TABLES, live_generator, build,
                             peek="server_metrics_minutely", pipeline_name=PIPELINE,
                             batches=True)
    return {**outcome, "summary_args": _summary_args(rules)}



def replay(options: PipelineOptions, selection) -> dict:
    """``python -m run replay metrics``: the selected records through the batch medallion,
    appended to the lakehouse (see :mod:`beam_pipelines.replay`)."""
    from beam_pipelines import replay as replaying

    opts = options.view_as(ServerMetricsOptions)
    rules = _rules(opts)
    outcome = replaying.into_lakehouse(
        options, opts, selection, PIPELINE, _APPENDED_TABLES, SERVER_METRICS_BRONZE,
        SERVER_METRICS_SILVER, _appending(opts, rules))
    return {**outcome, "tables": TABLES, "summary_args": _summary_args(rules)}


#: What a replay or an appending run writes: every table but the sample's ground truth.
_APPENDED_TABLES = tuple(t for t in TABLES if t is not INJECTED_FAULTS)


def _appending(opts: ServerMetricsOptions, rules):
    """The medallion of a run that appends: ``(prior_silver, rechecked_bronze)`` → it."""
    return lambda prior, rechecked: ServerMetricsBatchMedallion(
        rules, max_future_s=opts.max_future, prior_silver=prior, rechecked_bronze=rechecked)
