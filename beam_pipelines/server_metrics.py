"""The server-metrics pipeline: files (batch) or a live source (streaming) → medallion →
local lakehouse.

``build_pipeline`` wires the graph and returns every table's PCollection (exposed for
tests); ``run`` prepares the edges (inputs, sample, output directory), runs, and writes
the DuckDB catalog.
"""
from __future__ import annotations

import logging
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines import live_sources, streaming_run
from beam_pipelines.config import load_rules
from beam_pipelines.errors import UserError
from beam_pipelines.lakehouse import WriteLakehouseTable, clear_tables, is_local, write_catalog
from beam_pipelines.options import ServerMetricsOptions
from beam_pipelines.sources import ReadServerMetricFiles, resolve_inputs
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.writers import write_metrics
from schemas.dead_letter import DEAD_LETTERS
from schemas.server_metrics import GOLD_TABLES, SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER
from transforms.medallion import ServerMetricsMedallion
from transforms.rules import ServerMetricsRules
from transforms.windowing import StreamingConfig

log = logging.getLogger(__name__)

TABLES = (SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER) + GOLD_TABLES + (DEAD_LETTERS,)
SCHEMA_BY_NAME = {t.name: t for t in TABLES}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def write_tables(tables: dict[str, beam.PCollection], output_dir: str,
                 streaming: bool = False) -> None:
    for name, rows in tables.items():
        rows | f"Write{_camel(name)}" >> WriteLakehouseTable(
            output_dir, SCHEMA_BY_NAME[name], streaming=streaming)


def build_pipeline(p: beam.Pipeline, files: dict[str, list[str]], output_dir: str,
                   rules: ServerMetricsRules, clock=None) -> dict[str, beam.PCollection]:
    raw = p | "ReadServerMetrics" >> ReadServerMetricFiles(files)
    tables = raw | "ServerMetrics" >> ServerMetricsMedallion(rules, clock=clock)
    write_tables(tables, output_dir)
    return tables


def build_streaming_pipeline(p: beam.Pipeline, source: beam.PTransform, output_dir: str,
                             rules: ServerMetricsRules, streaming: StreamingConfig,
                             drop_redeliveries: bool) -> dict[str, beam.PCollection]:
    raw = p | "ReadLive" >> source
    tables = raw | "ServerMetrics" >> ServerMetricsMedallion(
        rules, streaming=streaming, drop_redeliveries=drop_redeliveries)
    write_tables(tables, output_dir, streaming=True)
    return tables


def _generator_config(opts: ServerMetricsOptions, **kwargs) -> GeneratorConfig:
    try:
        return GeneratorConfig(
            servers=opts.sample_servers, seed=opts.seed, malformed_rate=0.01,
            duplicate_rate=0.005, late_rate=0.005, incidents_per_server_day=12.0, **kwargs)
    except ValueError as exc:
        raise UserError(f"sample: {exc}") from None


def generate_sample(output_dir: str, opts: ServerMetricsOptions) -> str:
    """The embedded default input: a seeded fleet with a few faults of every kind."""
    path = os.path.join(output_dir, "_sample", "server_metrics.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    interval = opts.sample_interval or 10.0
    generator = MetricsGenerator(_generator_config(
        opts, interval_ms=round(interval * 1000), duration_s=opts.sample_duration))
    write_metrics(generator, path, "jsonl")
    log.info("generated sample: %s", generator.stats.line())
    print(f"Generated sample: {generator.stats.line()}\n  → {path}")
    return path


def choose_runner(options: PipelineOptions, streaming: bool = False) -> str:
    """Name the local runner explicitly: the DirectRunner would first try to download the
    Prism runner, which fails offline, before falling back."""
    std = options.view_as(StandardOptions)
    requested = std.runner
    if requested is None or requested.lower() in ("directrunner", "direct"):
        std.runner = "BundleBasedDirectRunner" if streaming else "FnApiRunner"
    elif "." not in requested and requested.lower().removesuffix("runner") not in {
            n.lower().removesuffix("runner") for n in StandardOptions.KNOWN_RUNNER_NAMES}:
        raise UserError(f"unknown runner {requested!r} (one of "
                        f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)})")
    return std.runner


def _prepare_output_dir(output_dir: str) -> None:
    if is_local(output_dir):
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--output-dir {output_dir}: {exc.strerror}") from None
        if not os.access(output_dir, os.W_OK):
            raise UserError(f"--output-dir {output_dir} is not writable")


def run(options: PipelineOptions) -> dict:
    if options.view_as(StandardOptions).streaming:
        return run_streaming(options)
    opts = options.view_as(ServerMetricsOptions)
    rules = load_rules(opts.config)
    output_dir = opts.output_dir
    _prepare_output_dir(output_dir)
    for flag in ("subscription", "duration"):
        if getattr(opts, flag) is not None:
            raise UserError(f"--{flag} needs --streaming")
    if opts.input:
        patterns = [p for arg in opts.input for p in arg.split(",")]
        files = resolve_inputs(patterns, opts.input_format)
    else:
        files = {"jsonl": [generate_sample(output_dir, opts)]}
    runner = choose_runner(options)
    if is_local(output_dir):
        clear_tables(output_dir, TABLES)
    print(f"Running the server-metrics medallion on {runner} over "
          f"{sum(len(v) for v in files.values())} file(s)…", flush=True)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, files, output_dir, rules)
    pipeline.run().wait_until_finish()
    catalog = write_catalog(output_dir, TABLES) if is_local(output_dir) else None
    return {"output_dir": output_dir, "catalog": catalog, "tables": TABLES}


def run_streaming(options: PipelineOptions) -> dict:
    opts = options.view_as(ServerMetricsOptions)
    rules = load_rules(opts.config)

    def live_generator():
        interval = opts.sample_interval or 1.0
        config = _generator_config(opts, interval_ms=round(interval * 1000), duration_s=None,
                                   start=live_sources.live_start(interval))
        return config, (f"a live generator ({config.servers} servers every {interval:g}s, "
                        "with faults)")

    def build(pipeline, source, streaming, drop_redeliveries):
        build_streaming_pipeline(pipeline, source, opts.output_dir, rules, streaming,
                                 drop_redeliveries)

    return streaming_run.run(options, opts, "server-metrics", TABLES, live_generator, build,
                             peek="server_metrics_minutely")
