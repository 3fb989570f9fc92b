"""How far a batch run has read its input, for the progress line of a long local run.

The file sources add what they read (records, and bytes of uncompressed files) to this
process's counters. Beam's own counters reach the launcher only when a run ends, but the
local batch runner (the FnApiRunner in memory) runs the sources in the launching process,
so a thread there can read these while the run goes on. With workers in other processes
(``--direct_running_mode multi_processing``, Dataflow) they stay at zero here, and no
progress line is printed: Dataflow's console shows its own.
"""
from __future__ import annotations

import threading
import time

_lock = threading.Lock()
_records = 0
_bytes = 0


def add(records: int, nbytes: int = 0) -> None:
    global _records, _bytes
    with _lock:
        _records += records
        _bytes += nbytes


def read() -> tuple[int, int]:
    """(records, bytes) read so far in this process."""
    with _lock:
        return _records, _bytes


def reset() -> None:
    global _records, _bytes
    with _lock:
        _records = _bytes = 0


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def progress_line(records: int, nbytes: int, total_bytes: int | None, seconds: float) -> str:
    """``Progress: 96 of 300 MiB read (32%), 314,591 records, 104,658 records/s, all read in
    about 00:00:06`` (without a total, records and rate only)."""
    rate = records / seconds if seconds > 0 else 0.0
    parts = [f"{records:,} records", f"{rate:,.0f} records/s"]
    if total_bytes:
        done = min(nbytes / total_bytes, 1.0)
        parts.insert(0, f"{nbytes / 2**20:,.0f} of {total_bytes / 2**20:,.0f} MiB read "
                        f"({done:.0%})")
        if 0 < done < 1:
            parts.append(f"all read in about {_clock(seconds * (1 - done) / done)}")
    return "Progress: " + ", ".join(parts)


def finishing_line(records: int, read_s: float, seconds: float) -> str:
    """Once the input is read, the rest of the run (the shuffles, gold, the sinks)."""
    return (f"Progress: input read ({records:,} records in {_clock(read_s)}); gold and the "
            f"sinks running, {_clock(seconds)} so far")


class ProgressReporter:
    """A thread printing :func:`progress_line` every ``every_s`` seconds while a batch runs
    in this process (``with ProgressReporter(...):`` around ``pipeline.run()``); silent if
    nothing was read here."""

    def __init__(self, every_s: float, total_bytes: int | None, out=None):
        self._every = every_s
        self._total = total_bytes
        self._out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.lines: list[str] = []

    def __enter__(self):
        reset()
        self._started = time.monotonic()
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return False

    def _loop(self) -> None:
        import sys

        last, read_s = None, None
        while not self._stop.wait(self._every):
            now = time.monotonic() - self._started
            records, nbytes = read()
            if not records and not nbytes:
                continue
            done = (nbytes >= self._total if self._total else (records, nbytes) == last)
            if done and read_s is None:
                read_s = now if self._total else now - self._every
            line = (finishing_line(records, read_s, now) if read_s is not None
                    else progress_line(records, nbytes, self._total, now))
            last = (records, nbytes)
            self.lines.append(line)
            print(line, file=self._out or sys.stdout, flush=True)
