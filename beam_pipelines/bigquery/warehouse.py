"""Names in the warehouse: one dataset per layer, one table per schema, all validated.

A warehouse is a project and a dataset prefix: ``telemetry`` gives ``telemetry_bronze``,
``telemetry_silver``, ``telemetry_gold``, ``telemetry_ops`` (dead letters and the rules the
scheduled queries read) and ``telemetry_reporting`` (views for Looker Studio). Names are
checked against BigQuery's rules before anything is sent, so a typo is one clear line
rather than an API error half-way through a job. Identifiers are the only thing ever
substituted into SQL text (values travel as query parameters).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from beam_pipelines.errors import UserError
from schemas.core import RecordSchema
from schemas.render import DATASET_OF_LAYER  # the generated DDL files use the same map

#: The medallion's layers, each a dataset the pipeline may write (``--bq-layers``).
LAYERS = ("bronze", "silver", "gold")
DATASETS = LAYERS + ("ops", "reporting")


def parse_layers(text: str) -> tuple[str, ...]:
    """``--bq-layers`` → the layers, in the medallion's order (one line otherwise)."""
    asked = {part.strip() for part in (text or "").split(",") if part.strip()}
    if not asked or asked - set(LAYERS):
        raise UserError(f"--bq-layers {text!r}: a comma-separated list of {', '.join(LAYERS)}")
    return tuple(layer for layer in LAYERS if layer in asked)


def pipeline_writes(schema: RecordSchema, layers: tuple[str, ...]) -> bool:
    """A pipeline writing ``layers`` writes this table (dead letters always)."""
    return schema.name == "dead_letters" or schema.layer in layers

# https://cloud.google.com/bigquery/docs/datasets#dataset-naming and
# https://cloud.google.com/resource-manager/docs/creating-managing-projects (project ids)
_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_LOCATION = re.compile(r"^[A-Za-z0-9-]{2,40}$")


def check_project(project: str | None, flag: str = "--bq-project") -> str:
    if not project:
        raise UserError(f"{flag} is required (or --project)")
    if not _PROJECT.fullmatch(project):
        raise UserError(f"{flag} {project!r} is not a Google Cloud project id (6–30 "
                        "lowercase letters, digits and hyphens, starting with a letter)")
    return project


def check_dataset(name: str, what: str = "dataset") -> str:
    if not _DATASET.fullmatch(name or ""):
        raise UserError(f"{what} {name!r} is not a BigQuery dataset name (letters, digits "
                        "and underscores, at most 1,024)")
    return name


def check_table(name: str) -> str:
    if not _TABLE.fullmatch(name or ""):
        raise UserError(f"table {name!r} is not a BigQuery table name (letters, digits and "
                        "underscores)")
    return name


@dataclass(frozen=True)
class Warehouse:
    project: str
    prefix: str = "telemetry"
    location: str = "US"

    def __post_init__(self):
        check_project(self.project)
        # The longest dataset name this prefix makes must be valid too.
        check_dataset(self.prefix, "--bq-dataset-prefix")
        check_dataset(f"{self.prefix}_reporting", "--bq-dataset-prefix")
        if not _LOCATION.fullmatch(self.location or ""):
            raise UserError(f"--bq-location {self.location!r} is not a BigQuery location "
                            "(e.g. US, EU, europe-west1)")

    def dataset(self, suffix: str) -> str:
        if suffix not in DATASETS:
            raise ValueError(f"unknown dataset {suffix!r}")
        return f"{self.prefix}_{suffix}"

    def dataset_of(self, schema: RecordSchema) -> str:
        return self.dataset(DATASET_OF_LAYER[schema.layer])

    def table_id(self, schema: RecordSchema) -> str:
        """``project.dataset.table`` (the google-cloud-bigquery spelling)."""
        return f"{self.project}.{self.dataset_of(schema)}.{check_table(schema.name)}"

    def table_id_of(self, name: str) -> str:
        """``project.dataset.table`` of a warehouse table by name."""
        from schemas.render import TABLES

        by_name = {s.name: s for s in TABLES}
        if name not in by_name:
            raise UserError(f"unknown table {name!r}")
        return self.table_id(by_name[name])

    def table_spec(self, schema: RecordSchema) -> str:
        """``project:dataset.table`` (Beam's spelling)."""
        return f"{self.project}:{self.dataset_of(schema)}.{check_table(schema.name)}"

    def identifiers(self) -> dict[str, str]:
        """What ``${...}`` means in the SQL of ``sql/``: fully qualified dataset ids."""
        return {"project": self.project,
                **{name: f"{self.project}.{self.dataset(name)}" for name in DATASETS}}


def table_layout(schema: RecordSchema) -> dict:
    """Partitioning and clustering of a table, in the REST API's shape (Beam's
    ``additional_bq_parameters``, the client's ``Table``)."""
    layout: dict = {}
    if schema.partition_field:
        layout["timePartitioning"] = {"type": "DAY", "field": schema.partition_field}
    if schema.clustering:
        layout["clustering"] = {"fields": list(schema.clustering)}
    return layout
