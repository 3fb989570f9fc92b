"""Bronze: decoding, coercion and the reason of every kind of bad input."""
from __future__ import annotations

from datetime import datetime, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from schemas.dead_letter import DEAD_LETTERS, REASONS
from schemas.server_metrics import SERVER_METRICS_BRONZE
from tests.conftest import DROP, NOW, fixed_clock, line, metric, test_pipeline
from transforms.bronze import RawRecord, parse_timestamp
from transforms.dead_letters import DEAD_LETTER, RecordRejected
from transforms.server_metrics.row_bronze import (
    ParseServerMetricFn,
    ValidateServerMetrics,
    to_bronze,
)

CSV_HEADER = ("server_id", "timestamp", "cpu_usage", "memory_usage")


def run_fn(raw):
    fn = ParseServerMetricFn(clock=fixed_clock)
    fn.setup()
    return list(fn.process(raw))


def test_valid_json_becomes_a_typed_bronze_row_stamped_with_event_time():
    [out] = run_fn(RawRecord(line().encode(), "file.jsonl"))
    record = out.value
    assert set(record) == set(SERVER_METRICS_BRONZE.names)
    assert record["timestamp"] == datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
    assert record["cpu_usage"] == 50.0 and isinstance(record["cpu_usage"], float)
    assert record["ingest_timestamp"] == NOW
    assert record["source"] == "file.jsonl"
    assert record["extra_fields"] is None
    assert out.timestamp.micros == int(record["timestamp"].timestamp()) * 1_000_000


def test_unknown_fields_are_kept_as_json_not_dropped():
    record = to_bronze(RawRecord(line(rack="r12", firmware=3)), NOW)
    assert record["extra_fields"] == '{"rack":"r12","firmware":3}'


def test_numeric_strings_and_integers_are_coerced():
    record = to_bronze(RawRecord(line(cpu_usage="42.5", memory_usage=7)), NOW)
    assert record["cpu_usage"] == 42.5 and record["memory_usage"] == 7.0


def test_missing_optional_measurements_are_null_not_zero():
    record = to_bronze(RawRecord(line(temperature_c=DROP, power_watts=None)), NOW)
    assert record["temperature_c"] is None and record["power_watts"] is None


@pytest.mark.parametrize("value, expected", [
    ("2026-01-05T10:00:00Z", datetime(2026, 1, 5, 10, tzinfo=timezone.utc)),
    ("2026-01-05T12:00:00+02:00", datetime(2026, 1, 5, 10, tzinfo=timezone.utc)),
    ("2026-01-05 10:00:00", datetime(2026, 1, 5, 10, tzinfo=timezone.utc)),  # naive = UTC
    ("2026-01-05T10:00:00.015Z", datetime(2026, 1, 5, 10, 0, 0, 15000, tzinfo=timezone.utc)),
    (1767607200, datetime(2026, 1, 5, 10, tzinfo=timezone.utc)),  # epoch seconds
    (1767607200123, datetime(2026, 1, 5, 10, 0, 0, 123000, tzinfo=timezone.utc)),  # millis
    ("1767607200", datetime(2026, 1, 5, 10, tzinfo=timezone.utc)),  # epoch in a CSV cell
])
def test_timestamp_conventions(value, expected):
    assert parse_timestamp("timestamp", value) == expected


def test_csv_line_with_its_header():
    raw = RawRecord(b"srv-9,2026-01-05T10:00:00Z,12.5,", "f.csv:2", CSV_HEADER)
    record = to_bronze(raw, NOW)
    assert record["server_id"] == "srv-9" and record["cpu_usage"] == 12.5
    assert record["memory_usage"] is None  # an empty cell is null
    assert record["source"] == "f.csv:2"


def test_parquet_row_with_native_types():
    row = metric(timestamp=datetime(2026, 1, 5, 10, tzinfo=timezone.utc))
    assert to_bronze(RawRecord(row, "f.parquet"), NOW)["timestamp"] == row["timestamp"]


