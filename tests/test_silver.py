"""Silver: range checks, canonical names, derived columns, dedupe, accounting."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from schemas.server_metrics import SERVER_METRICS_SILVER
from tests.conftest import NOW, line, test_pipeline
from transforms.bronze import RawRecord
from transforms.dead_letters import DEAD_LETTER, RecordRejected
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_silver import CheckServerMetricFn, CleanServerMetrics, to_silver
from transforms.server_metrics.rules import ServerMetricsRules

RULES = ServerMetricsRules()


def bronze(**overrides) -> dict:
    return to_bronze(RawRecord(line(**overrides)), NOW)


def test_silver_row_has_the_declared_columns_and_derived_values():
    row = to_silver(bronze(timestamp="2026-01-05T23:59:59.500Z"), RULES)
    assert set(row) == set(SERVER_METRICS_SILVER.names)
    assert row["metric_date"] == date(2026, 1, 5)
    assert row["hour_of_day"] == 23
    assert row["is_high_utilization"] is False
    # ingest 2026-01-06 12:00:00 − event 2026-01-05 23:59:59.5 = 12 h 0.5 s
    assert row["processing_delay_ms"] == 12 * 3600 * 1000 + 500


@pytest.mark.parametrize("cpu, memory, expected", [
    (90.0, 90.0, False),   # the rule is strictly above 90 (seed 000)
    (90.01, 10.0, True),
    (10.0, 95.0, True),
    (None, 95.0, True),    # a missing sensor does not hide the other one
    (None, None, False),
])
def test_high_utilization_rule(cpu, memory, expected):
    row = to_silver(bronze(cpu_usage=cpu, memory_usage=memory, disk_io=1.0), RULES)
    assert row["is_high_utilization"] is expected


def test_thresholds_come_from_the_rules():
    rules = ServerMetricsRules(high_cpu_threshold=50.0)
    assert to_silver(bronze(cpu_usage=60.0), rules)["is_high_utilization"] is True


@pytest.mark.parametrize("field, value", [
    ("cpu_usage", 100.5), ("cpu_usage", -0.1), ("memory_usage", 150.0),
    ("disk_io", -1.0), ("network_in", -25.0), ("network_out", -0.01),
    ("temperature_c", 500.0), ("power_watts", -3.0),
])
def test_out_of_range_values_are_rejected_with_the_field_named(field, value):
    with pytest.raises(RecordRejected) as info:
        to_silver(bronze(**{field: value}), RULES)
    assert info.value.reason == "out_of_range"
    assert field in info.value.message
    assert info.value.event_timestamp == datetime(2026, 1, 5, 10, tzinfo=timezone.utc)


def test_range_bounds_are_inclusive():
    row = to_silver(bronze(cpu_usage=100.0, memory_usage=0.0, network_in=0.0), RULES)
    assert row["cpu_usage"] == 100.0


def test_names_are_canonicalised():
    row = to_silver(bronze(server_type=" DB ", location="US East", server_id=" srv-1 "), RULES)
    assert (row["server_type"], row["location"], row["server_id"]) == \
        ("database", "us-east", "srv-1")


def test_unknown_server_type_is_rejected():
    with pytest.raises(RecordRejected) as info:
        to_silver(bronze(server_type="toaster"), RULES)
    assert info.value.reason == "unknown_category"


def test_check_fn_dead_letters_with_the_bronze_row_as_payload():
    fn = CheckServerMetricFn(RULES)
    fn.setup()
    [out] = list(fn.process(bronze(cpu_usage=101.0)))
    assert out.tag == DEAD_LETTER
    assert out.value["layer"] == "silver" and out.value["reason"] == "out_of_range"
    assert '"cpu_usage":101.0' in out.value["payload"]


def test_silver_dedupes_and_accounts_for_every_bronze_record():
    t0 = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
    stamp = lambda s: (t0 + timedelta(seconds=s)).isoformat()  # noqa: E731
    rows = [
        bronze(server_id="a", timestamp=stamp(0)),
        bronze(server_id="a", timestamp=stamp(0)),                 # exact duplicate
        bronze(server_id="a", timestamp=stamp(0), cpu_usage=51.0),  # same event, other values
        bronze(server_id="a", timestamp=stamp(10)),
        bronze(server_id="b", timestamp=stamp(0)),                 # other server, same time
        bronze(server_id="b", timestamp=stamp(20), cpu_usage=120.0),  # out of range
    ]
    with test_pipeline() as p:
        out = (p | beam.Create(rows)
               | beam.Map(lambda r: beam.window.TimestampedValue(r, r["timestamp"].timestamp()))
               | CleanServerMetrics(RULES))
        assert_that(out["records"] | "Keys" >> beam.Map(lambda r: (r["server_id"],
                                                                   r["timestamp"].second)),
                    equal_to([("a", 0), ("a", 10), ("b", 0)]), label="kept")
        assert_that(out["dead_letters"] | "Reasons" >> beam.Map(lambda d: d["reason"]),
                    equal_to(["duplicate_event", "duplicate_event", "out_of_range"]),
                    label="rejected")
        # which copy survives does not depend on arrival order: the lowest-ranked content
        assert_that(out["records"] | "CpuOfA0" >> beam.Filter(
                        lambda r: r["server_id"] == "a" and r["timestamp"].second == 0)
                    | beam.Map(lambda r: r["cpu_usage"]), equal_to([50.0]), label="survivor")
