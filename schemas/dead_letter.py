"""Dead letters: where every record that a layer cannot accept ends, with the reason.

A dead letter keeps the payload exactly as the failing step received it (the raw text for
bronze, the bronze row as JSON for silver, the silver row for gold) so that it can be
inspected, fixed and replayed into that step.
"""
from __future__ import annotations

import dataclasses

from schemas.core import Field, FieldType, RecordSchema

S, TS = FieldType.STRING, FieldType.TIMESTAMP

DEAD_LETTERS = RecordSchema(
    name="dead_letters",
    layer="dead_letter",
    description="Records a layer rejected, with the original payload, step, reason and time.",
    fields=(
        Field("pipeline", S, "Pipeline that rejected the record, e.g. server_metrics",
              required=True),
        Field("layer", S, "bronze | silver | gold | sink", required=True),
        Field("step", S, "Labelled step that rejected it", required=True),
        Field("reason", S, "Machine-readable reason code (see docs)", required=True),
        Field("message", S, "Human-readable explanation", required=True),
        Field("payload", S, "The record exactly as the step received it", required=True),
        Field("payload_encoding", S, "utf-8, or base64 for bytes that were not UTF-8",
              required=True, choices=("utf-8", "base64")),
        Field("source", S, "Where the record came from: file path or subscription"),
        Field("event_timestamp", TS, "Event time of the record, when it could be read"),
        Field("processing_timestamp", TS, "When the record was rejected", required=True),
    ),
    partition_field="processing_timestamp",
    clustering=("layer", "reason"),
)

#: The dead letters of the warehouse's scheduled SQL (the bronze rows its silver rejects).
#: A table of their own: the pipeline streams into ``dead_letters``, and BigQuery refuses a
#: MERGE over rows still in a streaming buffer, so the SQL never writes a table a pipeline
#: streams into. Partitioned by event date: each scheduled run replaces the dates it read.
SCHEDULED_DEAD_LETTERS = dataclasses.replace(
    DEAD_LETTERS, name="scheduled_dead_letters", layer="ops",
    description="Bronze rows the scheduled silver SQL rejected (BigQuery only), with the "
                "same fields as dead_letters.",
    partition_field="event_timestamp")
#: Tables only the warehouse's scheduled SQL writes (a lakehouse has them empty).
SQL_ONLY_TABLES = (SCHEDULED_DEAD_LETTERS,)

#: Every reason code a step may give, with what it means. Documentation and tests read this.
REASONS: dict[str, str] = {
    # bronze: is the payload a structurally valid record?
    "redelivered": "A streaming source delivered the same message (same delivery id) again.",
    "empty_payload": "The payload is empty or only white space.",
    "payload_too_large": "The payload exceeds the size limit for one record.",
    "undecodable_payload": "The payload bytes are not valid UTF-8.",
    "invalid_json": "The payload is not parseable JSON.",
    "not_an_object": "The JSON payload is not an object (an array, string, number or null).",
    "csv_column_mismatch": "A CSV row has a different number of columns than its header.",
    "missing_required_field": "A required field is absent, null or empty.",
    "wrong_type": "A field's value cannot be coerced to its declared type.",
    "non_finite_number": "A numeric field is NaN or infinite.",
    "invalid_timestamp": "The timestamp cannot be parsed.",
    "timestamp_out_of_range": "The timestamp is before 2000-01-01 or after 2100-01-01.",
    "nested_too_deep": "An unknown field nests arrays or objects deeper than its JSON text can "
                       "be kept (254 levels).",
    "future_event": "The event time is further ahead of the processing time than --max-future "
                    "allows (5 minutes by default).",
    "unreadable_input": "Part of an input file cannot be read (a Parquet row group whose pages "
                        "are corrupt): one dead letter per record it held.",
    "no_measurements": "The record carries no measurement at all.",
    "incomplete_join": "A record split over one Kafka topic per metric family (seed 002) "
                       "lacked some family's part when the join stopped waiting "
                       "(--kafka-join-wait); the parts that came are the payload.",
    "unmappable_record": "A regional record (seed 001's India, USA or Germany shape) has a "
                         "value its declared conversion cannot take.",
    "unclosed_quote": "A quoted field of an access-log line never closes: the line was cut, "
                      "or a quote inside a field was not escaped (Apache writes \\\").",
    "unparseable_log_line": "An access-log line has neither the Combined nor the Common Log "
                            "Format's shape.",
    "invalid_ip": "An access-log client is neither an IPv4 or IPv6 address nor a host name.",
    # silver: is the record plausible, and new?
    "out_of_range": "A measurement lies outside its declared valid range.",
    "unknown_category": "A categorical field has a value outside its vocabulary.",
    "duplicate_event": "Another record of the same server and event time was kept.",
    # streaming
    "late": "The record arrived after its event-time window closed (beyond the allowed "
            "lateness).",
    # sinks
    "bigquery_rejected": "BigQuery refused the row (its errors are in the message); the row "
                         "is the payload, to fix and insert again.",
    # any step
    "internal_error": "The step failed unexpectedly on this record (a bug: please report).",
}
