"""Gold: hand-computed aggregates, window boundaries, health score, alerts, accounting."""
from __future__ import annotations

import math
from datetime import date, datetime, timezone

import apache_beam as beam
import pytest

from schemas.server_metrics import (
    ALERTS,
    HOURLY_SERVER_METRICS,
    LOCATION_PERFORMANCE,
    SERVER_HEALTH_SUMMARY,
    SERVER_METRICS_MINUTELY,
)
from tests.conftest import NOW, line, run_and_collect
from transforms.bronze import RawRecord, event_time
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_gold import ServerMetricsGold
from transforms.server_metrics.row_silver import to_silver
from transforms.server_metrics.rules import HealthWeights, Location, ServerMetricsRules

RULES = ServerMetricsRules(locations=(Location("us-east", 38.9, -77.4),))


def silver(server_id, ts, cpu, memory, temp=50.0, **kw):
    b = to_bronze(RawRecord(line(server_id=server_id, server_name=f"name-{server_id}",
                                 timestamp=ts, cpu_usage=cpu, memory_usage=memory,
                                 temperature_c=temp, disk_io=100.0, network_in=1000.0,
                                 network_out=2000.0, **kw)), NOW)
    return to_silver(b, RULES)


ROWS = [
    silver("a", "2026-01-05T10:00:00Z", 10.0, 20.0),
    silver("a", "2026-01-05T10:00:30Z", 30.0, 40.0, temp=93.0),
    silver("a", "2026-01-05T10:59:59.999Z", 95.0, 50.0),   # last instant of hour 10
    silver("a", "2026-01-05T11:00:00Z", 50.0, 95.0),       # first instant of hour 11
    silver("b", "2026-01-05T10:00:10Z", 20.0, 80.0),
]


def run_gold(rows, rules=RULES):
    def build(p):
        stamped = p | beam.Create(rows) | beam.Map(
            lambda r: beam.window.TimestampedValue(r, event_time(r["timestamp"])))
        return stamped | ServerMetricsGold(rules)
    return run_and_collect(build)


@pytest.fixture(scope="module")
def gold():
    return run_gold(ROWS)


def one(rows, **match):
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_every_table_has_exactly_its_declared_columns(gold):
    for schema in (SERVER_METRICS_MINUTELY, HOURLY_SERVER_METRICS, SERVER_HEALTH_SUMMARY,
                   LOCATION_PERFORMANCE, ALERTS):
        assert gold[schema.name], schema.name
        for row in gold[schema.name]:
            assert list(row) == list(schema.names)


def test_hour_boundaries_follow_event_time(gold):
    hours = gold["hourly_server_metrics"]
    h10 = one(hours, server_id="a", hour_of_day=10)
    h11 = one(hours, server_id="a", hour_of_day=11)
    assert (h10["window_start"], h10["window_end"]) == (utc(2026, 1, 5, 10), utc(2026, 1, 5, 11))
    assert h10["record_count"] == 3 and h11["record_count"] == 1
    assert h10["metric_date"] == date(2026, 1, 5)


def test_hourly_statistics_by_hand(gold):
    h10 = one(gold["hourly_server_metrics"], server_id="a", hour_of_day=10)
    # cpu 10, 30, 95
    assert h10["min_cpu_usage"] == 10.0 and h10["max_cpu_usage"] == 95.0
    assert h10["avg_cpu_usage"] == pytest.approx(45.0)
    assert h10["p50_cpu_usage"] == pytest.approx(30.0)
    assert h10["p95_cpu_usage"] == pytest.approx(30 + 0.9 * 65)    # rank 1.9
    assert h10["p99_cpu_usage"] == pytest.approx(30 + 0.98 * 65)   # rank 1.98
    assert h10["stddev_cpu_usage"] == pytest.approx(math.sqrt(3950 / 2))
    assert h10["high_utilization_count"] == 1
    assert h10["high_utilization_pct"] == pytest.approx(100 / 3)
    assert h10["total_network_in"] == 3000.0 and h10["total_network_out"] == 6000.0
    assert h10["avg_disk_io"] == 100.0
    assert h10["max_temperature_c"] == 93.0


def test_minute_boundaries(gold):
    minutes = gold["server_metrics_minutely"]
    assert one(minutes, server_id="a", window_start=utc(2026, 1, 5, 10, 0))["record_count"] == 2
    last = one(minutes, server_id="a", window_start=utc(2026, 1, 5, 10, 59))
    assert last["record_count"] == 1 and last["window_end"] == utc(2026, 1, 5, 11, 0)


