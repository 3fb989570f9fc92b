"""Ctrl-C in a batch run, whenever it comes (while Python imports, while Beam builds the
graph, while bundles read, while the sinks write): one line, exit 130, and no temporary
files left in the lakehouse."""
from __future__ import annotations

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("after_s", [0.3, 3.0, 6.0, 9.0])
def test_ctrl_c_anywhere_in_a_batch_run_is_one_line_and_exit_130(tmp_path, after_s):
    out = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "--output-dir", str(out), "--sample-duration", "48h"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(after_s)
    assert proc.poll() is None, "the run ended before the interrupt: make it longer"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip() == "python -m run: interrupted", err[-3000:]
    assert not glob.glob(str(out / "**" / "beam-temp-*"), recursive=True)
