"""The rules of ``configs/server_metrics.yaml`` as warehouse tables.

The scheduled queries of ``sql/scheduled/`` read thresholds, weights, alert rules and
locations from these tables (``python -m beam_pipelines.bigquery setup`` fills them from
the rules file), so the SQL and the Beam pipeline apply the same rules and no value is
ever pasted into SQL text.
"""
from __future__ import annotations

from schemas.core import Field, FieldType, RecordSchema

S, F, TS = FieldType.STRING, FieldType.FLOAT64, FieldType.TIMESTAMP

PIPELINE_SETTINGS = RecordSchema(
    name="pipeline_settings",
    layer="ops",
    description="One row: the high-utilisation thresholds and health-score weights.",
    fields=(
        Field("high_cpu_threshold", F, "cpu_usage above this is high utilisation", unit="%",
              required=True),
        Field("high_memory_threshold", F, "memory_usage above this is high utilisation",
              unit="%", required=True),
        Field("weight_cpu", F, "Health-score weight of avg_cpu_usage", required=True),
        Field("weight_memory", F, "Health-score weight of avg_memory_usage", required=True),
        Field("weight_high_utilization", F, "Health-score weight of high_utilization_pct",
              required=True),
    ),
)

ALERT_RULES = RecordSchema(
    name="alert_rules",
    layer="ops",
    description="The alert rules: a row per rule, exactly one of above or below, and a row "
                "per threshold of its own a server type or a server has (the most "
                "specific row applies).",
    fields=(
        Field("name", S, "Rule name", required=True),
        Field("metric", S, "Silver column the rule watches", required=True),
        Field("severity", S, "info | warning | critical", required=True,
              choices=("info", "warning", "critical")),
        Field("above", F, "Fires when the metric is above this"),
        Field("below", F, "Fires when the metric is below this"),
        Field("server_type", S, "This row's threshold is for servers of this type (null: "
                                "every type)"),
        Field("server_id", S, "This row's threshold is for this server (null: every "
                              "server)"),
    ),
)

LOCATIONS = RecordSchema(
    name="locations",
    layer="ops",
    description="Coordinates of each data-centre location, for maps.",
    fields=(
        Field("location", S, "Location name, e.g. us-east", required=True),
        Field("latitude", F, "Latitude", unit="°", required=True),
        Field("longitude", F, "Longitude", unit="°", required=True),
    ),
)

OPS_TABLES = (PIPELINE_SETTINGS, ALERT_RULES, LOCATIONS)

INJECTED_FAULTS = RecordSchema(
    name="injected_faults",
    layer="ops",
    description="The generator's ground truth: each fault injected into the records it "
                "wrote (python -m generators metrics --ground-truth, and the sample of "
                "python -m run), to score alerts against. Empty for real input.",
    fields=(
        Field("kind", S, "spike, cpu_saturation, memory_leak or overheating", required=True,
              choices=("spike", "cpu_saturation", "memory_leak", "overheating")),
        Field("server_id", S, "Server the fault was injected into", required=True),
        Field("start", TS, "When the fault began (a spike: the record's time)",
              required=True),
        Field("end", TS, "When it ended (a spike: the record's time)", required=True),
    ),
)
