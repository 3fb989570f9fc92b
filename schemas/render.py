"""Render every artefact derived from the declarations: ``python -m schemas.render``.

Writes ``docs/SCHEMAS.md`` (field tables, reason codes), ``sql/bigquery/<table>.json``
(BigQuery JSON schemas), ``sql/ddl/<table>.sql`` (BigQuery DDL) and
``sql/postgres/<table>.sql`` (PostgreSQL DDL of the hot tables). A test fails when the
committed files differ from what this would write, so they cannot drift.
"""
from __future__ import annotations

import sys
from pathlib import Path

from schemas.dead_letter import DEAD_LETTERS, REASONS, SCHEDULED_DEAD_LETTERS
from schemas.ops import INJECTED_FAULTS, OPS_TABLES
from schemas.server_metrics import (
    ANALYTICS_TABLES,
    GOLD_TABLES,
    INCIDENT_TABLES,
    SERVER_METRIC,
    SERVER_METRICS_BRONZE,
    SERVER_METRICS_SILVER,
)
from schemas.web_logs import WEB_GOLD_TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER

ROOT = Path(__file__).resolve().parent.parent
TABLES = ((SERVER_METRICS_BRONZE, SERVER_METRICS_SILVER) + GOLD_TABLES + ANALYTICS_TABLES
          + INCIDENT_TABLES + (WEB_LOGS_BRONZE, WEB_LOGS_SILVER) + WEB_GOLD_TABLES
          + (DEAD_LETTERS, SCHEDULED_DEAD_LETTERS) + OPS_TABLES + (INJECTED_FAULTS,))
#: The hot tables ``--postgres-dsn`` keeps up to date (upserted by key) for dashboards:
#: minute summaries, daily health, alerts and incidents, and the web traffic by status and
#: country. Each needs a key.
POSTGRES_TABLES = tuple(t for t in TABLES if t.name in (
    "server_metrics_minutely", "server_health_summary", "alerts", "alert_incidents",
    "web_traffic_by_status", "web_traffic_by_country"))
#: Dataset (``${...}`` in the SQL of sql/) of each layer; see beam_pipelines/bigquery.
DATASET_OF_LAYER = {"bronze": "bronze", "silver": "silver", "gold": "gold",
                    "dead_letter": "ops", "ops": "ops"}


def schemas_markdown() -> str:
    parts = [
        "# Schemas\n\n",
        "Generated from `schemas/` by `make schema-docs`; do not edit by hand.\n\n",
        "## Input record\n\n", SERVER_METRIC.markdown(), "\n## Tables\n\n",
    ]
    for table in TABLES:
        parts.append(table.markdown())
        layout = []
        if table.partition_field:
            layout.append(f"partitioned by `{table.partition_field}`")
        if table.clustering:
            layout.append("clustered by " + ", ".join(f"`{c}`" for c in table.clustering))
        if layout:
            parts.append(f"\nBigQuery: {'; '.join(layout)}.\n")
        parts.append("\n")
    parts.append("## Dead-letter reasons\n\n| reason | meaning |\n|---|---|\n")
    parts.extend(f"| `{code}` | {text} |\n" for code, text in REASONS.items())
    return "".join(parts)


def artefacts() -> dict[Path, str]:
    files = {ROOT / "docs" / "SCHEMAS.md": schemas_markdown()}
    for table in TABLES:
        files[ROOT / "sql" / "bigquery" / f"{table.name}.json"] = table.bigquery_schema_json()
        files[ROOT / "sql" / "ddl" / f"{table.name}.sql"] = (
            "-- Generated from schemas/ by `make schema-docs`; do not edit by hand.\n"
            + table.bigquery_ddl("${" + DATASET_OF_LAYER[table.layer] + "}"))
    for table in POSTGRES_TABLES:
        files[ROOT / "sql" / "postgres" / f"{table.name}.sql"] = (
            "-- Generated from schemas/ by `make schema-docs`; do not edit by hand.\n"
            "-- The PostgreSQL hot table of --postgres-dsn (schema: --postgres-schema).\n"
            + table.postgres_ddl())
    return files


def main() -> int:
    for path, text in artefacts().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
