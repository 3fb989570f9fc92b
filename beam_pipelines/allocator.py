"""Arrow's memory pool for the processes that run pipelines, chosen before pyarrow loads.

pyarrow's default pool on Linux is mimalloc, which hands freed pages back to the system
within milliseconds; the next table of a similar size faults them in and zeroes them
again. The batch medallion frees and allocates tables of megabytes all the time: with
jemalloc the 1M-record run spends ~40 % less kernel time (2.3 s), about 9 % less wall
time and ~80 MiB less peak memory (paired runs; README, "Benchmarks").

Arrow reads ``ARROW_DEFAULT_MEMORY_POOL`` once, when it is first loaded, for its C++
default pool, which the IPC, Parquet and compute code use (a later
``pa.set_memory_pool`` sets the default of pyarrow's Python calls only, and measured no
gain): so this module imports nothing, and the entry points call it first. Worker
processes the runner starts inherit the variable; the Dataflow workers' image sets it
(Dockerfile).
"""
from __future__ import annotations

import os
import sys

VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def prefer_jemalloc() -> None:
    """Name jemalloc as Arrow's pool unless a pool is already named (the user's choice
    stands). pyarrow's Windows wheels have no jemalloc: there the default stays."""
    if sys.platform != "win32":
        os.environ.setdefault(VARIABLE, "jemalloc")