def test_health_score_by_hand(gold):
    health = gold["server_health_summary"]
    a = one(health, server_id="a")
    # avg cpu 46.25, avg memory 51.25, high utilisation 2 of 4 = 50 %
    assert a["record_count"] == 4 and a["high_utilization_pct"] == 50.0
    assert a["server_health_score"] == pytest.approx(100 - (46.25 * .4 + 51.25 * .4 + 50 * .2))
    b = one(health, server_id="b")
    assert b["server_health_score"] == pytest.approx(100 - (20 * .4 + 80 * .4))
    assert a["window_start"] == utc(2026, 1, 5) and a["window_end"] == utc(2026, 1, 6)


def test_health_weights_are_configurable_and_the_score_clamped():
    assert HealthWeights(cpu=1, memory=1, high_utilization=1).score(90, 90, 100) == 0.0
    with pytest.raises(ValueError, match="not all be 0"):
        HealthWeights(cpu=0, memory=0, high_utilization=0)
    rules = ServerMetricsRules(health_weights=HealthWeights(cpu=1.0, memory=0.0,
                                                            high_utilization=0.0))
    found = run_gold(ROWS[-1:], rules)
    assert found["server_health_summary"][0]["server_health_score"] == pytest.approx(80.0)


def test_location_performance_counts_distinct_servers(gold):
    row = one(gold["location_performance"], location="us-east", server_type="web")
    assert row["server_count"] == 2 and row["record_count"] == 5
    assert (row["latitude"], row["longitude"]) == (38.9, -77.4)
    assert row["avg_cpu_usage"] == pytest.approx((10 + 30 + 95 + 50 + 20) / 5)


def test_alerts_per_server_minute_and_rule(gold):
    alerts = gold["alerts"]
    assert {(a["server_id"], a["rule"], a["window_start"].strftime("%H:%M")) for a in alerts} \
        == {("a", "overheating", "10:00"), ("a", "high_cpu", "10:59"),
            ("a", "high_memory", "11:00")}
    hot = one(alerts, rule="overheating")
    assert hot["severity"] == "critical" and hot["observed_value"] == 93.0
    assert hot["breach_count"] == 1 and hot["threshold"] == 90.0
    assert "temperature_c above 90" in hot["message"] and "name-a" in hot["message"]


def test_every_gold_table_accounts_for_every_silver_record(gold):
    for table in ("server_metrics_minutely", "hourly_server_metrics",
                  "server_health_summary", "location_performance"):
        assert sum(r["record_count"] for r in gold[table]) == len(ROWS), table


def test_health_is_scored_over_the_metrics_a_server_reports():
    """Seed 001's regions report no memory: the other weights take its share, so a
    server's score keeps its range instead of becoming null; the vectorised gold and the
    row-level score agree."""
    import pyarrow as pa

    from transforms.server_metrics.gold import health_scores

    w = HealthWeights()  # 0.4, 0.4, 0.2
    assert w.score(50.0, None, 10.0) == pytest.approx(100 - (50 * .4 + 10 * .2) * 1.0 / .6)
    assert w.score(None, None, 0.0) is None  # nothing reported: no score, not 100
    assert w.score(50.0, 70.0, None) == pytest.approx(100 - (50 * .4 + 70 * .4) / .8)
    cpu = pa.array([50.0, None, 50.0, 46.25])
    mem = pa.array([None, None, 70.0, 51.25])
    pct = pa.array([10.0, 0.0, None, 50.0])
    scores = health_scores(w, cpu, mem, pct)
    expected = [w.score(*(c.as_py() for c in row)) for row in zip(cpu, mem, pct, strict=True)]
    assert [None if s != s else pytest.approx(s) for s in scores] == [
        None if e is None else pytest.approx(e) for e in expected]


def test_a_server_type_and_a_server_have_thresholds_of_their_own():
    """The most specific threshold applies (server, then type, then the rule's), and the
    alert row says which; the row-level gold and the rule agree."""
    import dataclasses

    from transforms.server_metrics.rules import AlertRule

    rule = AlertRule("high_cpu", "cpu_usage", above=90.0, by_type=(("web", 25.0),),
                     by_server=(("b", 15.0),))
    assert rule.threshold_of("x", "database") == 90.0
    assert rule.threshold_of("x", "web") == 25.0 and rule.threshold_of("b", "web") == 15.0
    assert list(rule.thresholds(["x", "a", "b"], ["database", "web", "web"])) == [
        90.0, 25.0, 15.0]
    rules = dataclasses.replace(RULES, alert_rules=(rule,))
    found = run_gold(ROWS, rules)["alerts"]
    # a: web, cpu 30 and 95 in minute 10:00/10:59 and 50 at 11:00 above 25; b: its own 15
    assert {(r["server_id"], r["threshold"]) for r in found} == {("a", 25.0), ("b", 15.0)}
    assert all(f"above {r['threshold']:g}" in r["message"] for r in found)
