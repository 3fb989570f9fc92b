"""Ctrl-C, whenever it comes. A batch run (while Python imports, while Beam builds the
graph, while bundles read, while the sinks write): one line, exit 130, and no temporary
files left in the lakehouse. A streaming run: it drains (every window closes) and ends
with its checked summary; a second Ctrl-C aborts, in one line."""
from __future__ import annotations

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The run must see Ctrl-C even when the test process ignores it (a pytest-xdist worker
# may). A `preexec_fn` would restore it, but forces a plain fork() of a process in which
# gRPC is already running, and gRPC's fork handlers can abort the child before it execs
# (seen as SIGABRT under load). A tiny launcher restores the default instead, then execs.
_LAUNCH = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
           "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def _interruptible(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _LAUNCH, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("after_s", [0.3, 3.0, 6.0, 9.0])
def test_ctrl_c_anywhere_in_a_batch_run_is_one_line_and_exit_130(tmp_path, after_s):
    out = tmp_path / "lake"
    proc = _interruptible("-m", "run", "--output-dir", str(out), "--sample-duration", "96h")
    time.sleep(after_s)
    if proc.poll() is not None:
        _, err = proc.communicate()
        pytest.fail(f"the run ended (exit {proc.returncode}) before the interrupt: {err[-2000:]}")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip() == "python -m run: interrupted", err[-3000:]
    assert not glob.glob(str(out / "**" / "beam-temp-*"), recursive=True)


def _streaming(out: Path) -> tuple[subprocess.Popen, str]:
    """A streaming run, once it has printed how to query it (and what it printed): from
    its first line on a Ctrl-C drains; before it, it is the batch case (one line, exit
    130). Waiting for the line, not a fixed time, holds whatever the machine's load."""
    proc = _interruptible("-m", "run", "--streaming", "--run-for", "5m", "--output-dir",
                          str(out))
    printed = []
    while not printed or not printed[-1].startswith("Query while it runs"):
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate()
            pytest.fail(f"the run ended before it started streaming: {err[-2000:]}")
        printed.append(line)
    return proc, "".join(printed)


@pytest.mark.parametrize("after_s", [0.0, 1.5, 6.0])
def test_ctrl_c_in_a_streaming_run_drains_and_prints_the_checked_summary(tmp_path, after_s):
    proc, _ = _streaming(tmp_path / "lake")
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Draining"), err[-3000:]
    assert "Records per layer" in out and "MISMATCH" not in out and out.count("✓") == 7


def test_ctrl_c_twice_aborts_a_draining_streaming_run_in_one_line(tmp_path):
    out = tmp_path / "lake"
    proc, _ = _streaming(out)
    # Draining: records are flowing (a first bronze file is in place), so closing every
    # window takes a while, and the second Ctrl-C comes during it.
    deadline = time.monotonic() + 120
    while not glob.glob(str(out / "bronze" / "**" / "part-*.parquet"), recursive=True):
        assert proc.poll() is None and time.monotonic() < deadline, "no bronze file"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "python -m run: interrupted"
    assert len(err.strip().splitlines()) == 2, err[-3000:]


@pytest.mark.parametrize("second_after_s", [1.0, 2.0])
def test_a_second_ctrl_c_while_the_run_ends_is_never_a_silent_death(tmp_path, second_after_s):
    """The drain of a run interrupted at once ends in a second or two; a second Ctrl-C
    then lands while the run prints its summary or while the process ends. Either the run
    was over (0) or it says so in one line (130): it never dies by the signal with no
    word, as it did when Python's own teardown met the Ctrl-C."""
    proc, _ = _streaming(tmp_path / "lake")
    proc.send_signal(signal.SIGINT)
    time.sleep(second_after_s)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 130), (proc.returncode, err[-3000:])
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "python -m run: interrupted", err[-3000:]


def test_a_finished_program_leaves_at_once_with_its_output_flushed():
    """``leave``: no wait for threads still running, nothing printed lost."""
    script = ("import threading, time\n"
              "from beam_pipelines.errors import leave\n"
              "threading.Thread(target=time.sleep, args=(60,)).start()\n"
              "print('written', end='')\n"
              "leave(3, 'prog')\n")
    # A wait for the thread would outlast the timeout (60 s against 20 s).
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 3 and proc.stdout == "written", proc


_SWALLOWING = """
import sys, time
from beam_pipelines.errors import guard_interrupts, interrupt_taken
if sys.argv[1] == "guarded":
    guard_interrupts()

class Held:
    def __del__(self):  # Python drops an exception raised here ("Exception ignored")
        print("in __del__", flush=True)
        for _ in range(200):  # until the Ctrl-C, however late it comes (10 s at most)
            time.sleep(0.05)

try:
    Held()
    for _ in range(100):
        time.sleep(0.1)
except KeyboardInterrupt:
    interrupt_taken()
    sys.exit(130)
"""


@pytest.mark.parametrize("guarded", [True, False])
def test_a_ctrl_c_python_drops_is_raised_again(guarded):
    """A Ctrl-C landing where Python drops the exception it raises (a ``__del__``, a
    weakref callback: seen while Python imported) still ends the command; unguarded, the
    same script runs on to its end, which is what the guard is for."""
    proc = _interruptible("-c", _SWALLOWING, "guarded" if guarded else "bare")
    assert proc.stdout.readline().strip() == "in __del__"
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert "Exception ignored" in err  # the interrupt did land where it is dropped
    if guarded:
        assert proc.returncode == 130, err[-2000:]
        assert time.monotonic() - started < 5  # a re-raise or two, not the loop's 10 s
    else:
        assert proc.returncode == 0, err[-2000:]
