"""Scheduled queries: ``sql/scheduled/*.sql`` as BigQuery Data Transfer configs.

Each file is one idempotent MERGE that rebuilds a table's partitions of the last three
event dates from the layer below, parameterised by ``@run_time`` (the schedule's time).

The SQL builds the layers the pipeline leaves out (``--bq-layers``; by default the
pipeline writes bronze only and the SQL builds silver and gold), and never writes a table
a pipeline writes: a pipeline streams its rows, and BigQuery refuses a MERGE (or any
UPDATE or DELETE) over rows still in a table's streaming buffer (the last ~30 minutes).
So its own rejects go to ``scheduled_dead_letters``, not to ``dead_letters``
(:func:`conflicts` checks every combination).
Dataset names are the only substitution (validated identifiers). ``schedule`` creates or
updates one transfer config holding every file as one script, silver first, so gold never
reads a silver its own cycle has not finished (separate queries on the same schedule race
each other); it removes the per-file configs of earlier versions. ``--dry-run`` prints the
config without any API call, and ``run`` executes the statements once now, in the same
order (on BigQuery or the emulator).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from beam_pipelines.bigquery.admin import api_error
from beam_pipelines.bigquery.warehouse import Warehouse
from beam_pipelines.errors import UserError
from beam_pipelines.sql_files import SQL_DIR, render_sql

SCHEDULE = "every 15 minutes"
#: Silver before gold when run in one go (scheduled, each catches up on its next run).
ORDER = ("server_metrics_silver", "server_metrics_silver_rejects")
#: The layer each query builds (the rest build gold).
LAYERS = {"server_metrics_silver": "silver", "server_metrics_silver_rejects": "silver"}
#: What the SQL can build (bronze is always the pipeline's).
BUILDABLE = ("silver", "gold")
_MERGE_TARGET = re.compile(r"^MERGE `\$\{(\w+)\}\.(\w+)`", re.MULTILINE)


def target_table(path: Path) -> str:
    """The table a scheduled file writes: its MERGE's target."""
    found = _MERGE_TARGET.search(path.read_text(encoding="utf-8"))
    if not found:
        raise ValueError(f"{path}: no MERGE `${{dataset}}.table` target")
    return found.group(2)


def query_files(builds: tuple[str, ...] | None = None) -> list[Path]:
    """The scheduled files, silver first; ``builds``: only those building these layers."""
    files = sorted((SQL_DIR / "scheduled").glob("*.sql"),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else len(ORDER),
                                  p.stem))
    if builds is not None:
        files = [f for f in files if LAYERS.get(f.stem, "gold") in builds]
    return files


def left_out(pipeline_layers: tuple[str, ...]) -> tuple[str, ...]:
    """The layers the SQL builds over a pipeline that writes ``pipeline_layers``."""
    return tuple(layer for layer in BUILDABLE if layer not in pipeline_layers)


def builds_for(pipeline_layers: str) -> tuple[str, ...]:
    """``--bq-layers`` (what the pipeline writes) → the layers the SQL builds: the rest."""
    from beam_pipelines.bigquery.warehouse import LAYERS, parse_layers

    try:
        layers = parse_layers(pipeline_layers)
    except UserError:
        layers = ()
    if "bronze" not in layers:
        raise UserError(f"--bq-layers {pipeline_layers!r}: the layers the pipeline writes, a "
                        f"comma-separated list of {', '.join(LAYERS)} with bronze")
    builds = left_out(layers)
    if not builds:
        raise UserError(f"--bq-layers {pipeline_layers}: the pipeline writes every layer, "
                        "so there is nothing for the scheduled queries to build (they "
                        "never rewrite a table a pipeline streams into); e.g. --bq-layers "
                        "bronze, and run the pipeline with the same")
    return builds


def silver_built_for() -> set[str]:
    """The pipelines whose silver the SQL can build (``<pipeline>_silver.sql``)."""
    return {p.stem.removesuffix("_silver") for p in query_files(("silver",))
            if p.stem.endswith("_silver")}


def conflicts(pipeline_layers: tuple[str, ...],
              builds: tuple[str, ...] | None = None) -> list[str]:
    """The tables a cycle building ``builds`` (by default what ``pipeline_layers`` leaves
    out) would write that the pipeline writes too: none, or BigQuery refuses the MERGE
    while the pipeline streams."""
    from beam_pipelines.bigquery.admin import WAREHOUSE_TABLES
    from beam_pipelines.bigquery.warehouse import pipeline_writes

    written = {s.name for s in WAREHOUSE_TABLES if pipeline_writes(s, pipeline_layers)}
    if builds is None:
        builds = left_out(pipeline_layers)
    return sorted({target_table(p) for p in query_files(builds)} & written)


