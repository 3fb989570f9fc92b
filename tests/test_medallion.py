"""The whole medallion in a TestPipeline: every record accounted for, in every layer."""
from __future__ import annotations

from collections import Counter

import apache_beam as beam
import pytest

from beam_pipelines.io.sources import ReadServerMetricFiles, resolve_inputs
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.writers import write_metrics
from tests.conftest import fixed_clock, run_and_collect
from transforms.server_metrics.row_bronze import ValidateServerMetrics
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.server_metrics.rules import ServerMetricsRules

FAULTY = dict(servers=6, interval_ms=5000, count=3000, seed=21, malformed_rate=0.04,
              duplicate_rate=0.03, late_rate=0.03)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("medallion") / "m.jsonl"
    gen = MetricsGenerator(GeneratorConfig(**FAULTY))
    write_metrics(gen, str(path), "jsonl")
    files = resolve_inputs([str(path)])
    tables = run_and_collect(lambda p: p | ReadServerMetricFiles(files)
                             | ServerMetricsMedallion(ServerMetricsRules(), clock=fixed_clock))
    return gen.stats, tables


def test_accounting_identity_for_every_layer(run):
    stats, t = run
    dead = Counter(d["layer"] for d in t["dead_letters"])
    bronze, silver = len(t["server_metrics_bronze"]), len(t["server_metrics_silver"])
    assert stats.written == bronze + dead["bronze"]          # input = bronze + dead letters
    assert bronze == silver + dead["silver"]                 # bronze = silver + dead letters
    for table in ("server_metrics_minutely", "hourly_server_metrics",
                  "server_health_summary", "location_performance"):
        assert sum(r["record_count"] for r in t[table]) == silver, table
    assert set(dead) == {"bronze", "silver"}


def test_each_fault_ends_with_its_reason(run):
    stats, t = run
    reasons = Counter(d["reason"] for d in t["dead_letters"])
    assert reasons["duplicate_event"] == stats.duplicates
    assert sum(reasons.values()) - reasons["duplicate_event"] == stats.malformed
    assert len(t["server_metrics_silver"]) == stats.events - stats.malformed
    # late records are not lost in batch: they are simply out of order
    assert len({(r["server_id"], r["timestamp"]) for r in t["server_metrics_silver"]}) == \
        len(t["server_metrics_silver"])


def test_the_three_file_formats_read_the_same_records(tmp_path):
    cfg = dict(servers=3, count=60, seed=5)
    for fmt in ("jsonl", "csv", "parquet"):
        write_metrics(MetricsGenerator(GeneratorConfig(**cfg)), str(tmp_path / f"m.{fmt}"), fmt)

    def build(p):
        out = {}
        for fmt in ("jsonl", "csv", "parquet"):
            files = resolve_inputs([str(tmp_path / f"m.{fmt}")])
            out[fmt] = (p | f"Read{fmt}" >> ReadServerMetricFiles(files)
                        | f"Bronze{fmt}" >> ValidateServerMetrics(clock=fixed_clock))["records"]
        return out

    found = run_and_collect(build)
    key = lambda r: (r["server_id"], r["timestamp"], r["cpu_usage"], r["power_watts"])  # noqa
    as_sets = {fmt: sorted(map(key, rows)) for fmt, rows in found.items()}
    assert len(as_sets["jsonl"]) == 60
    assert as_sets["jsonl"] == as_sets["csv"] == as_sets["parquet"]
    assert {r["source"].rsplit(":", 1)[0] for r in found["csv"]} == {str(tmp_path / "m.csv")}


def test_a_directory_of_mixed_formats_is_one_input(tmp_path):
    for fmt in ("jsonl", "csv", "parquet"):
        write_metrics(MetricsGenerator(GeneratorConfig(servers=2, count=10)),
                      str(tmp_path / f"m.{fmt}"), fmt)
    files = resolve_inputs([str(tmp_path)])
    assert sorted(files) == ["csv", "jsonl", "parquet"]
    found = run_and_collect(lambda p: {"raw": p | ReadServerMetricFiles(files)
                                       | beam.Map(lambda r: r.source)})
    assert len(found["raw"]) == 30
