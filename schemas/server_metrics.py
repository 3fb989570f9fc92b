"""Server telemetry: the canonical record and every table derived from it.

Units are declared here once. The reference systems gave no unit for disk and network
figures; ours are: ``disk_io`` in I/O operations per second, ``network_*`` in kilobytes
per second.
"""
from __future__ import annotations

from schemas.core import Field, FieldType, RecordSchema

S, INT, F, B, TS, D = (FieldType.STRING, FieldType.INT64, FieldType.FLOAT64, FieldType.BOOL,
                       FieldType.TIMESTAMP, FieldType.DATE)

SERVER_TYPES = ("web", "database", "application", "cache", "file")

IDENTITY_FIELDS = (
    Field("server_id", S, "Stable identifier of the server", required=True),
    Field("server_name", S, "Human-readable server name, e.g. web-server-003"),
    Field("server_type", S, "Role of the server", choices=SERVER_TYPES),
    Field("location", S, "Data-centre region, e.g. us-east"),
)

MEASUREMENT_FIELDS = (
    Field("cpu_usage", F, "CPU utilisation", unit="%", minimum=0, maximum=100),
    Field("memory_usage", F, "Memory utilisation", unit="%", minimum=0, maximum=100),
    # Maxima far above any hardware (10M IOPS, 1 TB/s), so that no value a sensor can send
    # is refused, and no sum of a day's values can overflow to infinity in gold.
    Field("disk_io", F, "Disk I/O rate", unit="IOPS", minimum=0, maximum=10_000_000),
    Field("network_in", F, "Inbound network throughput", unit="kB/s", minimum=0,
          maximum=1_000_000_000),
    Field("network_out", F, "Outbound network throughput", unit="kB/s", minimum=0,
          maximum=1_000_000_000),
    Field("temperature_c", F, "CPU package temperature", unit="°C", minimum=-40, maximum=150),
    Field("power_watts", F, "Power draw at the PSU", unit="W", minimum=0, maximum=5000),
    Field("voltage_v", F, "Supply voltage (seed 001's USA sensors)", unit="V", minimum=0,
          maximum=1000),
    # Seed 003's real hosts (psutil): what a VM or bare-metal agent reports.
    Field("load_1m", F, "Load average over 1 minute", unit="processes", minimum=0,
          maximum=1_000_000),
    Field("load_5m", F, "Load average over 5 minutes", unit="processes", minimum=0,
          maximum=1_000_000),
    Field("load_15m", F, "Load average over 15 minutes", unit="processes", minimum=0,
          maximum=1_000_000),
    Field("disk_used_gb", F, "Disk space used on the root file system", unit="GB", minimum=0,
          maximum=1_000_000_000),
    Field("disk_used_pct", F, "Disk space used on the root file system", unit="%",
          minimum=0, maximum=100),
)

#: Seed 001's regional sources (schemas/regional.py); null for the canonical producers.
REGION_FIELD = Field("region", S, "Regional source the record was mapped from (india, usa, "
                     "germany); null when the producer sent the canonical record")

#: Seed 003's host agent: what the host runs on; null for the other producers.
HOST_FIELDS = (
    Field("os", S, "Operating system the host runs, e.g. Linux"),
    Field("arch", S, "Processor architecture, e.g. x86_64"),
)

#: The record a producer sends. Bronze validates incoming payloads against this.
SERVER_METRIC = RecordSchema(
    name="server_metric",
    layer="input",
    description="One measurement of one server at one instant, as producers send it.",
    fields=IDENTITY_FIELDS[:4]
    + (Field("timestamp", TS, "Event time of the measurement (UTC)", required=True),)
    + MEASUREMENT_FIELDS + (REGION_FIELD,) + HOST_FIELDS,
)

MEASUREMENTS = tuple(f.name for f in MEASUREMENT_FIELDS)

INGEST_FIELDS = (
    Field("ingest_timestamp", TS, "When bronze accepted the record (processing time, UTC)",
          required=True),
    Field("source", S, "Where the record came from: file path or subscription"),
)

SERVER_METRICS_BRONZE = RecordSchema(
    name="server_metrics_bronze",
    layer="bronze",
    description="Structurally valid server metrics with typed fields and ingest metadata. "
                "Values are as sent: not yet range-checked or deduplicated.",
    fields=SERVER_METRIC.fields
    + INGEST_FIELDS
    + (Field("extra_fields", S, "Fields the schema does not know, as a JSON object"),),
    partition_field="timestamp",
    clustering=("server_id",),
)

