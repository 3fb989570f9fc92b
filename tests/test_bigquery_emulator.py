"""The BigQuery warehouse end to end on a real BigQuery emulator (bqemulator).

Beam's ``WriteToBigQuery`` runs in this process against the emulator (streaming inserts
and load jobs), the pipelines' tables land in BigQuery, and the scheduled SQL, run over
the silver rows Beam wrote, gives the same gold numbers as the Beam gold transforms.
"""
from __future__ import annotations

import base64
import math
import os
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from beam_pipelines.bigquery import admin, scheduled
from beam_pipelines.bigquery.warehouse import Warehouse
from beam_pipelines.cli import main
from beam_pipelines.config import load_rules
from schemas.server_metrics import GOLD_TABLES
from schemas.web_logs import WEB_GOLD_TABLES
from transforms.web_logs.row_gold import merged_estimate

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "local-project"
QUANTILES = {f"p{q}_{m}" for q in (50, 95, 99) for m in ("cpu_usage", "memory_usage")}


@pytest.fixture(scope="module")
def emulator_env(bigquery_emulator):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
        yield bigquery_emulator


def _client():
    from beam_pipelines.bigquery.emulator import client

    return client(PROJECT)


def _count(table: str, where: str = "TRUE") -> int:
    sql = f"SELECT COUNT(*) AS n FROM `{PROJECT}.{table}` WHERE {where}"
    return list(_client().query(sql).result())[0]["n"]


def _rows(table_id: str) -> list[dict]:
    return [dict(r) for r in _client().query(f"SELECT * FROM `{table_id}`").result()]


