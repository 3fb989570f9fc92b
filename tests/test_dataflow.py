"""Dataflow jobs built offline: ``--dry_run=True`` with a fake project, a region and a
gs:// temp location builds the job the DataflowRunner would submit, with no credentials
and no network. The commands are those of the README and the Makefile's dataflow-*
targets."""
from __future__ import annotations

import apache_beam
import pytest

from beam_pipelines.cli import main
from beam_pipelines.options import ServerMetricsOptions, WebLogsOptions, parse_options

DATAFLOW = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "fake-project",
            "--region", "europe-west1", "--temp_location", "gs://fake-bucket/tmp",
            "--staging_location", "gs://fake-bucket/staging",
            "--sink", "bigquery", "--setup_file", "./setup.py"]


#: The Makefile's dataflow-* target of each job, and what ARGS it is given here.
TARGETS = {
    "metrics": ("dataflow-metrics", ""),
    "metrics-streaming": ("dataflow-metrics-streaming",
                          "--archive gs://fake-bucket/archive "
                          "--alerts-topic projects/fake-project/topics/alerts"),
    "logs": ("dataflow-logs", ""),
    "logs-streaming": ("dataflow-logs-streaming", ""),
}


def _make_command(name: str) -> list[str]:
    """The very command ``make TARGET`` runs (from ``make -n``), as an argv for run.py."""
    import shlex

    target, args = TARGETS[name]
    printed = [line for line in _make_n(target, "PROJECT=fake-project", "BUCKET=fake-bucket",
                                        f"ARGS={args}").splitlines() if " -m run " in line]
    assert len(printed) == 1, printed
    argv = shlex.split(printed[0])
    assert argv[1:3] == ["-m", "run"], printed
    return argv[3:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each job the Makefile's targets submit, built once with --dry_run=True, in a process
    where the ``local`` extra cannot be imported (workers install the package's
    dependencies only): per job, what the checks below read of it."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    assert os.path.exists("setup.py"), "run from the repository root, as make does"
    commands = tmp_path_factory.mktemp("jobs") / "commands.json"
    commands.write_text(json.dumps({name: _make_command(name) for name in TARGETS}))
    proc = subprocess.run([sys.executable, "-c", _LEAN_JOBS, ",".join(LOCAL_IMPORTS.values()),
                           str(commands)], capture_output=True, text=True, timeout=600,
                          cwd=Path.cwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_makefile_target_builds_a_valid_dataflow_job(name, built):
    job = built[name]
    streaming = name.endswith("streaming")
    assert job["type"] == ("JOB_TYPE_STREAMING" if streaming else "JOB_TYPE_BATCH")
    options = job["options"]
    assert options["project"] == "fake-project" and options["region"] == "europe-west1"
    if streaming:
        assert options["enable_streaming_engine"] is True
    names = job["transforms"]
    prefix = "WebLogs" if name.startswith("logs") else "ServerMetrics"
    for layer in ("Bronze", "Silver", "Gold"):
        assert any(n.startswith(f"{prefix}/{layer}") for n in names), (layer, names[:20])
    assert any(n.startswith("BigQueryDeadLetters") for n in names)
    images = set(job["images"])
    assert images and all(i.endswith(f":{apache_beam.__version__}") for i in images)
    if streaming:
        assert any("ReadFromPubSub" in n for n in names), "no Pub/Sub read"
        # the raw archive: a step beside the records, fused with the read
        assert any(n.endswith("ArchiveRaw/WriteArchive") for n in names) == (
            name == "metrics-streaming"), [n for n in names if "Archive" in n]
    if name == "metrics-streaming":  # incident notifications are published on Dataflow too
        assert any(n.startswith("PublishAlerts/Publish") for n in names)
        assert any(n.startswith("ServerMetrics/Gold/Incidents/Track") for n in names)
        assert any(n.startswith("ServerMetrics/Gold/DetectAnomalies") for n in names)
    # Workers read the embedded geolocation database from the staging location (a dry
    # run uploads nothing).
    assert job["staged"] == ([["gs://fake-bucket/staging", False]] if name.startswith("logs")
                             else [])


def test_the_pubsub_read_deduplicates_by_event_id_on_dataflow():
    from apache_beam.pipeline import PipelineVisitor

    from beam_pipelines.io import live_sources

    found = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, apache_beam.io.ReadFromPubSub):
                found.append(node.transform)

        enter_composite_transform = visit_transform

    p = apache_beam.Pipeline()
    p | live_sources.read_pubsub("projects/fake-project/subscriptions/metrics", None, 10.0,
                                 dataflow=True)
    p.visit(Visitor())
    assert len(found) == 1
    source = found[0]._source
    assert source.id_label == live_sources.EVENT_ID_ATTRIBUTE
    assert source.timestamp_attribute == live_sources.EVENT_TIME_ATTRIBUTE
    assert source.full_subscription == "projects/fake-project/subscriptions/metrics"


@pytest.mark.parametrize("argv, problem", [
    (["--runner", "DataflowRunner", "--dry_run=True", "--input", "gs://b/x.jsonl",
      "--sink", "bigquery", "--project", "fake-project", "--temp_location", "gs://b/t"],
     "--region is required"),
    (["--runner", "DataflowRunner", "--dry_run=True", "--input", "gs://b/x.jsonl",
      "--sink", "bigquery", "--project", "fake-project", "--region", "us-central1",
      "--temp_location", "/tmp/local"], "--temp_location must be a gs:// path"),
    (["--runner", "DataflowRunner", "--dry_run=True", "--input", "gs://b/x.jsonl",
      "--project", "fake-project", "--region", "us-central1", "--temp_location", "gs://b/t"],
     "cannot write a local --output-dir"),
    (DATAFLOW, "--input gs://"),
    (DATAFLOW + ["--streaming"], "read a --subscription"),
    (DATAFLOW + ["--streaming", "--subscription", "projects/fake-project/subscriptions/s",
                 "--archive", "archive"], "cannot write a local --archive"),
    (["--runner", "DataflowRunner", "--dry_run=True", "--input", "gs://b/x.jsonl",
      "--output-dir", "gs://b/lake", "--project", "fake-project\n", "--region",
      "us-central1", "--temp_location", "gs://b/t"], "is not a Google Cloud project id"),
    (["--runner", "DataflowRunner", "--dry_run=True", "--input", "gs://b/x.jsonl",
      "--output-dir", "gs://b/lake", "--project", "fake-project", "--region",
      "us-central1\n", "--temp_location", "gs://b/t"], "is not a Google Cloud region"),
])
def test_preflight_reports_what_would_fail_late_in_one_line(argv, problem, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1


# --- the flex template ------------------------------------------------------------------

def test_the_committed_template_metadata_is_the_generated_one():
    import json
    from pathlib import Path

    from beam_pipelines.ops import flex_template

    committed = json.loads(Path("deploy/metadata.json").read_text(encoding="utf-8"))
    assert committed == flex_template.metadata(), "run `make template-metadata`"


def test_template_parameters_are_exactly_the_options_a_dataflow_job_takes():
    import argparse
    import re

    from beam_pipelines.ops import flex_template
    from beam_pipelines.options import add_arguments

    declared = set()
    for cls in (ServerMetricsOptions, WebLogsOptions):
        parser = argparse.ArgumentParser(add_help=False)
        add_arguments(cls, parser)
        declared |= {a.dest for a in parser._actions}
    params = {p["name"]: p for p in flex_template.metadata()["parameters"]}
    # No option missing, none stale, and every exclusion names a real option.
    assert set(flex_template.LOCAL_ONLY) <= declared
    assert set(params) == (declared - set(flex_template.LOCAL_ONLY)) | {
        "pipeline", "streaming", "sdk_container_image"}
    for name, param in params.items():
        assert param["helpText"] and param["label"], name
        assert len(param["regexes"]) == 1 and re.compile(param["regexes"][0]), name
    ok = {"input": "gs://my-bucket/metrics/*.jsonl,gs://my-bucket/more/*.csv", "subscription":
          "projects/my-project/subscriptions/server-metrics", "geo_database":
          "gs://my-bucket/geo/city.mmdb", "allowed_lateness": "5m", "early_firing": "10s",
          "windows": "1m,1h", "bq_layers": "bronze,silver", "bq_project": "my-project",
          "trusted_proxies": "10.0.0.0/8,fd00::/8", "log_format": "nginx_main",
          "bq_location": "europe-west1", "sink": "bigquery", "top_paths": "20",
          "ipv4_prefix": "24", "output_dir": "gs://my-bucket/lake", "config": "configs/x.yaml",
          "sdk_container_image": "europe-west1-docker.pkg.dev/p/r/telemetry-medallion:v1",
          "pipeline": "logs", "streaming": "true"}
    bad = {"input": "/local/file.jsonl", "subscription": "projects/p/topics/t",
           "allowed_lateness": "soon", "windows": "1m;1h", "bq_layers": "platinum",
           "trusted_proxies": "10.0.0.0/8; rm -rf", "log_format": "apache",
           "sink": "s3", "top_paths": "0", "pipeline": "both", "streaming": "yes",
           "output_dir": "lakehouse"}
    for name, value in ok.items():
        assert re.match(params[name]["regexes"][0], value), (name, value)
    for name, value in bad.items():
        assert not re.match(params[name]["regexes"][0], value), (name, value)


def test_the_launcher_arguments_become_a_dataflow_run():
    from beam_pipelines.ops.flex_template import SETUP_FILE, launch_argv

    argv = launch_argv(["--pipeline=logs", "--streaming=true",
                        "--subscription=projects/p/subscriptions/s", "--project=p"])
    assert argv[:2] == ["logs", "--streaming"]
    assert "--runner=DataflowRunner" in argv and "--sink=bigquery" in argv
    assert f"--setup_file={SETUP_FILE}" in argv and argv[-1] == "--no-wait"
    argv = launch_argv(["--pipeline=metrics", "--streaming=false", "--input=gs://b/x",
                        "--sdk_container_image=r/i:1", "--sink=lakehouse"])
    assert argv[0] == "metrics" and "--streaming" not in argv
    assert not any(a.startswith("--setup_file") for a in argv)
    assert "--sink=lakehouse" in argv and "--sink=bigquery" not in argv


def test_a_template_launch_builds_the_job(capsys):
    from beam_pipelines.ops import flex_template

    launch = ["--pipeline=logs", "--streaming=true",
              "--subscription=projects/fake-project/subscriptions/web-logs"]
    assert flex_template.main(launch + [
        "--dry_run=True", "--project=fake-project", "--region=europe-west1",
        "--temp_location=gs://fake-bucket/tmp"]) == 0
    assert "Dry run" in capsys.readouterr().out


def test_the_image_runs_the_pinned_beam_and_python():
    import re
    import sys
    from pathlib import Path

    dockerfile = Path("Dockerfile").read_text(encoding="utf-8")
    setup = Path("pyproject.toml").read_text(encoding="utf-8")
    beam = re.search(r'"apache-beam\[gcp\]==([0-9.]+)"', setup).group(1)
    assert beam == apache_beam.__version__
    sdk = re.search(r"^FROM apache/beam_python(\d)\.(\d+)_sdk:([0-9.]+)$", dockerfile, re.M)
    assert sdk and sdk.group(3) == beam
    assert (int(sdk.group(1)), int(sdk.group(2))) == sys.version_info[:2]
    launcher = re.search(r"^ARG LAUNCHER_IMAGE=\S+/python(\d)(\d+)-template-launcher-base"
                         r":(\S+)$", dockerfile, re.M)
    assert launcher and launcher.group(1, 2) == sdk.group(1, 2)
    assert launcher.group(3) != "latest" and "release" in launcher.group(3)  # a pinned tag
    entry = re.search(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/(\S+)$", dockerfile,
                      re.M).group(1)
    assert Path(entry).exists() and entry == "beam_pipelines/ops/flex_template.py"
    for package in ("beam_pipelines", "configs", "generators", "schemas", "transforms"):
        assert f"COPY {package} {package}" in dockerfile
    assert "pip check" in dockerfile and "--no-deps-pins" in dockerfile
    assert "COPY pyproject.toml setup.py" in dockerfile  # the shim reads the pins there
    assert "RUN pip install --no-cache-dir . " in dockerfile  # the worker install, lean
    # The workers' Arrow pool is the one `python -m run` names (beam_pipelines/allocator).
    assert re.search(r"^ENV ARROW_DEFAULT_MEMORY_POOL=jemalloc$", dockerfile, re.M)


# --- the embedded geolocation database on Dataflow ---------------------------------------

def test_the_workers_database_is_the_embedded_one_unless_one_is_given():
    from beam_pipelines import web_logs

    name = web_logs.embedded_database_name()
    assert name.startswith("dbip-city-lite-2023.") and name.endswith(".mmdb")
    local = parse_options(["--input", "x.log"], WebLogsOptions)
    assert web_logs._workers_database(local, local.view_as(WebLogsOptions)) is None
    given = parse_options(DATAFLOW + ["--geo-database", "gs://b/mine.mmdb"], WebLogsOptions)
    assert web_logs._workers_database(given, given.view_as(WebLogsOptions)) == \
        "gs://b/mine.mmdb"


def test_the_embedded_database_is_uploaded_once(tmp_path, monkeypatch):
    """The same Beam FileSystems call as gs://, through a registered scheme."""
    import os

    from apache_beam.io.localfilesystem import LocalFileSystem

    from beam_pipelines import web_logs
    from transforms.geo import default_database

    created = []

    class StagingFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "stagingtest"

        def create(self, path, *args, **kwargs):
            created.append(path)
            local = path.removeprefix("stagingtest://")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            return super().create(local, *args, **kwargs)

        def exists(self, path):
            return super().exists(path.removeprefix("stagingtest://"))

    base = f"stagingtest://{tmp_path}/staging"
    first = web_logs.stage_embedded_database(base)
    again = web_logs.stage_embedded_database(base)
    assert first == again == f"{base}/geo/{web_logs.embedded_database_name()}"
    assert created == [first]
    assert os.path.getsize(first.removeprefix("stagingtest://")) == \
        os.path.getsize(default_database())


def _make_n(target: str, *variables: str) -> str:
    """What ``make TARGET`` would run, whether or not this runs under make itself."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS",
                                                             "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-n", target, *variables],
                          capture_output=True, text=True, check=True, env=env).stdout


def test_the_template_targets_register_the_metadata_and_launch_with_the_image():
    def make_n(target, *extra):
        return _make_n(target, "PROJECT=p", "BUCKET=b", "TAG=v1", *extra)

    image = "europe-west1-docker.pkg.dev/p/telemetry/telemetry-medallion:v1"
    built = make_n("template")
    assert f"gcloud builds submit --project p --tag {image} ." in built
    assert "--metadata-file deploy/metadata.json" in built and "--sdk-language PYTHON" in built
    launched = make_n("template-run", "PIPELINE=logs", "PARAMS=streaming=true")
    assert f"pipeline=logs,sdk_container_image={image}" in launched
    assert "--template-file-gcs-location gs://b/templates/telemetry-medallion.json" in launched


def test_a_submitted_job_prints_its_id_and_console_link(capsys):
    """Beam tells the job's console link only at INFO level: the run prints it always (the
    job itself is Dataflow's, faked here as the submission's result)."""
    from beam_pipelines.runs import announce_dataflow_job

    class Submitted:
        def job_id(self):
            return "2026-12-06_01_02_03-123"

    options = parse_options(DATAFLOW + ["--input", "gs://fake-bucket/m/*.jsonl"],
                            ServerMetricsOptions)
    url = announce_dataflow_job(Submitted(), options)
    assert url == ("https://console.cloud.google.com/dataflow/jobs/europe-west1/"
                   "2026-12-06_01_02_03-123?project=fake-project")
    assert capsys.readouterr().out == f"Dataflow job 2026-12-06_01_02_03-123: {url}\n"
    assert announce_dataflow_job(object(), options) is None  # a dry run has no job


@pytest.mark.parametrize("argv, level", [([], "WARNING"), (["-v"], "INFO"),
                                         (["--log-level", "debug"], "DEBUG"),
                                         (["--log-level=error"], "ERROR")])
def test_the_log_level_is_an_option(argv, level, monkeypatch):
    import logging

    from beam_pipelines import cli, runs

    seen = []
    monkeypatch.setattr(runs, "launch", lambda options, kind: seen.append(
        logging.getLogger().level) or {"catalog": None, "dry_run": True})
    before = logging.getLogger().level
    try:
        assert cli.main(["metrics", *argv]) == 0
    finally:
        logging.getLogger().setLevel(before)
    assert seen == [getattr(logging, level)]


#: The import name of each distribution of the ``local`` extra (pyproject.toml).
LOCAL_IMPORTS = {"build": "build", "duckdb": "duckdb", "faker": "faker",
                 "google-cloud-bigquery-datatransfer": "google.cloud.bigquery_datatransfer",
                 "psycopg": "psycopg", "confluent-kafka": "confluent_kafka",
                 "psutil": "psutil", "tqdm": "tqdm"}
_LEAN_JOBS = """
import json
import sys

BLOCKED = tuple(sys.argv[1].split(","))


class LocalOnly:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} belongs to the local extra, not to a worker")