SERVER_METRICS_SILVER = RecordSchema(
    name="server_metrics_silver",
    layer="silver",
    description="Range-checked, canonicalised, deduplicated server metrics with derived columns.",
    fields=SERVER_METRIC.fields
    + INGEST_FIELDS
    + (
        Field("is_high_utilization", B, "cpu_usage or memory_usage above the "
              "high-utilisation threshold (default 90 %)", required=True),
        Field("metric_date", D, "UTC date of the event", required=True),
        Field("hour_of_day", INT, "UTC hour of the event", minimum=0, maximum=23, required=True),
        Field("processing_delay_ms", INT, "ingest_timestamp − timestamp", unit="ms", required=True),
    ),
    partition_field="timestamp",
    clustering=("server_id", "location"),
)


def _stats(metric: str, unit: str, label: str) -> tuple[Field, ...]:
    return (
        Field(f"min_{metric}", F, f"Minimum {label}", unit=unit),
        Field(f"avg_{metric}", F, f"Mean {label}", unit=unit),
        Field(f"max_{metric}", F, f"Maximum (peak) {label}", unit=unit),
        Field(f"p50_{metric}", F, f"Median {label}", unit=unit),
        Field(f"p95_{metric}", F, f"95th percentile {label}", unit=unit),
        Field(f"p99_{metric}", F, f"99th percentile {label}", unit=unit),
        Field(f"stddev_{metric}", F, f"Sample standard deviation of {label}", unit=unit),
    )


WINDOW_FIELDS = (
    Field("window_start", TS, "Start of the event-time window (inclusive)", required=True),
    Field("window_end", TS, "End of the event-time window (exclusive)", required=True),
    Field("metric_date", D, "UTC date of the window", required=True),
    Field("pane_index", INT, "How many times this window fired before (0 in batch); the "
          "row with the highest index for a key is the current answer", required=True),
    Field("pane_timing", S, "EARLY (watermark not yet past the window), ON_TIME or LATE "
          "(late data within the allowed lateness)", required=True,
          choices=("EARLY", "ON_TIME", "LATE")),
)

SERVER_KEY = ("server_id", "server_name", "server_type", "location", "window_start")

SERVER_DIMENSIONS = IDENTITY_FIELDS

COUNT_FIELD = Field("record_count", INT, "Silver records aggregated in this row", required=True)

TOTALS = (
    Field("avg_disk_io", F, "Mean disk I/O rate", unit="IOPS"),
    Field("total_network_in", F, "Sum of inbound throughput samples", unit="kB/s·samples"),
    Field("total_network_out", F, "Sum of outbound throughput samples", unit="kB/s·samples"),
    Field("avg_temperature_c", F, "Mean temperature", unit="°C"),
    Field("max_temperature_c", F, "Maximum temperature", unit="°C"),
    Field("avg_power_watts", F, "Mean power draw", unit="W"),
    Field("high_utilization_count", INT, "Records with is_high_utilization", required=True),
    Field("high_utilization_pct", F, "100 × high_utilization_count / record_count", unit="%"),
)

CPU_MEMORY_STATS = _stats("cpu_usage", "%", "CPU utilisation") + _stats(
    "memory_usage", "%", "memory utilisation")

SERVER_METRICS_MINUTELY = RecordSchema(
    name="server_metrics_minutely",
    layer="gold",
    description="Per server and minute: the chart-resolution view of the fleet.",
    fields=WINDOW_FIELDS + SERVER_DIMENSIONS + (COUNT_FIELD,)
    + tuple(f for f in CPU_MEMORY_STATS if f.name.split("_")[0] in ("min", "avg", "max"))
    + TOTALS,
    partition_field="window_start",
    clustering=("server_id",),
    key=SERVER_KEY,
)

HOURLY_SERVER_METRICS = RecordSchema(
    name="hourly_server_metrics",
    layer="gold",
    description="Per server, date and hour of day (event time).",
    fields=WINDOW_FIELDS
    + (Field("hour_of_day", INT, "UTC hour of the window", required=True, minimum=0, maximum=23),)
    + SERVER_DIMENSIONS + (COUNT_FIELD,) + CPU_MEMORY_STATS + TOTALS,
    partition_field="metric_date",
    clustering=("server_id", "location"),
    key=SERVER_KEY,
)

