"""The BigQuery warehouse offline: names, the sink's configuration, rejected rows, the SQL
files against the schema declaration, the scheduled queries' dry run, Looker links."""
from __future__ import annotations

import json
import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.bigquery import admin, scheduled
from beam_pipelines.bigquery.sink import (
    FILE_LOADS,
    STORAGE_WRITE_API,
    STREAMING_INSERTS,
    RejectedRowFn,
    WriteBigQueryTable,
    json_encoded_fields,
    to_bigquery_row,
    write_tables_to_bigquery,
)
from beam_pipelines.bigquery.warehouse import Warehouse, check_dataset, check_project
from beam_pipelines.cli import main
from beam_pipelines.errors import UserError
from beam_pipelines.sql_files import reporting_view_files
from schemas.dead_letter import DEAD_LETTERS, REASONS
from schemas.server_metrics import HOURLY_SERVER_METRICS, SERVER_METRICS_SILVER
from tests.conftest import NOW, test_pipeline


# ---- names ------------------------------------------------------------------------------
@pytest.mark.parametrize("project", ["my-project", "acme-telemetry-prod", "example.com:proj-1"])
def test_valid_projects(project):
    assert check_project(project) == project


@pytest.mark.parametrize("project", ["", "My-Project", "ab", "1project", "proj_ect",
                                     "proj-", "p" * 31, "proj;drop", "my-project\n"])
def test_invalid_projects_are_one_clear_error(project):
    with pytest.raises(UserError, match="project"):
        check_project(project)


@pytest.mark.parametrize("name", ["bad-name", "with space", "semi;colon", "", "x" * 1025,
                                  "back`tick", "telemetry\n"])
def test_invalid_dataset_names(name):
    with pytest.raises(UserError, match="not a BigQuery dataset name"):
        check_dataset(name)


def test_one_dataset_per_layer_and_qualified_ids():
    w = Warehouse("my-project", "telemetry")
    assert (w.table_spec(SERVER_METRICS_SILVER)
            == "my-project:telemetry_silver.server_metrics_silver")
    assert w.table_id(DEAD_LETTERS) == "my-project.telemetry_ops.dead_letters"
    assert w.identifiers()["gold"] == "my-project.telemetry_gold"
    with pytest.raises(UserError, match="--bq-dataset-prefix"):
        Warehouse("my-project", "tele-metry")
    with pytest.raises(UserError, match="--bq-location"):
        Warehouse("my-project", "t", "US; DROP")


