"""Arrow's memory pool: ``python -m run`` names jemalloc before pyarrow loads, and keeps a
pool the user named."""
from __future__ import annotations

import os
import subprocess
import sys

from beam_pipelines.allocator import VARIABLE

# `python -m run --help` as the user starts it; on its way out (the CLI leaves through
# os._exit), whether pyarrow was loaded and which pool Arrow chose.
_RUN_AND_REPORT = """
import os, posix, runpy, sys

def report(code):
    arrow = sys.modules.get("pyarrow")
    print("POOL", arrow is not None, arrow and arrow.default_memory_pool().backend_name)
    sys.stdout.flush()
    posix._exit(code)

os._exit = report
sys.argv = ["run", "--help"]
runpy.run_module("run", run_name="__main__")
"""


def _pool_of_a_run(**env) -> tuple[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != VARIABLE} | env
    done = subprocess.run([sys.executable, "-c", _RUN_AND_REPORT], env=environ,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    _, loaded, pool = done.stdout.strip().splitlines()[-1].split()
    return loaded, pool


def test_a_run_allocates_arrow_buffers_from_jemalloc():
    # pyarrow was loaded during the run, so the pool was chosen before it loaded: Arrow
    # reads the variable only then (a later pa.set_memory_pool leaves IPC and Parquet on
    # the old pool).
    assert _pool_of_a_run() == ("True", "jemalloc")


def test_a_pool_the_user_named_is_kept():
    assert _pool_of_a_run(**{VARIABLE: "system"}) == ("True", "system")
