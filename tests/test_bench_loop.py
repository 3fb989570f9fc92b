"""The benchmark's reference loop computes what the pipeline computes (same tables, same
rows), so its ratio measures the framework's cost and nothing else."""
from __future__ import annotations

import math

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.lakehouse import write_catalog
from beam_pipelines.server_metrics import TABLES
from bench.loop import run_loop
from bench.worker import run_beam
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.writers import write_metrics
from schemas.server_metrics import ANALYTICS_TABLES, GOLD_TABLES, INCIDENT_TABLES


def _same(a, b) -> bool:
    """Equal, floats up to the order of their additions."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_the_reference_loop_writes_the_pipelines_tables(tmp_path):
    data = str(tmp_path / "metrics.jsonl")
    write_metrics(MetricsGenerator(GeneratorConfig(
        servers=3, interval_ms=1000, count=3000, seed=4, malformed_rate=0.01,
        duplicate_rate=0.01, late_rate=0.01, anomaly_rate=0.02)), data, "jsonl")
    counts = run_loop(data, str(tmp_path / "loop"))
    run_beam(data, str(tmp_path / "beam"))
    loop_db = write_catalog(str(tmp_path / "loop"), TABLES)
    beam_db = write_catalog(str(tmp_path / "beam"), TABLES)
    for schema in GOLD_TABLES + ANALYTICS_TABLES + INCIDENT_TABLES:
        columns = ", ".join(n for n in schema.names if n not in ("pane_index", "pane_timing"))
        query = f"select {columns} from {schema.name} order by all"
        with connect_catalog(loop_db) as con:
            loop_rows = con.execute(query).fetchall()
        with connect_catalog(beam_db) as con:
            beam_rows = con.execute(query).fetchall()
        assert len(loop_rows) == counts[schema.name] == len(beam_rows), schema.name
        for mine, theirs in zip(loop_rows, beam_rows, strict=True):
            assert all(_same(a, b) for a, b in zip(mine, theirs, strict=True)), \
                (schema.name, mine, theirs)
    assert counts["anomalies"] > 0 and counts["server_alert_matrix"] > 0
    assert counts["alert_incidents"] > 0 and counts["alert_notifications"] > 0