SERVER_HEALTH_SUMMARY = RecordSchema(
    name="server_health_summary",
    layer="gold",
    description="Per server and day: utilisation and the health score "
                "100 − (avg_cpu·w_cpu + avg_memory·w_mem + high_util_pct·w_high), clamped to "
                "[0, 100] (default weights 0.4, 0.4, 0.2).",
    fields=WINDOW_FIELDS + SERVER_DIMENSIONS + (COUNT_FIELD,) + CPU_MEMORY_STATS + TOTALS
    + (Field("server_health_score", F, "Health score, 100 is idle and healthy", unit="points",
             minimum=0, maximum=100),),
    partition_field="metric_date",
    clustering=("server_id", "location"),
    key=SERVER_KEY,
)

LOCATION_PERFORMANCE = RecordSchema(
    name="location_performance",
    layer="gold",
    description="Per location, server type and day.",
    fields=WINDOW_FIELDS
    + (
        Field("location", S, "Data-centre region"),
        Field("server_type", S, "Role of the servers"),
        Field("latitude", F, "Latitude of the region (for maps)", unit="°"),
        Field("longitude", F, "Longitude of the region (for maps)", unit="°"),
        Field("server_count", INT, "Distinct servers reporting", required=True),
        COUNT_FIELD,
    )
    + CPU_MEMORY_STATS + TOTALS,
    partition_field="metric_date",
    clustering=("location", "server_type"),
    key=("location", "server_type", "window_start"),
)

ALERTS = RecordSchema(
    name="alerts",
    layer="gold",
    description="One row per server, window and rule that fired.",
    fields=WINDOW_FIELDS + SERVER_DIMENSIONS
    + (
        Field("rule", S, "Name of the rule that fired", required=True),
        Field("severity", S, "info | warning | critical", required=True,
              choices=("info", "warning", "critical")),
        Field("metric", S, "Metric the rule watches"),
        Field("threshold", F, "Threshold of the rule"),
        Field("observed_value", F, "Most extreme value seen in the window"),
        Field("breach_count", INT, "Records in the window that breached the rule", required=True),
        Field("message", S, "Human-readable description", required=True),
    ),
    partition_field="metric_date",
    clustering=("server_id", "rule"),
    key=SERVER_KEY + ("rule",),
)

GOLD_TABLES = (SERVER_METRICS_MINUTELY, HOURLY_SERVER_METRICS, SERVER_HEALTH_SUMMARY,
               LOCATION_PERFORMANCE, ALERTS)

MATRIX_LABELS = {
    "cpu_memory_alert": ("High CPU + Memory stress", "CPU spike suspected",
                         "Memory saturation suspected"),
    "network_disk_alert": ("Network flood + Disk thrash suspected", "Possible DDoS",
                           "Disk thrash suspected"),
}

SERVER_ALERT_MATRIX = RecordSchema(
    name="server_alert_matrix",
    layer="gold",
    description="Seed 002's alert matrix: per server, sliding event-time windows (default "
                "30 s every 10 s) with average CPU and memory, maximum network_in and "
                "disk_io, and a label per pair of thresholds (null when neither is "
                "exceeded). Every silver record is in window/period windows.",
    fields=WINDOW_FIELDS + SERVER_DIMENSIONS
    + (
        Field("record_count", INT, "Silver records in this window", required=True),
        Field("avg_cpu_usage", F, "Mean CPU utilisation", unit="%"),
        Field("avg_memory_usage", F, "Mean memory utilisation", unit="%"),
        Field("max_network_in", F, "Maximum inbound throughput", unit="kB/s"),
        Field("max_disk_io", F, "Maximum disk I/O rate", unit="IOPS"),
        Field("cpu_memory_alert", S, "Label of the CPU/memory pair, null when neither "
              "average is above its threshold", choices=MATRIX_LABELS["cpu_memory_alert"]),
        Field("network_disk_alert", S, "Label of the network/disk pair, null when neither "
              "maximum is above its threshold", choices=MATRIX_LABELS["network_disk_alert"]),
    ),
    partition_field="metric_date",
    clustering=("server_id",),
    key=SERVER_KEY,
)

ANOMALIES = RecordSchema(
    name="anomalies",
    layer="gold",
    description="Seed 003's EWMA + 3σ anomalies, per server and metric, scored in "
                "event-time order against the state before each value.",
    fields=(
        Field("timestamp", TS, "Event time of the anomalous measurement (UTC)", required=True),
        Field("metric_date", D, "UTC date of the event", required=True),
    ) + SERVER_DIMENSIONS + (
        Field("metric", S, "Metric scored", required=True),
        Field("value", F, "The measurement", required=True),
        Field("expected", F, "EWMA of the metric before this value", required=True),
        Field("std", F, "Standard deviation the value was scored against", required=True),
        Field("score", F, "|value − expected| / std", required=True, minimum=0),
        Field("rule", S, "ewma_3sigma", required=True),
        Field("severity", S, "info | warning | critical", required=True,
              choices=("info", "warning", "critical")),
    ),
    partition_field="metric_date",
    clustering=("server_id", "metric"),
    # No key: the detector emits each anomaly once, with no panes to choose between.
)

