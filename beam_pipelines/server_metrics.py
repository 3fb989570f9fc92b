"""The server-metrics pipeline: files (batch) or a live source (streaming) → medallion →
local lakehouse (or BigQuery, PostgreSQL), alerts to a topic.

:data:`LAUNCH` is what the launch path (:mod:`beam_pipelines.runs`) runs: its typed
:class:`MetricsSettings` (the rules with the inventory, the alerts topic), its sample and
live generator, and its two medallions on Arrow batches (``transforms.server_metrics``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import runs
from beam_pipelines.errors import UserError
from beam_pipelines.io import live_sources
from beam_pipelines.io.sinks import as_rows
from beam_pipelines.io.sources import resolve_inputs
from beam_pipelines.options import ServerMetricsOptions
from beam_pipelines.preflight import RunPlan
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

log = logging.getLogger(__name__)

#: The name its dead letters carry (stamped at the sink) and its runs go by.
PIPELINE = "server_metrics"

TABLES = ((SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER) + GOLD_TABLES + ANALYTICS_TABLES
          + INCIDENT_TABLES + (DEAD_LETTERS, INJECTED_FAULTS))


@dataclass(frozen=True)
class MetricsSettings:
    """The server-metrics options a graph needs, checked: the rules (with the server
    inventory) and the topic the alert notifications go to."""

    rules: ServerMetricsRules
    alerts_topic: str | None = None


class ServerMetricsLaunch(runs.Launch):
    pipeline = PIPELINE
    title = "server-metrics"
    label = "ServerMetrics"
    options_class = ServerMetricsOptions
    tables = TABLES
    #: What a replay or an appending run writes: every table but the sample's ground truth.
    appended_tables = tuple(t for t in TABLES if t is not INJECTED_FAULTS)
    peek = "server_metrics_minutely"
    streamed_batches = BATCH_TABLES

    def settings(self, options: PipelineOptions, opts: ServerMetricsOptions,
                 plan: RunPlan) -> MetricsSettings:
        _check_alerts_topic(opts.alerts_topic, plan.offline)
        return MetricsSettings(_rules(opts.config, opts.inventory), opts.alerts_topic)

    def inputs(self, opts: ServerMetricsOptions, match: bool = True) -> dict[str, list[str]]:
        if opts.input:
            return resolve_inputs([p for arg in opts.input for p in arg.split(",")],
                                  opts.input_format, match)
        return {"jsonl": [generate_sample(opts.output_dir, opts)]}

    def live_generator(self, opts: ServerMetricsOptions) -> tuple:
        from generators.metrics import MetricsGenerator

        interval = opts.sample_interval or 1.0
        config = _generator_config(opts, interval_ms=round(interval * 1000), duration_s=None,
                                   start=live_sources.live_start(interval))
        return MetricsGenerator, config, (f"a live generator ({config.servers} servers "
                                          f"every {interval:g}s, with faults)")

    def batch_medallion(self, plan: RunPlan, prior_silver=None, rechecked_bronze=None):
        return ServerMetricsBatchMedallion(plan.settings.rules, max_future_s=plan.max_future_s,
                                           prior_silver=prior_silver,
                                           rechecked_bronze=rechecked_bronze)

    def streaming_medallion(self, plan: RunPlan, drop_redeliveries: bool,
                            redelivery_shards: int, replayed_silver):
        return ServerMetricsStreamingMedallion(
            plan.settings.rules, plan.mode, drop_redeliveries=drop_redeliveries,
            redelivery_shards=redelivery_shards, max_future_s=plan.max_future_s,
            replayed_silver=replayed_silver)

    def publish(self, tables: dict, plan: RunPlan, batches) -> None:
        """What a pager sends (incidents firing, escalated, resolved), not every signal."""
        topic = plan.settings.alerts_topic
        if topic:
            from beam_pipelines.io.alerts import PublishAlerts

            notifications = {ALERT_NOTIFICATIONS.name: tables[ALERT_NOTIFICATIONS.name]}
            (as_rows(notifications, batches, prefix="Publish")[ALERT_NOTIFICATIONS.name]
             | "PublishAlerts" >> PublishAlerts(topic))

    def sample_written(self, output_dir: str) -> None:
        load_ground_truth(output_dir)

    def summary_args(self, plan: RunPlan) -> dict:
        matrix = plan.settings.rules.alert_matrix
        return {"matrix_copies": matrix.window_s // matrix.period_s}


LAUNCH = ServerMetricsLaunch()


def _check_alerts_topic(topic: str | None, offline: bool) -> None:
    """A wrong or missing topic is one line now, not a failed bundle later."""
    if not topic:
        return
    from beam_pipelines.ops import pubsub

    pubsub.check_topic(topic)
    if offline:
        return
    pubsub.require_credentials()
    pubsub.check_topic_exists(topic)


def _rules(config: str | None, inventory_path: str | None) -> ServerMetricsRules:
    """The rules file's rules, with the server inventory when one is given."""
    import dataclasses

    from beam_pipelines.config import load_inventory, load_rules

    rules = load_rules(config)
    inventory = load_inventory(inventory_path)
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
