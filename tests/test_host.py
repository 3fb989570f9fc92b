"""Seed 003's record, from this machine: the sampler's shape, its mapping onto the
canonical record, and the metrics pipeline (EWMA included) over real samples."""
from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from pathlib import Path

from beam_pipelines.catalog import connect as connect_catalog
from generators.host import HostConfig, HostSampler
from transforms.server_metrics.regional import to_canonical

ROOT = Path(__file__).resolve().parent.parent
SEED_003 = {"host", "cpu", "memory", "timestamp", "load1", "load5", "load15", "disk_used_gb",
            "disk_used_pct", "net_rx_kbps", "net_tx_kbps", "os", "arch"}


def test_a_sample_is_seed_003s_record_of_this_machine():
    lines = list(HostSampler(HostConfig(interval_s=0.1, count=3)).render())
    assert len(lines) == 3
    samples = [json.loads(line) for line in lines]
    for sample in samples:
        assert set(sample) == SEED_003
        assert sample["host"] == socket.gethostname()
        assert 0 <= sample["cpu"] <= 100 and 0 < sample["memory"] <= 100
        assert sample["load1"] >= 0 and 0 <= sample["disk_used_pct"] <= 100
        assert sample["net_rx_kbps"] >= 0 and sample["net_tx_kbps"] >= 0
        assert (sample["os"], sample["arch"]) == (platform.system(), platform.machine())
    times = [s["timestamp"] for s in samples]
    assert times == sorted(times) and times[-1] - times[0] >= 0.15  # one per interval


def test_bronze_maps_the_host_shape_onto_the_canonical_record():
    sample = {"host": "db-7", "cpu": 41.5, "memory": 63.0, "timestamp": 1767607200.5,
              "load1": 0.5, "load5": 0.4, "load15": 0.3, "disk_used_gb": 12.0,
              "disk_used_pct": 40.0, "net_rx_kbps": 800.0, "net_tx_kbps": 80.0,
              "os": "Linux", "arch": "x86_64"}
    record = to_canonical(sample)
    assert record["server_id"] == "db-7"
    assert (record["cpu_usage"], record["memory_usage"]) == (41.5, 63.0)
    assert (record["network_in"], record["network_out"]) == (100.0, 10.0)  # kbit/s → kB/s
    assert record["timestamp"].isoformat() == "2026-01-05T10:00:00.500000+00:00"
    assert "region" not in record  # a host is not a region
    # seed 003's other fields are declared: typed columns, not unknown fields
    assert (record["load_1m"], record["load_5m"], record["load_15m"]) == (0.5, 0.4, 0.3)
    assert (record["disk_used_gb"], record["disk_used_pct"]) == (12.0, 40.0)
    assert (record["os"], record["arch"]) == ("Linux", "x86_64")
    assert not {"load1", "disk_used_pct_", "net_rx_kbps"} & set(record)


def test_the_pipeline_and_its_detector_run_on_real_samples(tmp_path):
    samples = tmp_path / "host.jsonl"
    gen = subprocess.run([sys.executable, "-m", "generators", "host", "--interval", "0.05s",
                          "--count", "40", "--output", str(samples)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    assert "wrote 40 samples" in gen.stderr
    out = tmp_path / "lake"
    run = subprocess.run([sys.executable, "-m", "run", "--input", str(samples),
                          "--output-dir", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "✗" not in run.stdout
    with connect_catalog(out) as con:
        assert con.execute("SELECT count(*), count(DISTINCT server_id), min(memory_usage) > 0 "
                           "FROM server_metrics_silver").fetchone() == (40, 1, True)
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM server_metrics_bronze WHERE extra_fields "
                           "IS NOT NULL").fetchone()[0] == 0
        assert con.execute(
            "SELECT bool_and(load_1m >= 0 AND load_15m >= 0 AND disk_used_pct BETWEEN 0 AND "
            "100 AND os = ? AND arch = ?) FROM server_metrics_silver",
            [platform.system(), platform.machine()]).fetchone()[0] is True
        # gold over the host's own series: one server, one day
        assert con.execute("SELECT count(*) FROM server_health_summary").fetchone()[0] == 1