def _lines(path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _run(argv: list[str], capsys) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def metrics_run(emulator_env, tmp_path_factory):
    """The metrics pipeline's sample, and seed 001's USA servers (no memory sensor: their
    health is over CPU alone), into warehouse ``beam_m`` by streaming inserts; then the
    scheduled SQL from beam_m's silver into warehouse ``sql_m``."""
    from beam_pipelines.options import ServerMetricsOptions, parse_options
    from beam_pipelines.server_metrics import generate_sample
    from generators.cli import main as generate

    out = tmp_path_factory.mktemp("metrics")
    # Web servers get a CPU threshold of their own: SQL and Beam must both apply it.
    config = out / "rules.yaml"
    shipped = (ROOT / "configs" / "server_metrics.yaml").read_text()
    high_cpu = "above: 90, severity: warning,   # seeds 000, 001"
    assert high_cpu in shipped
    config.write_text(shipped.replace(high_cpu, "above: 90, severity: warning, "
                                                "by_type: {web: 60},"))
    beam_w, sql_w = Warehouse(PROJECT, "beam_m"), Warehouse(PROJECT, "sql_m")
    admin.setup(beam_w, load_rules(config))
    admin.setup(sql_w, load_rules(config))
    sample = generate_sample(str(out), parse_options(
        ["--sample-servers", "4", "--sample-duration", "2h"]).view_as(ServerMetricsOptions))
    assert generate(["regional", "--servers", "3", "--duration", "2h", "--malformed-rate",
                     "0", "--output-dir", str(out / "regional")]) == 0
    inputs = [Path(sample), out / "regional" / "usa.jsonl"]
    code = main(["metrics", "--sink", "bigquery", "--bq-project", PROJECT,
                 "--bq-dataset-prefix", "beam_m", "--bq-write-method", "STREAMING_INSERTS",
                 "--output-dir", str(out), "--config", str(config)]
                + [a for p in inputs for a in ("--input", str(p))])
    assert code == 0
    return {"beam": beam_w, "sql": sql_w, "input": inputs}


def _gold_by_sql(beam_w: Warehouse, sql_w: Warehouse, silver_table: str) -> datetime:
    """Run the gold queries into ``sql_w`` over ``beam_w``'s silver, at the newest event."""
    newest = list(_client().query(
        f"SELECT MAX(timestamp) AS t FROM `{beam_w.table_id_of(silver_table)}`").result())[0]["t"]
    ids = beam_w.identifiers()
    scheduled.run_now(sql_w, newest, builds=("gold",),
                      identifiers={"silver": ids["silver"], "ops": ids["ops"]})
    return newest


def _assert_same_numbers(schema, beam_rows: list[dict], sql_rows: list[dict],
                         approx_distinct: bool = False) -> None:
    key = schema.key
    beam_by_key = {tuple(r[k] for k in key): r for r in beam_rows}
    sql_by_key = {tuple(r[k] for k in key): r for r in sql_rows}
    assert len(beam_by_key) == len(beam_rows), f"{schema.name}: Beam keys are not unique"
    assert beam_by_key.keys() == sql_by_key.keys(), schema.name
    assert beam_rows, f"{schema.name}: nothing to compare"
    for k, b in beam_by_key.items():
        s = sql_by_key[k]
        for name in schema.names:
            x, y = b[name], s[name]
            where = f"{schema.name} {k} {name}: Beam {x!r}, SQL {y!r}"
            if name == "visitor_sketch":
                # Beam's sketch counts what the row says; the SQL counts exactly and
                # leaves it null (the README says how to merge Beam's).
                # (The emulator keeps a JSON load's base64 text as the bytes themselves,
                # where BigQuery decodes it.)
                try:
                    counted = merged_estimate([x])
                except ValueError:
                    counted = merged_estimate([base64.b64decode(x)])
                assert y is None and counted == b["unique_visitors"], where
            elif name == "unique_visitors" and approx_distinct and y > 300:
                # Beam's HLL sketch is exact up to about 300, then within 1.6 % (one
                # standard error): four of them.
                assert abs(x - y) <= 0.065 * y, where
            elif isinstance(x, float) or isinstance(y, float):
                assert x is not None and y is not None, where
                # Quantiles: the same interpolation over 2-decimal data; sums and means
                # differ only by the order of floating-point additions.
                tol = 1e-6 if name in QUANTILES else 1e-9
                assert math.isclose(x, y, rel_tol=tol, abs_tol=tol), where
            else:
                assert x == y, where


def test_metrics_tables_land_in_bigquery_with_every_record_accounted_for(metrics_run):
    w = metrics_run["beam"]
    records = sum(_lines(p) for p in metrics_run["input"])
    bronze = _count("beam_m_bronze.server_metrics_bronze")
    silver = _count("beam_m_silver.server_metrics_silver")
    dead_bronze = _count("beam_m_ops.dead_letters", "layer = 'bronze'")
    dead_silver = _count("beam_m_ops.dead_letters", "layer = 'silver'")
    assert bronze > 2000 and dead_bronze > 0 and dead_silver > 0
    assert records == bronze + dead_bronze
    assert bronze == silver + dead_silver
    for table in ("server_metrics_minutely", "hourly_server_metrics", "server_health_summary",
                  "location_performance"):
        total = list(_client().query(
            f"SELECT SUM(record_count) AS n FROM `{PROJECT}.beam_m_gold.{table}`").result())
        assert total[0]["n"] == silver, table
    assert _count("beam_m_gold.alerts") > 0
    # The analytics tables land in BigQuery too, their identities intact.
    matrix = list(_client().query(
        f"SELECT SUM(record_count) AS n FROM `{PROJECT}.beam_m_gold.server_alert_matrix`"
    ).result())
    assert matrix[0]["n"] == 3 * silver
    assert _count("beam_m_gold.alert_signals") >= _count("beam_m_gold.alerts")
    assert _count("beam_m_gold.alert_signals", "family = 'ewma'") == \
        _count("beam_m_gold.anomalies")
    assert _count("beam_m_reporting.alert_signals_feed") == _count("beam_m_gold.alert_signals")
    # Incidents: one row per incident in the feed; a batch run ends every one.
    incidents = list(_client().query(
        f"SELECT COUNT(DISTINCT incident_id) AS n FROM `{PROJECT}.beam_m_gold.alert_incidents`"
        " WHERE fired_at IS NOT NULL").result())[0]["n"]
    assert incidents > 0 and _count("beam_m_reporting.incidents_feed") == incidents
    # the view reports were built on when it listed every signal is the incident feed now
    assert _count("beam_m_reporting.alert_events_feed") == incidents
    assert _count("beam_m_reporting.incidents_feed", "status = 'resolved'") == incidents
    assert _count("beam_m_reporting.open_incidents") == 0
    assert _count("beam_m_gold.alert_notifications", "state = 'firing'") == incidents
    # Partitioning and clustering as declared.
    table = _client().get_table(f"{PROJECT}.beam_m_silver.server_metrics_silver")
    assert table.time_partitioning.field == "timestamp"
    assert table.clustering_fields == ["server_id", "location"]
    assert w.prefix == "beam_m"


def test_the_scheduled_sql_computes_the_same_gold_as_beam(metrics_run):
    beam_w, sql_w = metrics_run["beam"], metrics_run["sql"]
    _gold_by_sql(beam_w, sql_w, "server_metrics_silver")
    for schema in GOLD_TABLES:
        _assert_same_numbers(schema, _rows(beam_w.table_id(schema)),
                             _rows(sql_w.table_id(schema)))
    # the web servers' own CPU threshold fired, in both engines alike (compared above)
    alerts = next(t for t in GOLD_TABLES if t.name == "alerts")
    web = [r for r in _rows(beam_w.table_id(alerts)) if r["rule"] == "high_cpu"
           and r["threshold"] == 60]
    assert web and {r["server_type"] for r in web} == {"web"}


def test_the_scheduled_sql_is_idempotent(metrics_run):
    beam_w, sql_w = metrics_run["beam"], metrics_run["sql"]
    _gold_by_sql(beam_w, sql_w, "server_metrics_silver")
    first = {s.name: sorted(map(repr, _rows(sql_w.table_id(s)))) for s in GOLD_TABLES}
    _gold_by_sql(beam_w, sql_w, "server_metrics_silver")
    again = {s.name: sorted(map(repr, _rows(sql_w.table_id(s)))) for s in GOLD_TABLES}
    assert first == again and all(first.values())


def test_the_scheduled_silver_sql_accepts_and_rejects_what_beam_does(metrics_run):
    from collections import Counter

    beam_w, sql_w = metrics_run["beam"], metrics_run["sql"]
    beam_ids = beam_w.identifiers()
    # sql_m's checking view reads beam_m's bronze.
    admin.create_views(_client(), sql_w, identifiers={"bronze": beam_ids["bronze"]})
    newest = list(_client().query(
        f"SELECT MAX(timestamp) AS t FROM `{beam_w.table_id_of('server_metrics_bronze')}`"
    ).result())[0]["t"]
    for _ in range(2):  # idempotent: the second run leaves the same rows
        scheduled.run_now(sql_w, newest, builds=("silver",))
        silver_schema = {s.name: s for s in admin.WAREHOUSE_TABLES}["server_metrics_silver"]
        beam_rows = _rows(beam_w.table_id(silver_schema))
        sql_rows = _rows(sql_w.table_id(silver_schema))
        assert len(sql_rows) == len(beam_rows) > 2000
        key = ("server_id", "timestamp")
        by_key = {tuple(r[k] for k in key): r for r in beam_rows}
        assert {tuple(r[k] for k in key) for r in sql_rows} == by_key.keys()
        for row in sql_rows:
            beam_row = by_key[tuple(row[k] for k in key)]
            assert row == beam_row, {c: (row[c], beam_row[c]) for c in row
                                     if row[c] != beam_row[c]}
        # The SQL's rejects have their own table: it never writes one a pipeline streams to.
        assert _rows(sql_w.table_id_of("dead_letters")) == []
        sql_dead = Counter(r["reason"] for r in _rows(
            sql_w.table_id_of("scheduled_dead_letters")))
        beam_dead = Counter(r["reason"] for r in _rows(beam_w.table_id_of("dead_letters"))
                            if r["layer"] == "silver")
        assert sql_dead == beam_dead and sql_dead["duplicate_event"] > 0
    # Nothing leaves bronze silently.
    assert (len(sql_rows) + sum(sql_dead.values())
            == _count("beam_m_bronze.server_metrics_bronze"))


def test_bronze_only_leaves_silver_and_gold_to_the_scheduled_sql(emulator_env, tmp_path,
                                                                   capsys):
    w = Warehouse(PROJECT, "elt_m")
    admin.setup(w, load_rules())
    out = _run(["metrics", "--sink", "bigquery", "--bq-project", PROJECT,
                "--bq-dataset-prefix", "elt_m", "--bq-layers", "bronze",
                "--bq-write-method", "STREAMING_INSERTS", "--sample-servers", "2",
                "--sample-duration", "30m", "--output-dir", str(tmp_path)], capsys)
    assert "elt_m_bronze, elt_m_ops" in out
    bronze = _count("elt_m_bronze.server_metrics_bronze")
    assert bronze > 300 and _count("elt_m_silver.server_metrics_silver") == 0
    assert _count("elt_m_gold.hourly_server_metrics") == 0
    newest = list(_client().query(
        f"SELECT MAX(timestamp) AS t FROM `{w.table_id_of('server_metrics_bronze')}`"
    ).result())[0]["t"]
    scheduled.run_now(w, newest)  # silver, then gold, as the scheduler would
    silver = _count("elt_m_silver.server_metrics_silver")
    assert _count("elt_m_ops.dead_letters", "layer = 'silver'") == 0  # the pipeline's table
    rejected = _count("elt_m_ops.scheduled_dead_letters")
    assert rejected > 0 and bronze == silver + rejected
    # Operators see both tables' dead letters in one reporting view.
    daily = Counter()
    for r in _rows(f"{PROJECT}.elt_m_reporting.dead_letters_daily"):
        daily[(r["layer"], r["step"])] += r["records"]
    assert daily[("silver", "ScheduledSilver")] == rejected
    assert sum(daily.values()) == rejected + _count("elt_m_ops.dead_letters")
    hourly = list(_client().query(
        f"SELECT SUM(record_count) AS n FROM `{PROJECT}.elt_m_gold.hourly_server_metrics`"
    ).result())[0]["n"]
    assert hourly == silver


def test_reporting_views_read_the_gold_tables(metrics_run):
    w = metrics_run["beam"]
    health = _rows(f"{PROJECT}.{w.dataset('reporting')}.server_health_daily")
    assert len(health) == _count("beam_m_gold.server_health_summary")
    assert all(0 <= r["health_score_points"] <= 100 for r in health)
    # seed 001's servers report no memory: scored all the same, over what they report
    regional = _count("beam_m_gold.server_health_summary",
                      "avg_memory_usage IS NULL AND server_health_score IS NOT NULL")
    assert regional == 1  # the USA's one server of three
    # seed 001's dashboard per region and minute, read from silver
    usa = _rows(f"{PROJECT}.{w.dataset('reporting')}.region_minutely")
    usa = [r for r in usa if r["region"] == "usa"]
    assert sum(r["records"] for r in usa) == _count("beam_m_silver.server_metrics_silver",
                                                   "region = 'usa'") > 0
    assert all(r["records"] == r["temperature_below_40c"] + r["temperature_40_to_60c"]
               + r["temperature_60_to_80c"] + r["temperature_80c_and_above"] for r in usa)
    places = _rows(f"{PROJECT}.{w.dataset('reporting')}.location_daily")
    assert places and all(r["location_point"] for r in places)
    dead = _rows(f"{PROJECT}.{w.dataset('reporting')}.dead_letters_daily")
    assert sum(r["records"] for r in dead) == _count("beam_m_ops.dead_letters")


def test_web_logs_by_load_jobs_and_the_same_gold_by_sql(emulator_env, tmp_path, capsys):
    beam_w, sql_w = Warehouse(PROJECT, "beam_w"), Warehouse(PROJECT, "sql_w")
    admin.setup(beam_w, load_rules())
    admin.setup(sql_w, load_rules())
    out = _run(["logs", "--sink", "bigquery", "--bq-project", PROJECT, "--bq-dataset-prefix",
                "beam_w", "--sample-duration", "15m", "--output-dir", str(tmp_path)], capsys)
    assert "FILE_LOADS" in out
    lines = _lines(tmp_path / "_sample" / "access.log")
    bronze = _count("beam_w_bronze.web_logs_bronze")
    silver = _count("beam_w_silver.web_logs_silver")
    assert lines == bronze + _count("beam_w_ops.dead_letters", "layer = 'bronze'")
    assert bronze == silver + _count("beam_w_ops.dead_letters", "layer = 'silver'")
    _gold_by_sql(beam_w, sql_w, "web_logs_silver")
    for schema in WEB_GOLD_TABLES:
        _assert_same_numbers(schema, _rows(beam_w.table_id(schema)),
                             _rows(sql_w.table_id(schema)), approx_distinct=True)
    # Seed 004's geolocation views keep the unknowns: they add up to silver.
    per_country = _rows(f"{PROJECT}.beam_w_reporting.geo_requests_per_country")
    assert sum(r["requests"] for r in per_country) == silver
    per_city = _rows(f"{PROJECT}.beam_w_reporting.geo_requests_per_city")
    assert sum(r["requests"] for r in per_city) == silver


def test_geolocation_views_count_unlocated_addresses_as_unknown(emulator_env):
    w = Warehouse(PROJECT, "geo_t")
    admin.setup(w, load_rules())
    base = {"client_network": "x", "visitor_id": "v", "timestamp": "2026-01-05T10:00:00Z",
            "event_date": "2026-01-05", "status": 200, "status_class": "2xx"}
    rows = [dict(base, geo_status="located", geo_country_code="DE", geo_country="Germany",
                 geo_city="Berlin", geo_latitude=52.5, geo_longitude=13.4),
            dict(base, geo_status="located", geo_country_code="DE", geo_country="Germany",
                 geo_city="Berlin", geo_latitude=52.7, geo_longitude=13.6),
            dict(base, geo_status="private"), dict(base, geo_status="unknown")]
    assert _client().insert_rows_json(w.table_id_of("web_logs_silver"), rows) == []
    countries = {(r["country"], r["geo_status"]): r["requests"] for r in
                 _rows(f"{PROJECT}.geo_t_reporting.geo_requests_per_country")}
    assert countries == {("Germany", "located"): 2, ("(unknown)", "private"): 1,
                         ("(unknown)", "unknown"): 1}
    cities = {(r["city"], r["geo_status"]): r for r in
              _rows(f"{PROJECT}.geo_t_reporting.geo_requests_per_city")}
    assert cities[("Berlin", "located")]["requests"] == 2
    assert math.isclose(cities[("Berlin", "located")]["latitude"], 52.6)
    assert cities[("(unknown)", "private")]["latitude"] is None


def test_streaming_into_bigquery(emulator_env, tmp_path, capsys):
    w = Warehouse(PROJECT, "stream_m")
    admin.setup(w, load_rules())
    _run(["metrics", "--streaming", "--run-for", "20s", "--sink", "bigquery",
          "--bq-project", PROJECT, "--bq-dataset-prefix", "stream_m", "--sample-servers", "5",
          "--output-dir", str(tmp_path)], capsys)
    bronze = _count("stream_m_bronze.server_metrics_bronze")
    silver = _count("stream_m_silver.server_metrics_silver")
    assert bronze >= 50
    assert bronze == silver + _count("stream_m_ops.dead_letters", "layer = 'silver'")
    # Minute panes: the latest pane per key holds the whole minute.
    latest = list(_client().query(
        "SELECT SUM(record_count) AS n FROM (SELECT record_count FROM "
        f"`{PROJECT}.stream_m_gold.server_metrics_minutely` WHERE TRUE QUALIFY ROW_NUMBER() "
        "OVER (PARTITION BY server_id, window_start ORDER BY pane_index DESC) = 1)"
    ).result())[0]["n"]
    assert latest == silver


def test_setup_is_idempotent_and_adds_new_columns(emulator_env):
    from google.cloud import bigquery

    w = Warehouse(PROJECT, "setup_t")
    first = admin.setup(w, load_rules())
    assert any(line.startswith("created table") for line in first)
    client = _client()
    # An older table without the last column: setup adds it in place.
    client.delete_table(f"{PROJECT}.setup_t_gold.alerts")
    schema = [bigquery.SchemaField.from_api_repr(f) for f in
              __import__("schemas.server_metrics", fromlist=["ALERTS"]).ALERTS
              .bigquery_schema()[:-1]]
    client.create_table(bigquery.Table(f"{PROJECT}.setup_t_gold.alerts", schema=schema))
    again = admin.setup(w, load_rules())
    assert not any(line.startswith("created") for line in again)
    assert f"updated table {PROJECT}.setup_t_gold.alerts: added message" in again
    assert _rows(f"{PROJECT}.setup_t_reporting.alerts_feed") == []  # the view reads message
    # An older web silver whose status was required: setup relaxes it in place.
    from schemas.web_logs import WEB_LOGS_SILVER

    table_id = f"{PROJECT}.setup_t_silver.web_logs_silver"
    client.delete_table(table_id)
    strict = [bigquery.SchemaField.from_api_repr(
        {**f, "mode": "REQUIRED"} if f["name"] == "status" else f)
        for f in WEB_LOGS_SILVER.bigquery_schema()]
    client.create_table(bigquery.Table(table_id, schema=strict))
    assert f"updated table {table_id}: status may be null" in admin.setup(w, load_rules())
    status = [f for f in client.get_table(table_id).schema if f.name == "status"]
    assert status[0].mode == "NULLABLE"
    assert [r["name"] for r in _rows(f"{PROJECT}.setup_t_ops.alert_rules")] != []
    rows = _rows(f"{PROJECT}.setup_t_ops.alert_rules")
    assert sorted(r["name"] for r in rows if r["server_type"] is None) == sorted(
        r.name for r in load_rules().alert_rules)
    assert [(r["name"], r["server_type"], r["above"]) for r in rows
            if r["server_type"] is not None] == [("high_memory", "cache", 97.0)]
    assert admin.missing_datasets(w) == []
    removed = admin.teardown(w)
    assert len(removed) == 5 and all(line.startswith("deleted") for line in removed)
    assert admin.missing_datasets(w) == ["setup_t_bronze", "setup_t_silver", "setup_t_gold",
                                         "setup_t_ops"]


def test_a_missing_dataset_is_one_line_pointing_at_setup(emulator_env, tmp_path, capsys):
    code = main(["--sink", "bigquery", "--bq-project", PROJECT, "--bq-dataset-prefix",
                 "never_set_up", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "never_set_up_bronze" in err and "beam_pipelines.bigquery setup" in err
    assert err.count("\n") == 1


def test_the_operations_cli_against_the_emulator(emulator_env, capsys):
    from beam_pipelines.bigquery.__main__ import main as bq_main

    assert bq_main(["setup", "--project", PROJECT, "--dataset-prefix", "cli_t"]) == 0
    out = capsys.readouterr().out
    assert "created dataset cli_t_reporting" in out and "replaced view" in out
    assert bq_main(["setup", "--project", PROJECT, "--dataset-prefix", "cli_t"]) == 0
    assert "created" not in capsys.readouterr().out
    assert bq_main(["run-scheduled", "--project", PROJECT, "--dataset-prefix", "cli_t",
                    "--run-time", "2026-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out.count("ran ") == len(scheduled.query_files())
    assert bq_main(["schedule", "--project", PROJECT, "--dataset-prefix", "cli_t"]) == 2
    assert "run-scheduled" in capsys.readouterr().err
    assert bq_main(["teardown", "--project", PROJECT, "--dataset-prefix", "cli_t"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert bq_main(["teardown", "--project", PROJECT, "--dataset-prefix", "cli_t",
                    "--yes"]) == 0
    assert os.environ["BIGQUERY_EMULATOR_HOST"].startswith("http://127.0.0.1:")


def test_the_one_command_local_bigquery_demo(capsys):
    from beam_pipelines.ops.demo import main as demo

    assert demo(["bigquery", "--sample-duration", "20m", "--sample-servers", "3"]) == 0
    out = capsys.readouterr().out
    steps = [line.split(":")[0] for line in out.splitlines() if line.startswith("Step ")]
    assert steps == [f"Step {i} of 4" for i in range(1, 5)]  # it says what it is doing
    worst = out.split("Worst servers")[1].split("Top countries")[0].strip().splitlines()[1:]
    assert len(worst) == 3 and all("health" in line for line in worst)
    assert "United States" in out.split("Top countries")[1]


def test_the_rule_tables_are_replaced_each_in_one_statement(emulator_env, monkeypatch):
    """New rules replace the old ones whole, fewer rows and none included."""
    import dataclasses

    # An earlier test's own demo may have pointed this process elsewhere.
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", emulator_env.url)

    w = Warehouse(PROJECT, "rules_m")
    admin.setup(w, load_rules())
    rules = load_rules()
    assert rules.locations and len(rules.alert_rules) > 1
    ops = w.identifiers()["ops"]
    assert _count(f"{ops.split('.', 1)[1]}.locations") == len(rules.locations)
    fewer = dataclasses.replace(rules, alert_rules=rules.alert_rules[:1], locations=())
    done = admin.load_rules(_client(), w, fewer)
    assert all(line.endswith("in one statement") for line in done)
    dataset = ops.split(".", 1)[1]
    assert _count(f"{dataset}.locations") == 0
    assert [r["name"] for r in _rows(f"{ops}.alert_rules")] == [rules.alert_rules[0].name]
    assert _count(f"{dataset}.pipeline_settings") == 1
