"""The alert quality the benchmark measures, on a seeded sample with generous margins (the
exact figures are make bench's): incidents page far less than the signals fire, and still
cover the injected faults."""
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
    assert q["incidents"] * 20 < q["signals"]
    assert q["pages_per_server_day"] * 20 < q["signals_per_server_day"]
    assert q["incident_recall"] >= 0.9 and q["signal_recall"] >= 0.9
    assert q["incident_precision"] > q["signal_precision"]