# Every class of bad input, and the reason it must be dead-lettered with.
BAD_INPUTS = {
    "empty line": (b"", "empty_payload"),
    "white space only": (b"   \t ", "empty_payload"),
    "not UTF-8": (b'{"server_id": "\xff\xfe"}', "undecodable_payload"),
    "truncated JSON": (line()[:40].encode(), "invalid_json"),
    "trailing garbage": ((line() + " }").encode(), "invalid_json"),
    "NaN literal": (line().replace("50.0", "NaN").encode(), "invalid_json"),
    "JSON array": (b"[1, 2, 3]", "not_an_object"),
    "JSON string": (b'"hello"', "not_an_object"),
    "JSON null": (b"null", "not_an_object"),
    "oversized payload": (b'{"x": "' + b"a" * (1 << 20) + b'"}', "payload_too_large"),
    "missing server_id": (line(server_id=DROP).encode(), "missing_required_field"),
    "missing timestamp": (line(timestamp=DROP).encode(), "missing_required_field"),
    "null timestamp": (line(timestamp=None).encode(), "missing_required_field"),
    "empty server_id": (line(server_id="  ").encode(), "missing_required_field"),
    "cpu as a word": (line(cpu_usage="high").encode(), "wrong_type"),
    "cpu as a boolean": (line(cpu_usage=True).encode(), "wrong_type"),
    "memory as an object": (line(memory_usage={"v": 1}).encode(), "wrong_type"),
    "server_id as a number": (line(server_id=17).encode(), "wrong_type"),
    "NaN as a string": (line(cpu_usage="nan").encode(), "non_finite_number"),
    "infinity as a string": (line(network_in="inf").encode(), "non_finite_number"),
    "digits grouped by an underscore": (line(cpu_usage="5_0").encode(), "wrong_type"),
    "Arabic-Indic digits": (line(cpu_usage="\u0665\u0660").encode(), "wrong_type"),
    "full-width digits": (line(memory_usage="\uff15\uff10").encode(), "wrong_type"),
    "epoch in full-width digits": (line(timestamp="\uff11" * 10).encode(), "invalid_timestamp"),
    "a timestamp past year 9999 in UTC": (line(timestamp="9999-12-31T23:59:59-12:00").encode(),
                                          "timestamp_out_of_range"),
    "unparseable timestamp": (line(timestamp="yesterday").encode(), "invalid_timestamp"),
    "impossible date": (line(timestamp="2026-02-30T00:00:00Z").encode(), "invalid_timestamp"),
    "timestamp in 1900": (line(timestamp="1900-01-01T00:00:00Z").encode(),
                          "timestamp_out_of_range"),
    "timestamp as a boolean": (line(timestamp=False).encode(), "wrong_type"),
    "no measurements": (line(cpu_usage=DROP, memory_usage=DROP, disk_io=DROP, network_in=DROP,
                             network_out=DROP, temperature_c=DROP, power_watts=DROP).encode(),
                        "no_measurements"),
}
BAD_CSV = {
    "CSV row too short": (b"srv-9,2026-01-05T10:00:00Z", "csv_column_mismatch"),
    "CSV row too long": (b"srv-9,2026-01-05T10:00:00Z,1,2,3", "csv_column_mismatch"),
    "CSV unterminated quote": (b'srv-9,"2026-01-05,1,2', "csv_column_mismatch"),
}


def test_at_least_twenty_classes_of_bad_input_are_covered():
    assert len(BAD_INPUTS) + len(BAD_CSV) >= 20
    used = {reason for _, reason in (*BAD_INPUTS.values(), *BAD_CSV.values())}
    assert used <= set(REASONS)


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_json_input_is_dead_lettered_with_its_reason(name):
    payload, reason = BAD_INPUTS[name]
    [out] = run_fn(RawRecord(payload, "bad.jsonl"))
    assert out.tag == DEAD_LETTER
    dead = out.value
    assert dead["reason"] == reason, dead["message"]
    assert set(dead) == set(DEAD_LETTERS.names)
    assert dead["layer"] == "bronze" and dead["step"] == "ParseServerMetric"
    assert dead["source"] == "bad.jsonl" and dead["processing_timestamp"] == NOW
    assert dead["message"]
    # the payload is kept exactly: as text when it is UTF-8, else base64 of the bytes
    if dead["payload_encoding"] == "utf-8":
        assert dead["payload"] == payload.decode()
    else:
        import base64
        assert base64.b64decode(dead["payload"]) == payload


@pytest.mark.parametrize("name", sorted(BAD_CSV))
def test_bad_csv_input_is_dead_lettered_with_its_reason(name):
    payload, reason = BAD_CSV[name]
    [out] = run_fn(RawRecord(payload, "bad.csv:7", CSV_HEADER))
    assert out.tag == DEAD_LETTER and out.value["reason"] == reason


def test_a_dead_letter_keeps_the_event_time_when_it_could_be_read():
    [out] = run_fn(RawRecord(line(cpu_usage="high")))
    assert out.value["event_timestamp"] == datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def test_an_unexpected_error_becomes_an_internal_error_dead_letter(monkeypatch):
    import transforms.server_metrics.row_bronze as bronze

    def boom(raw, now):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(bronze, "to_bronze", boom)
    [out] = run_fn(RawRecord(line()))
    assert out.tag == DEAD_LETTER and out.value["reason"] == "internal_error"
    assert "ZeroDivisionError" in out.value["message"]


def test_rejection_carries_reason_and_message():
    with pytest.raises(RecordRejected) as info:
        to_bronze(RawRecord(b"[]"), NOW)
    assert info.value.reason == "not_an_object" and "array" in info.value.message


def test_bronze_transform_accounts_for_every_record():
    good = [RawRecord(line(server_id=f"srv-{i}").encode(), "in") for i in range(5)]
    bad = [RawRecord(payload, "in") for payload, _ in BAD_INPUTS.values()]
    with test_pipeline() as p:
        out = p | beam.Create(good + bad) | ValidateServerMetrics(clock=fixed_clock)
        assert_that(out["records"] | "Ids" >> beam.Map(lambda r: r["server_id"]),
                    equal_to([f"srv-{i}" for i in range(5)]), label="accepted")
        assert_that(out["dead_letters"] | "Reasons" >> beam.Map(lambda d: d["reason"]),
                    equal_to([reason for _, reason in BAD_INPUTS.values()]), label="rejected")
