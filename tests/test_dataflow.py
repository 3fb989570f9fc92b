"""Dataflow jobs built offline: ``--dry_run=True`` with a fake project, a region and a
gs:// temp location builds the job the DataflowRunner would submit, with no credentials
and no network. The commands are those of the README and the Makefile's dataflow-*
targets."""
from __future__ import annotations

import apache_beam
import pytest
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipelines.cli import main
from beam_pipelines.options import ServerMetricsOptions, WebLogsOptions, parse_options

DATAFLOW = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "fake-project",
            "--region", "europe-west1", "--temp_location", "gs://fake-bucket/tmp",
            "--staging_location", "gs://fake-bucket/staging",
            "--sink", "bigquery", "--setup_file", "./setup.py"]
JOBS = {
    "metrics": (["--input", "gs://fake-bucket/metrics/*.jsonl"], ServerMetricsOptions),
    "metrics-streaming": (["--streaming", "--subscription",
                           "projects/fake-project/subscriptions/server-metrics"],
                          ServerMetricsOptions),
    "logs": (["--input", "gs://fake-bucket/logs/*.log"], WebLogsOptions),
    "logs-streaming": (["--streaming", "--subscription",
                        "projects/fake-project/subscriptions/web-logs"], WebLogsOptions),
}


def _build(name: str):
    import os

    from beam_pipelines import server_metrics, web_logs

    args, ours = JOBS[name]
    assert os.path.exists("setup.py"), "run from the repository root, as make does"
    module = web_logs if name.startswith("logs") else server_metrics
    outcome = module.run(parse_options(DATAFLOW + args, ours))
    assert outcome["dry_run"]
    return outcome["result"].job


@pytest.mark.parametrize("name", list(JOBS))
def test_each_pipeline_builds_a_valid_dataflow_job(name):
    job = _build(name)
    streaming = name.endswith("streaming")
    # JOB_TYPE_BATCH = 1, JOB_TYPE_STREAMING = 2
    assert job.proto.type == (2 if streaming else 1)
    options = job.options.get_all_options()
    assert options["project"] == "fake-project" and options["region"] == "europe-west1"
    if streaming:
        assert options["enable_streaming_engine"] is True
    names = [t.unique_name for t in job.proto_pipeline.components.transforms.values()]
    prefix = "WebLogs" if name.startswith("logs") else "ServerMetrics"
    for layer in ("Bronze", "Silver", "Gold"):
        assert any(n.startswith(f"{prefix}/{layer}") for n in names), (layer, names[:20])
    assert any(n.startswith("BigQueryDeadLetters") for n in names)
    images = {beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
              for e in job.proto_pipeline.components.environments.values()
              if e.urn == "beam:env:docker:v1"}
    assert images and all(i.endswith(f":{apache_beam.__version__}") for i in images)
    if streaming:
        reads = [t for t in job.proto_pipeline.components.transforms.values()
                 if "ReadFromPubSub" in t.unique_name]
        assert reads, "no Pub/Sub read"


def test_the_pubsub_read_deduplicates_by_event_id_on_dataflow():
    from apache_beam.pipeline import PipelineVisitor

    from beam_pipelines import live_sources

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
])
def test_preflight_reports_what_would_fail_late_in_one_line(argv, problem, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1
