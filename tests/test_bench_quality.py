"""The alert quality the benchmark measures, on a seeded sample with generous margins (the
exact figures are make bench's): incidents page far less than the signals fire, still
cover the injected faults, and a fleet without faults hardly pages."""
from __future__ import annotations

import os
import subprocess
import sys

from bench.quality import measure


def test_incidents_cover_the_injected_faults_with_far_fewer_pages(tmp_path):
    out = tmp_path / "lake"
    done = subprocess.run([sys.executable, "-m", "run", "--sample-duration", "2h",
                           "--sample-servers", "8", "--output-dir", str(out),
                           "--no-summary", "--progress", "0"], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    q = measure(os.path.join(out, "lakehouse.duckdb"))
    assert q["servers"] == 8 and q["injected_faults"] > 20
    assert q["paged_incidents"] * 20 < q["signals"] and q["incidents"] < q["signals"]
    assert q["pages_per_server_day"] * 20 < q["signals_per_server_day"]
    assert q["incident_recall"] >= 0.9 and q["signal_recall"] >= 0.9
    assert q["paged_recall"] >= 0.85 and q["sustained_faults"] >= 5
    assert q["incident_precision"] >= 0.85 > q["signal_precision"]
    assert q["pages_per_server_day"] <= 30


def test_a_fleet_without_faults_hardly_pages(tmp_path):
    from bench.quality import _pages_without_faults

    quiet = _pages_without_faults(str(tmp_path), 12, servers=8)
    assert quiet["signals_per_server_day"] > 100  # the detectors do see the noise
    assert quiet["pages_per_server_day"] <= 2