def test_a_bad_prefix_on_the_command_line_is_one_line(capsys, tmp_path):
    code = main(["--sink", "bigquery", "--bq-project", "my-project", "--bq-dataset-prefix",
                 "bad-prefix", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "bad-prefix" in err and "Traceback" not in err


def test_file_loads_outside_the_emulator_needs_a_cloud_storage_temp_location(capsys, tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    code = main(["--sink", "bigquery", "--bq-project", "my-project", "--output-dir",
                 str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--temp_location gs://" in err


def test_no_credentials_fails_fast_with_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login either
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    code = main(["--sink", "bigquery", "--bq-project", "my-project", "--bq-write-method",
                 "STREAMING_INSERTS", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "credentials" in err and err.count("\n") == 1


# ---- the sink's configuration ------------------------------------------------------------
@pytest.mark.parametrize("method", [FILE_LOADS, STREAMING_INSERTS, STORAGE_WRITE_API])
def test_write_is_configured_from_the_schema_declaration(method):
    w = Warehouse("my-project", "telemetry")
    write = WriteBigQueryTable(w, HOURLY_SERVER_METRICS, method, "server_metrics",
                               temp_location="gs://bucket/tmp").write_transform()
    assert write.method == method
    assert write.table_reference.projectId == "my-project"
    assert write.table_reference.datasetId == "telemetry_gold"
    assert write.table_reference.tableId == "hourly_server_metrics"
    fields = write.schema["fields"]
    assert [f["name"] for f in fields] == list(HOURLY_SERVER_METRICS.names)
    assert {f["name"]: f["mode"] for f in fields}["server_id"] == "REQUIRED"
    assert write.additional_bq_parameters == {
        "timePartitioning": {"type": "DAY", "field": "metric_date"},
        "clustering": {"fields": ["server_id", "location"]}}
    assert write.create_disposition == "CREATE_IF_NEEDED"
    assert write.write_disposition == "WRITE_APPEND"


@pytest.mark.parametrize("method, streaming_frequency", [
    (FILE_LOADS, 60), (STORAGE_WRITE_API, 5), (STREAMING_INSERTS, None)])
def test_the_run_s_mode_decides_how_often_a_streaming_write_commits(method,
                                                                    streaming_frequency):
    from transforms.windowing import BATCH, Streaming

    w = Warehouse("my-project", "telemetry")

    def frequency(mode):
        return WriteBigQueryTable(w, HOURLY_SERVER_METRICS, method, "server_metrics", mode,
                                  "gs://bucket/tmp").write_transform().triggering_frequency

    assert frequency(BATCH) is None
    assert frequency(Streaming()) == streaming_frequency


def test_rows_become_bigquery_json():
    row = {"timestamp": NOW, "metric_date": NOW.date(), "cpu_usage": 1.5, "server_id": "a"}
    temporal = json_encoded_fields(SERVER_METRICS_SILVER)
    assert temporal == ("timestamp", "ingest_timestamp", "metric_date")
    assert json.loads(json.dumps(to_bigquery_row(row, temporal))) == {
        "timestamp": "2026-01-06T12:00:00+00:00", "metric_date": "2026-01-06",
        "cpu_usage": 1.5, "server_id": "a"}
    # bytes (a visitor sketch) as base64, as BigQuery's JSON takes BYTES
    assert to_bigquery_row({"visitor_sketch": b"\x01\x02\xff", "n": 1},
                           ("visitor_sketch",)) == {"visitor_sketch": "AQL/", "n": 1}


def test_a_rejected_row_becomes_a_dead_letter_with_the_row_and_the_errors():
    fn = RejectedRowFn("server_metrics", "server_metrics_silver")
    fn.setup()
    row = {"server_id": "a", "cpu_usage": "abc", "source": "f.jsonl"}
    (letter,) = fn.process(("p:d.server_metrics_silver", row, [
        {"reason": "invalid", "location": "cpu_usage", "message": "Cannot convert 'abc'"}]))
    assert letter["layer"] == "sink" and letter["reason"] == "bigquery_rejected"
    assert "bigquery_rejected" in REASONS
    assert letter["step"] == "WriteBigQuery/server_metrics_silver"
    assert json.loads(letter["payload"]) == row
    assert "cpu_usage: Cannot convert 'abc'" in letter["message"]
    assert letter["source"] == "f.jsonl" and letter["processing_timestamp"] is not None


class _FakeWriteResult:
    def __init__(self, failed):
        self.failed_rows_with_errors = failed


class _FakeWrite(beam.PTransform):
    """Stands in for BigQuery: rejects the rows whose server_id is 'bad'."""

    def expand(self, rows):
        failed = (rows | "Bad" >> beam.Filter(lambda r: r.get("server_id") == "bad")
                  | "Errors" >> beam.Map(
                      lambda r: ("p:d.t", r, [{"reason": "invalid", "message": "no"}])))
        return _FakeWriteResult(failed)


def test_rejected_rows_of_every_table_join_the_dead_letters(monkeypatch):
    monkeypatch.setattr(WriteBigQueryTable, "write_transform", lambda self: _FakeWrite())
    dead_in = {"pipeline": "server_metrics", "layer": "bronze", "step": "Parse",
               "reason": "invalid_json", "message": "m", "payload": "{}", "payload_encoding":
               "utf-8", "source": None, "event_timestamp": None, "processing_timestamp": NOW}
    with test_pipeline() as p:
        tables = {
            "server_metrics_silver": p | "Silver" >> beam.Create(
                [{"server_id": "ok"}, {"server_id": "bad"}]),
            "hourly_server_metrics": p | "Gold" >> beam.Create([{"server_id": "bad"}]),
            "dead_letters": p | "Dead" >> beam.Create([dead_in]),
        }
        dead = write_tables_to_bigquery(
            tables, (SERVER_METRICS_SILVER, HOURLY_SERVER_METRICS, DEAD_LETTERS),
            Warehouse("my-project"), STREAMING_INSERTS, "server_metrics")
        assert_that(dead | beam.Map(lambda r: (r["reason"], r["layer"], r["step"],
                                               json.loads(r["payload"]).get("server_id"))),
                    equal_to([("bigquery_rejected", "sink",
                               "WriteBigQuery/hourly_server_metrics", "bad"),
                              ("bigquery_rejected", "sink",
                               "WriteBigQuery/server_metrics_silver", "bad"),
                              ("invalid_json", "bronze", "Parse", None)]))


# ---- sql/ against the schema declaration --------------------------------------------------
def _insert_columns(sql: str) -> list[str]:
    match = re.search(r"INSERT \((.*?)\) VALUES \((.*?)\)", sql, re.S)
    assert match, "no INSERT (...) VALUES (...)"
    columns = [c.strip().strip("`") for c in match.group(1).split(",")]
    values = [c.strip().strip("`") for c in match.group(2).split(",")]
    assert columns == values
    return columns


@pytest.mark.parametrize("path", scheduled.query_files(), ids=lambda p: p.stem)
def test_every_scheduled_query_writes_every_column_of_its_table(path):
    schema = {s.name: s for s in admin.WAREHOUSE_TABLES}[scheduled.target_table(path)]
    sql = path.read_text()
    assert _insert_columns(sql) == list(schema.names)
    assert "@run_time" in sql
    # bqemulator counts parameters in comments too: comments say run_time, without the @.
    assert not any("@" in line for line in sql.splitlines() if line.lstrip().startswith("--"))
    # Only dataset ids are substituted, and only known ones.
    names = set(re.findall(r"\$\{(\w+)\}", sql))
    assert names <= {"bronze", "silver", "gold", "ops"}
    assert admin.render_sql(sql, Warehouse("my-project").identifiers()).count("${") == 0


def test_every_warehouse_table_but_ingest_and_ops_has_a_scheduled_query():
    from schemas.server_metrics import ANALYTICS_TABLES, INCIDENT_TABLES

    stems = {p.stem for p in scheduled.query_files()}
    gold = {s.name for s in admin.WAREHOUSE_TABLES if s.layer == "gold"}
    # The analytics (sliding windows, a sequential detector in state) and the incidents (a
    # lifecycle in event-time order) are the pipeline's.
    analytics = {s.name for s in ANALYTICS_TABLES + INCIDENT_TABLES}
    assert gold - analytics <= stems and not analytics & stems


def test_an_unknown_dataset_in_sql_is_an_error():
    with pytest.raises(UserError, match="unknown dataset"):
        admin.render_sql("SELECT * FROM `${nope}.t`", Warehouse("my-project").identifiers())


def test_silver_sql_checks_the_declared_ranges():
    from schemas.server_metrics import MEASUREMENT_FIELDS

    sql = (admin.SQL_DIR / "ops" / "server_metrics_checked.sql").read_text()
    for f in MEASUREMENT_FIELDS:
        if f.minimum is not None and f.maximum is not None:
            rule = f"b.{f.name} NOT BETWEEN {f.minimum:.15g} AND {f.maximum:.15g}"
        else:
            rule = f"b.{f.name} < {f.minimum:.15g}"
        assert f"WHEN {rule} THEN '{f.name}'" in sql, f.name
    from transforms.server_metrics.row_silver import SERVER_TYPE_ALIASES

    for alias, canonical in SERVER_TYPE_ALIASES.items():
        assert f"WHEN '{alias}' THEN '{canonical}'" in sql


# ---- scheduled queries, offline --------------------------------------------------------
def test_schedule_dry_run_prints_exactly_the_transfer_configs(capsys, monkeypatch):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    code = bq_main(["schedule", "--project", "my-project", "--dataset-prefix", "acme",
                    "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    plan = json.loads(out)
    assert plan["parent"] == "projects/my-project/locations/us"
    (config,) = plan["transfer_configs"]  # one script: silver, then gold, in order
    assert config["display_name"] == "acme: medallion cycle"
    assert config["data_source_id"] == "scheduled_query"
    assert config["schedule"] == "every 15 minutes"
    query = config["params"]["query"]
    assert "${" not in query and "`my-project.acme_" in query and "@run_time" in query
    starts = [query.index(f"-- {p.stem} ") for p in scheduled.query_files()]
    assert starts == sorted(starts) and len(starts) >= 12
    assert query.index("-- server_metrics_silver ") < query.index("-- server_metrics_minutely ")
    assert query.count("MERGE ") == len(starts)


def test_the_scheduled_sql_never_writes_a_table_the_pipeline_writes():
    """BigQuery refuses a MERGE over rows still in a streaming buffer (~30 minutes): the
    cycle builds only the layers the pipeline leaves out, and its own rejects go to a
    table of their own. Every --bq-layers a pipeline may take is checked."""
    import itertools

    from beam_pipelines.bigquery.warehouse import LAYERS

    choices = [("bronze", *rest) for n in range(3)
               for rest in itertools.combinations(LAYERS[1:], n)]
    built = set()
    for layers in choices:
        if layers == LAYERS:  # nothing left to build: refused, see the next test
            continue
        builds = scheduled.builds_for(",".join(layers))
        assert set(builds) == {"silver", "gold"} - set(layers)
        assert scheduled.conflicts(layers) == [], layers
        built |= set(builds)
    assert built == {"silver", "gold"}
    # The check can fail: the gold queries over a pipeline that writes gold.
    assert "hourly_server_metrics" in scheduled.conflicts(LAYERS, builds=("gold",))
    assert scheduled.target_table(scheduled.query_files(("silver",))[1]) == \
        "scheduled_dead_letters"


@pytest.mark.parametrize("layers,said", [
    ("bronze,silver,gold", "nothing for the scheduled queries to build"),
    ("silver", "with bronze"), ("bronze,platinum", "with bronze")])
def test_scheduling_over_a_pipeline_that_writes_every_layer_is_refused(layers, said, capsys):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["run-scheduled", "--project", "my-project", "--bq-layers", layers]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1


def test_the_cycle_builds_only_what_the_pipeline_leaves_out(capsys, monkeypatch):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    assert bq_main(["schedule", "--project", "my-project", "--dataset-prefix", "acme",
                    "--bq-layers", "bronze,silver", "--dry-run"]) == 0
    (config,) = json.loads(capsys.readouterr().out)["transfer_configs"]
    assert config["display_name"] == "acme: gold cycle"
    query = config["params"]["query"]
    assert "-- server_metrics_silver " not in query and "acme_ops.scheduled_dead" not in query
    assert query.count("MERGE ") == len(scheduled.query_files(("gold",))) >= 10


def test_web_log_silver_is_the_pipelines_even_with_the_sql(capsys, tmp_path):
    """The SQL cannot geolocate or parse user agents: --bq-layers without silver is refused
    for web logs, in one line, before anything runs."""
    assert main(["logs", "--sink", "bigquery", "--bq-project", "my-project",
                 "--bq-layers", "bronze", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "web_logs's silver" in err and "include silver" in err and err.count("\n") == 1


def test_schedule_rejects_a_bad_prefix_before_any_call(capsys):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["schedule", "--project", "my-project", "--dataset-prefix", "a-b",
                    "--dry-run"]) == 2
    assert "a-b" in capsys.readouterr().err


# ---- Looker Studio ----------------------------------------------------------------------
def _query(line: str) -> tuple:
    from urllib.parse import parse_qs, urlparse

    url = urlparse(line[line.index("https://"):])
    query = parse_qs(url.query)
    assert all(len(v) == 1 for v in query.values()), "a parameter given twice"
    return url, {k: v[0] for k, v in query.items()}


def test_looker_per_view_prints_one_linking_api_url_per_report_view(capsys):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["looker", "--project", "my-project", "--dataset-prefix", "acme",
                    "--per-view"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "https://" in line]
    views = [p.stem for p in reporting_view_files()]
    assert len(lines) == len(views)
    for line, view in zip(lines, views, strict=True):
        url, query = _query(line)
        assert url.netloc == "lookerstudio.google.com"
        assert url.path == "/reporting/create"
        assert "c.reportId" not in query
        assert query["ds.ds0.connector"] == "bigQuery"
        assert query["ds.ds0.type"] == "TABLE"
        assert query["ds.ds0.projectId"] == "my-project"
        assert query["ds.ds0.datasetId"] == "acme_reporting"
        assert query["ds.ds0.tableId"] == view


def test_one_looker_report_for_the_whole_warehouse(capsys):
    """One link: the template report, with one data source per reporting view (its alias
    is the view's name), every one on this project's reporting dataset."""
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["looker", "--project", "my-project", "--dataset-prefix", "acme",
                    "--template-report-id", "1a2b3c4d-5e6f-7a8b-9c0d"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "https://" in line]
    assert len(lines) == 1
    url, query = _query(lines[0])
    assert (url.netloc, url.path) == ("lookerstudio.google.com", "/reporting/create")
    assert query["c.reportId"] == "1a2b3c4d-5e6f-7a8b-9c0d"
    assert query["r.reportName"] == "acme: telemetry"
    aliases = {key.split(".")[1] for key in query if key.startswith("ds.")}
    views = {p.stem for p in reporting_view_files()}
    assert aliases == views and len(views) >= 14
    for view in views:
        assert query[f"ds.{view}.connector"] == "bigQuery"
        assert query[f"ds.{view}.type"] == "TABLE"
        assert query[f"ds.{view}.projectId"] == "my-project"
        assert query[f"ds.{view}.datasetId"] == "acme_reporting"
        assert query[f"ds.{view}.tableId"] == view
    # every page of docs/LOOKER.md names views that are data sources of the report
    doc = (admin.SQL_DIR.parent / "docs" / "LOOKER.md").read_text()
    named = set(re.findall(r"`([a-z_]+)`", doc)) & views
    assert named == views, views - named


@pytest.mark.parametrize("argv, message", [
    (["--template-report-id", "no spaces allowed"], "is not a Looker Studio report id"),
    ([], "one of the arguments --template-report-id --per-view is required"),
])
def test_looker_mistakes_are_one_line(argv, message, capsys):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["looker", "--project", "my-project", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


class _FakeTransferClient:
    """Stands in for the Data Transfer API, which has no emulator: records the calls."""

    def __init__(self):
        self.configs = {}
        self.calls = []

    def list_transfer_configs(self, parent):
        self.calls.append(("list", parent))
        return list(self.configs.values())

    def create_transfer_config(self, parent, transfer_config, service_account_name):
        self.calls.append(("create", transfer_config.display_name, service_account_name))
        transfer_config.name = f"{parent}/transferConfigs/{len(self.configs)}"
        self.configs[transfer_config.display_name] = transfer_config

    def update_transfer_config(self, transfer_config, update_mask, service_account_name):
        self.calls.append(("update", transfer_config.name, tuple(update_mask.paths)))
        self.configs[transfer_config.display_name] = transfer_config

    def delete_transfer_config(self, name):
        self.calls.append(("delete", name))
        self.configs = {k: v for k, v in self.configs.items() if v.name != name}


def test_schedule_creates_then_updates_the_same_configs():
    client = _FakeTransferClient()
    w = Warehouse("my-project", "acme", "EU")
    # A project scheduled by an earlier version: one query per file, racing each other.
    from google.cloud import bigquery_datatransfer

    old = bigquery_datatransfer.TransferConfig(display_name="acme: alerts",
                                               name="projects/p/transferConfigs/old")
    client.configs["acme: alerts"] = old
    first = scheduled.schedule(w, client=client, service_account="sq@my-project.iam")
    assert first == ["removed scheduled query 'acme: alerts' (now in the cycle)",
                     "created scheduled query 'acme: medallion cycle' (every 15 minutes)"]
    assert client.calls[0] == ("list", "projects/my-project/locations/eu")
    assert ("delete", "projects/p/transferConfigs/old") in client.calls
    assert list(client.configs) == ["acme: medallion cycle"]
    config = client.configs["acme: medallion cycle"]
    assert config.data_source_id == "scheduled_query"
    assert config.schedule == "every 15 minutes"
    assert "`my-project.acme_gold.hourly_server_metrics`" in config.params["query"]
    assert ("create", "acme: medallion cycle", "sq@my-project.iam") in client.calls
    again = scheduled.schedule(w, client=client, schedule="every 30 minutes")
    assert again == ["updated scheduled query 'acme: medallion cycle' (every 30 minutes)"]
    assert client.configs["acme: medallion cycle"].schedule == "every 30 minutes"
    assert all(c[2] == ("params", "schedule") for c in client.calls if c[0] == "update")


def test_the_warehouse_commands_take_the_names_run_gives_the_same_ideas(capsys, monkeypatch):
    """``--bq-project``, ``--bq-dataset-prefix`` and ``--bq-location`` (what ``run --sink
    bigquery`` calls them) mean in ``bigquery`` what ``--project``, ``--dataset-prefix`` and
    ``--location`` do."""
    from beam_pipelines.bigquery.__main__ import main as bq_main

    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    plans = []
    for argv in (["--project", "my-project", "--dataset-prefix", "acme", "--location", "EU"],
                 ["--bq-project", "my-project", "--bq-dataset-prefix", "acme",
                  "--bq-location", "EU"]):
        assert bq_main(["schedule", *argv, "--dry-run"]) == 0
        plans.append(json.loads(capsys.readouterr().out))
    assert plans[0] == plans[1] and plans[0]["parent"] == "projects/my-project/locations/eu"