sys.meta_path.insert(0, LocalOnly())
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipelines import web_logs
from beam_pipelines.kinds import KINDS
from beam_pipelines.options import parse_options

staged = []
real = web_logs.stage_embedded_database
web_logs.stage_embedded_database = (
    lambda base, upload=True: staged.append((base, upload)) or real(base, upload))
jobs = {}
for name, (kind, *argv) in json.load(open(sys.argv[2])).items():
    staged.clear()
    outcome = KINDS[kind].run(parse_options(argv + ["--dry_run=True"], KINDS[kind].options))
    assert outcome["dry_run"], name
    job = outcome["result"].job
    components = job.proto_pipeline.components
    options = job.options.get_all_options()
    jobs[name] = {
        "type": job.proto.type.name, "staged": list(staged),
        "options": {k: options[k] for k in ("project", "region", "enable_streaming_engine")},
        "transforms": [t.unique_name for t in components.transforms.values()],
        "images": [beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
                   for e in components.environments.values()
                   if e.urn == "beam:env:docker:v1"]}
print(json.dumps(jobs, default=str))
"""


def test_workers_install_the_dependencies_alone_and_the_jobs_build_with_them(built):
    """Workers install the package's dependencies only (pyproject.toml): every Dataflow
    job is built (the fixture) with the local extra unimportable, so nothing on the job's
    path (the pipeline modules, the transforms, the worker-path I/O) needs it."""
    import re

    import tomllib

    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    local = {re.split(r"[\[=<>]", pin)[0] for pin in project["optional-dependencies"]["local"]}
    assert local == set(LOCAL_IMPORTS), "map each local distribution to its import name"
    worker = {re.split(r"[\[=<>]", pin)[0] for pin in project["dependencies"]}
    assert not worker & local and "apache-beam" in worker
    assert set(built) == set(TARGETS)
