"""One measured run in a process of its own, so that its peak memory is its own:
``python -m bench.worker KIND INPUT OUTPUT_DIR [--workers N]`` (``beam``, ``loop``,
``duckdb`` for server metrics; ``logs``, ``logs-rows``, ``logs-duckdb`` for web logs). Prints one
JSON line: the seconds the work took (imports excluded), what it wrote, and for Beam the
elements and records of each stage."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time


def run_beam(path: str, out: str, workers: int = 1) -> dict:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines import runs
    from beam_pipelines.io.sources import ReadRawBatches, resolve_inputs
    from beam_pipelines.preflight import preflight
    from beam_pipelines.server_metrics import LAUNCH

    options = {"runner": "FnApiRunner"}
    if workers > 1:
        options.update(direct_num_workers=workers, direct_running_mode="multi_processing")
    options = PipelineOptions(["--output-dir", out], **options)
    plan = preflight(options, LAUNCH)  # the plan `python -m run` follows, shipped rules
    p = beam.Pipeline(options=options)
    runs.build(p, p | ReadRawBatches(resolve_inputs([path])), LAUNCH, plan)
    result = p.run()
    result.wait_until_finish()
    stages = {}
    if workers == 1:  # multi-process runs do not report counters back
        for c in result.metrics().query(MetricsFilter().with_namespace("batches"))["counters"]:
            stages[c.key.metric.name] = c.committed
    return {"stages": stages}


def run_logs_beam(path: str, out: str, batches: bool = True) -> dict:
    """The web-log medallion, on Arrow batches (what ``python -m run logs`` runs) or on
    rows (the per-record medallion, the naive baseline), with the embedded database."""
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines import runs, web_logs
    from beam_pipelines.io.sources import ReadRawBatches, ReadServerMetricFiles
    from beam_pipelines.preflight import preflight
    from transforms.web_logs.row_medallion import WebLogsMedallion
    from transforms.web_logs.row_silver import PrivacyPolicy

    policy = PrivacyPolicy(salt=b"bench")
    options = PipelineOptions(["--output-dir", out, "--ip-salt", "bench"],
                              runner="FnApiRunner")
    p = beam.Pipeline(options=options)
    if batches:
        plan = preflight(options, web_logs.LAUNCH)  # the embedded database, defaults
        assert plan.settings.policy == policy
        runs.build(p, p | ReadRawBatches({"jsonl": [path]}), web_logs.LAUNCH, plan)
    else:
        tables = (p | ReadServerMetricFiles({"jsonl": [path]})
                  | WebLogsMedallion(policy))
        from beam_pipelines.io.sinks import write_tables

        write_tables(out, tables, web_logs.TABLES, pipeline=web_logs.PIPELINE)
    result = p.run()
    result.wait_until_finish()
    stages = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("batches"))["counters"]}
    return {"stages": stages}


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from
    the process that started it)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("kind", choices=("beam", "loop", "duckdb", "logs", "logs-rows",
                                         "logs-duckdb"))
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    shutil.rmtree(args.output, ignore_errors=True)
    if args.kind in ("logs", "logs-rows"):
        import apache_beam  # noqa: F401 - imports are not the work
        import pyarrow.parquet  # noqa: F401

        import beam_pipelines.web_logs  # noqa: F401

        started = time.perf_counter()
        out = run_logs_beam(args.input, args.output, batches=args.kind == "logs")
    elif args.kind == "logs-duckdb":
        from bench.logs_duckdb import run_logs_duckdb

        started = time.perf_counter()
        out = {"counts": run_logs_duckdb(args.input, args.output)}
    elif args.kind == "beam":
        # Imports are not the work (the references import theirs before the clock too).
        import apache_beam  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        import beam_pipelines.server_metrics  # noqa: F401

        started = time.perf_counter()
        out = run_beam(args.input, args.output, args.workers)
    elif args.kind == "loop":
        from bench.loop import run_loop

        started = time.perf_counter()
        out = {"counts": run_loop(args.input, args.output)}
    else:
        from bench.duckdb_reference import run_duckdb

        started = time.perf_counter()
        out = {"counts": run_duckdb(args.input, args.output)}
    out["seconds"] = time.perf_counter() - started
    out["peak_mib"] = peak_mib()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    from beam_pipelines.allocator import prefer_jemalloc

    prefer_jemalloc()  # what `python -m run` does, before anything loads pyarrow
    sys.exit(main())
