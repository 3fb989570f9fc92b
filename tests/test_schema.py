"""The single declaration and everything derived from it."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest

from schemas.core import Field, FieldType, RecordSchema
from schemas.render import TABLES, artefacts
from schemas.server_metrics import SERVER_METRIC, SERVER_METRICS_SILVER


def test_input_record_covers_what_the_reference_systems_measure():
    for name in ("server_id", "server_name", "server_type", "location", "timestamp",
                 "cpu_usage", "memory_usage", "disk_io", "network_in", "network_out",
                 "temperature_c", "power_watts"):
        assert name in SERVER_METRIC.names
    for f in SERVER_METRIC.fields:
        if f.type is FieldType.FLOAT64:
            assert f.unit, f"{f.name} needs a unit"
    assert SERVER_METRIC.field("cpu_usage").range_text() == "[0, 100]"
    assert [f.name for f in SERVER_METRIC.fields if f.required] == ["server_id", "timestamp"]


def test_arrow_schema_types_and_nullability():
    schema = SERVER_METRICS_SILVER.arrow_schema()
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("metric_date").type == pa.date32()
    assert schema.field("hour_of_day").type == pa.int64()
    assert not schema.field("server_id").nullable and schema.field("cpu_usage").nullable
    assert schema.field("cpu_usage").metadata[b"unit"] == b"%"


def test_bigquery_schema_and_ddl():
    bq = {f["name"]: f for f in SERVER_METRICS_SILVER.bigquery_schema()}
    assert bq["timestamp"] == {**bq["timestamp"], "type": "TIMESTAMP", "mode": "REQUIRED"}
    assert bq["cpu_usage"]["type"] == "FLOAT" and bq["cpu_usage"]["mode"] == "NULLABLE"
    assert bq["cpu_usage"]["description"].endswith("(%)")
    ddl = SERVER_METRICS_SILVER.bigquery_ddl("silver")
    assert "CREATE TABLE IF NOT EXISTS `silver.server_metrics_silver`" in ddl
    assert "PARTITION BY DATE(timestamp)" in ddl and "CLUSTER BY server_id, location" in ddl


def test_a_schema_rejects_duplicate_fields_and_unknown_layout_columns():
    f = Field("a", FieldType.STRING, "a")
    with pytest.raises(ValueError, match="duplicate"):
        RecordSchema("t", "t", (f, f), layer="x")
    with pytest.raises(ValueError, match="not a field"):
        RecordSchema("t", "t", (f,), layer="x", clustering=("b",))


def test_generated_docs_and_sql_are_in_sync_with_the_declarations():
    stale = [str(path) for path, text in artefacts().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"run `make schema-docs`: stale {stale}"


def test_every_table_has_a_bigquery_json_schema_file():
    for table in TABLES:
        path = next(p for p in artefacts() if p.name == f"{table.name}.json")
        assert [f["name"] for f in json.loads(path.read_text())] == list(table.names)