@dataclass(frozen=True)
class ScheduledQuery:
    display_name: str
    schedule: str
    query: str

    def transfer_config(self, service_account: str | None = None) -> dict:
        """The Data Transfer API's TransferConfig, as JSON."""
        config = {"display_name": self.display_name, "data_source_id": "scheduled_query",
                  "schedule": self.schedule, "params": {"query": self.query}}
        if service_account:
            config["service_account_name"] = service_account
        return config


def cycle_script(warehouse: Warehouse, builds: tuple[str, ...] | None = None) -> str:
    """Every scheduled statement (building ``builds``), in order, as one BigQuery script."""
    ids = warehouse.identifiers()
    parts = []
    for path in query_files(builds):
        sql = render_sql(path.read_text(encoding="utf-8"), ids).strip().rstrip(";")
        parts.append(f"-- {path.stem} → {target_table(path)}\n{sql};")
    return "\n\n".join(parts) + "\n"


def scheduled_queries(warehouse: Warehouse, builds: tuple[str, ...] | None = None,
                      schedule: str = SCHEDULE) -> list[ScheduledQuery]:
    which = "medallion" if builds is None or len(builds) > 1 else builds[0]
    name = f"{warehouse.prefix}: {which} cycle"
    return [ScheduledQuery(name, schedule, cycle_script(warehouse, builds))]


def dry_run(warehouse: Warehouse, builds: tuple[str, ...] | None = None,
            schedule: str = SCHEDULE,
            service_account: str | None = None) -> str:
    """Exactly what ``schedule`` would create or update, as JSON (no API call)."""
    parent = f"projects/{warehouse.project}/locations/{warehouse.location.lower()}"
    return json.dumps({"parent": parent, "transfer_configs": [
        q.transfer_config(service_account)
        for q in scheduled_queries(warehouse, builds, schedule)]}, indent=2,
        ensure_ascii=False)


def schedule(warehouse: Warehouse, builds: tuple[str, ...] | None = None,
             schedule: str = SCHEDULE,
             service_account: str | None = None, client=None) -> list[str]:
    """Create each scheduled query, or update the one with the same display name."""
    from google.api_core import exceptions
    from google.cloud import bigquery_datatransfer
    from google.protobuf import field_mask_pb2, struct_pb2

    client = client or bigquery_datatransfer.DataTransferServiceClient()
    parent = f"projects/{warehouse.project}/locations/{warehouse.location.lower()}"
    done = []
    try:
        existing = {c.display_name: c for c in client.list_transfer_configs(parent=parent)}
        # Earlier versions scheduled one query per file: superseded by the cycle.
        for path in query_files():
            old = existing.pop(f"{warehouse.prefix}: {path.stem}", None)
            if old is not None:
                client.delete_transfer_config(name=old.name)
                done.append(f"removed scheduled query {old.display_name!r} (now in the cycle)")
        for q in scheduled_queries(warehouse, builds, schedule):
            params = struct_pb2.Struct()
            params.update({"query": q.query})
            config = bigquery_datatransfer.TransferConfig(
                display_name=q.display_name, data_source_id="scheduled_query",
                schedule=q.schedule, params=params)
            if q.display_name in existing:
                config.name = existing[q.display_name].name
                client.update_transfer_config(
                    transfer_config=config,
                    update_mask=field_mask_pb2.FieldMask(paths=["params", "schedule"]),
                    service_account_name=service_account or "")
                done.append(f"updated scheduled query {q.display_name!r} ({q.schedule})")
            else:
                client.create_transfer_config(
                    parent=parent, transfer_config=config,
                    service_account_name=service_account or "")
                done.append(f"created scheduled query {q.display_name!r} ({q.schedule})")
    except exceptions.GoogleAPICallError as exc:
        raise api_error(exc) from None
    return done


def run_now(warehouse: Warehouse, run_time: datetime, builds: tuple[str, ...] | None = None,
            client=None, identifiers: dict | None = None) -> list[str]:
    """Execute the scheduled queries once, as the scheduler would at ``run_time``.
    ``identifiers`` overrides dataset ids (tests read one warehouse and write another)."""
    from google.api_core import exceptions
    from google.cloud import bigquery

    from beam_pipelines.bigquery.emulator import client as make_client

    client = client or make_client(warehouse.project)
    ids = {**warehouse.identifiers(), **(identifiers or {})}
    params = [bigquery.ScalarQueryParameter("run_time", "TIMESTAMP", run_time)]
    done = []
    for path in query_files(builds):
        sql = render_sql(path.read_text(encoding="utf-8"), ids)
        try:
            job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params))
            job.result(timeout=600)
        except exceptions.GoogleAPICallError as exc:
            raise UserError(f"{path.name}: {api_error(exc)}") from None
        done.append(f"ran {path.stem} at {run_time.isoformat()}")
    return done