ALERT_SIGNALS = RecordSchema(
    name="alert_signals",
    layer="gold",
    description="Every alert of every rule in one feed (threshold rules, the alert matrix, "
                "the EWMA detector): the table chat and paging integrations read.",
    fields=WINDOW_FIELDS + SERVER_DIMENSIONS
    + (
        Field("family", S, "Which detector raised it", required=True,
              choices=("threshold", "matrix", "ewma")),
        Field("rule", S, "Rule within the family", required=True),
        Field("severity", S, "info | warning | critical", required=True,
              choices=("info", "warning", "critical")),
        Field("metric", S, "Metric(s) the rule watches"),
        Field("observed_value", F, "The value that fired (extreme, average or measurement)"),
        Field("message", S, "Human-readable description", required=True),
    ),
    partition_field="metric_date",
    clustering=("server_id", "family"),
    key=SERVER_KEY + ("family", "rule"),
)

#: Gold tables of the reference analytics (alert matrix, EWMA detector, the alert feed):
#: built by the pipeline only (a sliding window and a sequential detector are not
#: scheduled SQL).
ALERT_INCIDENTS = RecordSchema(
    name="alert_incidents",
    layer="gold",
    description="Incidents: per server (and the rules' group_by), the alert signals "
                "(alert_signals) that kept coming; those that fired paged, those that lapsed "
                "while pending did not (fired_at null; see the rules' incidents section). "
                "One row per incident, its latest state.",
    fields=(
        Field("incident_id", S, "server_id[/group labels]/started_at: the incident's key in "
              "notifications", required=True),
        Field("started_at", TS, "Start of its first signal's window", required=True),
        Field("fired_at", TS, "When it fired (the end of the signal that made it fire); "
              "null for one that lapsed while pending, which never paged"),
        Field("resolved_at", TS, "keep_firing_for after its last signal's end; null while "
              "open"),
        Field("metric_date", D, "UTC date of started_at", required=True),
        Field("pane_index", INT, "How many times this incident's row was written before "
              "(streaming updates it when it fires, escalates and resolves; 0 in batch)",
              required=True),
    ) + SERVER_DIMENSIONS + (
        Field("severity", S, "The highest severity of its signals", required=True,
              choices=("info", "warning", "critical")),
        Field("families", S, "Families of its signals, comma-separated (threshold, matrix, "
              "ewma)", required=True),
        Field("rules", S, "Rules of its signals, comma-separated", required=True),
        Field("signal_count", INT, "Signals grouped in it", required=True),
        Field("last_signal_at", TS, "End of its last signal's window (or, under a rule's "
              "hysteresis, of the last minute that held it)", required=True),
        Field("peaks", S, "The highest value its signals observed, per metric: "
              "'cpu_usage 99.2, temperature_c 93.1' (a matrix signal's metric is its pair)"),
    ),
    partition_field="metric_date",
    clustering=("server_id",),
    key=("incident_id",),
)

ALERT_NOTIFICATIONS = RecordSchema(
    name="alert_notifications",
    layer="gold",
    description="What a pager sends: each incident's state changes (firing, escalated, "
                "resolved), each once.",
    fields=(
        Field("incident_id", S, "The incident (alert_incidents.incident_id)", required=True),
        Field("state", S, "firing, escalated, repeated (still firing after the rules' "
              "repeat_interval) or resolved", required=True,
              choices=("firing", "escalated", "repeated", "resolved")),
        Field("changed_at", TS, "Event time of the change", required=True),
        Field("metric_date", D, "UTC date of changed_at", required=True),
    ) + SERVER_DIMENSIONS + (
        Field("severity", S, "The incident's severity after the change", required=True,
              choices=("info", "warning", "critical")),
        Field("message", S, "Human-readable notification", required=True),
    ),
    partition_field="metric_date",
    clustering=("server_id",),
)

ANALYTICS_TABLES = (SERVER_ALERT_MATRIX, ANOMALIES, ALERT_SIGNALS)
#: What the alert signals become for a pager (``transforms.server_metrics.incidents``).
INCIDENT_TABLES = (ALERT_INCIDENTS, ALERT_NOTIFICATIONS)
