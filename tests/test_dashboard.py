"""The dashboard: its figures against the tables (lakehouse and BigQuery emulator alike),
its command's errors, and every page in a real browser (Debian's Chromium).

The browser tests are marked ``browser`` so a quick loop can leave them out
(``pytest -m 'not browser'``); ``make test`` runs them, and a missing Chromium fails.
"""
from __future__ import annotations

import datetime as dt
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.dashboard import basemap
from beam_pipelines.dashboard import queries as q
from beam_pipelines.dashboard.sources import LakehouseSource, reporting_view_files

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "local-project"


def run(*args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    return proc


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory) -> Path:
    """Both pipelines' samples in one lakehouse, as after `make run` and a web-log run."""
    out = tmp_path_factory.mktemp("lakehouse")
    metrics = run("-m", "run", "--output-dir", str(out), "--sample-servers", "6",
                  "--sample-duration", "2h", "--sample-interval", "10s", "--no-summary")
    assert metrics.returncode == 0, metrics.stderr[-2000:]
    logs = run("-m", "run", "logs", "--output-dir", str(out), "--sample-duration", "5m",
               "--no-summary")
    assert logs.returncode == 0, logs.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def source(lakehouse):
    src = LakehouseSource(str(lakehouse))
    yield src
    src.close()


def _catalog(lakehouse: Path, sql: str):
    with connect_catalog(lakehouse) as con:
        return con.execute(sql).fetchall()


# --- the figures -----------------------------------------------------------------------

def test_every_reporting_view_of_the_looker_report_exists_locally(source):
    assert not source.missing_views
    for path in reporting_view_files():
        source.query(f"SELECT COUNT(*) AS n FROM `${{reporting}}.{path.stem}`")


def test_top_countries_agree_with_the_silver_rows(source, lakehouse):
    """The hourly gold behind the view and a count of silver rows: the same ranking."""
    first, last = q.web_days(source)
    top = q.top_countries(source, first, last, limit=5)
    expected = _catalog(lakehouse, "SELECT COALESCE(geo_country, '(unknown)'), COUNT(*) AS n "
                                   "FROM web_logs_silver GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5")
    assert list(top.itertuples(index=False, name=None)) == expected


def test_fleet_filters_keep_only_what_they_name(source):
    first, last = q.fleet_days(source)
    everything = q.server_health(source, q.FleetFilter(first, last))
    kind = sorted(everything["server_type"].unique())[0]
    some = q.server_health(source, q.FleetFilter(first, last, server_types=(kind,)))
    assert set(some["server_type"]) == {kind}
    assert len(some) == (everything["server_type"] == kind).sum() < len(everything)
    assert list(some["health_score"]) == sorted(some["health_score"])  # least healthy first
    nothing = q.server_health(source, q.FleetFilter(last + dt.timedelta(days=1),
                                                    last + dt.timedelta(days=2)))
    assert nothing.empty


def test_the_region_filter_keeps_the_servers_located_in_a_region():
    frame = pd.DataFrame({"server_id": ["a", "b", "c"], "server_type": [None, None, "web"],
                          "location": ["india", "germany", "us-east"]})
    day = dt.date(2026, 1, 5)
    assert list(q.FleetFilter(day, day, regions=("india",)).apply(frame)["server_id"]) == \
        ["a"]
    assert list(q.FleetFilter(day, day, regions=("india", "germany"), server_types=("web",))
                .apply(frame)["server_id"]) == []
    assert len(q.FleetFilter(day, day).apply(frame)) == 3


def test_the_region_choices_are_the_regions_in_silver(source):
    assert q.fleet_choices(source)["region"] == []  # the sample has no regional source


def test_every_location_on_the_map_has_a_point_and_its_servers(source, lakehouse):
    first, last = q.fleet_days(source)
    places = q.locations(source, q.FleetFilter(first, last))
    servers = dict(_catalog(lakehouse, "SELECT location, COUNT(DISTINCT server_id) "
                                       "FROM server_metrics_silver GROUP BY 1"))
    assert dict(zip(places["location"], places["servers"], strict=True)) == servers
    assert places["latitude"].between(-90, 90).all()
    assert places["longitude"].between(-180, 180).all()
    assert places["health_score"].notna().all()


def test_a_servers_timeline_has_its_band_and_windows(source):
    server = q.servers_with_signals(source)[0]
    metric = q.anomaly_metrics(source, server)[0]
    band = q.ewma_band(source, server, metric)
    assert not band.empty
    assert (band["low"] <= band["expected"]).all() and (band["expected"] <= band["high"]).all()
    windows = q.server_windows(source, server)
    assert (windows["window_start"] < windows["window_end"]).all()
    assert windows["signal"].str.match(r"^(matrix|threshold): ").all()


def test_incidents_per_hour_count_each_family_of_an_incident():
    feed = pd.DataFrame({"started_at": pd.to_datetime(["2026-01-05 10:05", "2026-01-05 10:50",
                                                       "2026-01-05 11:00"], utc=True),
                         "families": ["ewma,threshold", "ewma", "matrix"],
                         "severity": ["warning", "warning", "critical"]})
    counts = q.incidents_per_hour(feed)
    got = {(r.hour.hour, r.family, r.severity): r.incidents for r in counts.itertuples()}
    assert got == {(10, "ewma", "warning"): 2, (10, "threshold", "warning"): 1,
                   (11, "matrix", "critical"): 1}


def test_the_status_treemap_tiles_its_area_without_overlap():
    codes = pd.DataFrame({"status_class": ["2xx", "2xx", "4xx", "4xx", "5xx"],
                          "status": ["200", "204", "404", "403", "500"],
                          "requests": [700, 50, 150, 60, 40]})
    tiles = q.treemap(codes, "requests", "status", "status_class", 100, 60)
    areas = (tiles["x2"] - tiles["x"]) * (tiles["y2"] - tiles["y"])
    assert areas.sum() == pytest.approx(6000)
    assert list(areas / areas.sum()) == pytest.approx(list(tiles["requests"] / 1000))
    boxes = list(tiles[["x", "x2", "y", "y2"]].itertuples(index=False))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = (min(a.x2, b.x2) - max(a.x, b.x)) * (min(a.y2, b.y2) - max(a.y, b.y))
            assert overlap <= 1e-9 or min(a.x2, b.x2) <= max(a.x, b.x) \
                or min(a.y2, b.y2) <= max(a.y, b.y)


def test_the_accounting_check_holds_and_can_fail(source, lakehouse, tmp_path):
    books = q.accounting(source).set_index("pipeline")
    assert books.loc["server_metrics", "silver_identity_holds"]
    assert books.loc["web_logs", "silver_identity_holds"]
    assert list(books["gold_mismatches"]) == ["", ""]
    assert books.loc["server_metrics", "silver_dead_letters"] > 0  # duplicates, ranges
    # A lakehouse that lost the silver dead letters: the check says so.
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(lakehouse, broken)
    with connect_catalog(broken, read_only=False) as con:
        con.execute("CREATE OR REPLACE VIEW dead_letters AS SELECT * FROM read_parquet("
                    f"'{broken}/dead_letter/dead_letters/**/*.parquet', hive_partitioning = false) "
                    "WHERE layer <> 'silver'")
        # and a gold table that lost a server-day
        con.execute("CREATE OR REPLACE VIEW server_health_summary AS SELECT * FROM "
                    f"read_parquet('{broken}/gold/server_health_summary/**/*.parquet', "
                    "hive_partitioning = false) "
                    "QUALIFY row_number() OVER (ORDER BY server_id) > 1")
    books = q.accounting(LakehouseSource(str(broken))).set_index("pipeline")
    assert not books.loc["server_metrics", "silver_identity_holds"]
    assert books.loc["server_metrics", "gold_mismatches"].startswith("server_health_daily ")
    assert books.loc["web_logs", "gold_mismatches"] == ""


def test_dead_letter_samples_carry_the_payload(source):
    daily = q.dead_letters_daily(source)
    reason = daily.sort_values("records").iloc[-1]["reason"]
    samples = q.dead_letter_samples(source, reason, limit=5)
    assert len(samples) == 5 and (samples["reason"] == reason).all()
    assert samples["payload"].str.len().gt(0).all()


def test_the_live_window_ends_at_the_newest_record(source, lakehouse):
    window = q.live_window(source, minutes=10)
    (newest,) = _catalog(lakehouse, "SELECT MAX(timestamp) FROM server_metrics_silver")[0]
    assert window["minute"].max() == pd.Timestamp(newest).floor("min")
    assert window["minute"].min() >= pd.Timestamp(newest) - pd.Timedelta(minutes=11)
    per_region = q.live_per_region(window)
    assert per_region["records"].sum() == len(window)


def test_freshness_says_how_long_ago_each_pipeline_last_ingested(source, lakehouse):
    fresh = q.freshness(source).set_index("pipeline")
    assert set(fresh.index) == {"server_metrics", "web_logs"}
    (newest,) = _catalog(lakehouse, "SELECT MAX(ingest_timestamp) FROM "
                                    "server_metrics_silver")[0]
    lag = fresh.loc["server_metrics", "seconds_since_newest_ingest"]
    expected = (pd.Timestamp.now(tz="UTC") - pd.Timestamp(newest)).total_seconds()
    assert 0 <= lag <= expected + 1


def test_the_base_map_is_land_and_borders_in_degrees():
    land, borders = basemap.land(), basemap.borders()
    assert len(land) > 500 and len(borders) > 300
    points = [p for shape in land + borders for p in shape]
    assert all(-180 <= lon <= 180 and -90 <= lat <= 90 for lon, lat in points)
    # Australia is there: a large polygon around (134 E, 25 S)
    assert any(min(p[0] for p in s) < 134 < max(p[0] for p in s)
               and min(p[1] for p in s) < -25 < max(p[1] for p in s) for s in land)


def test_the_lakehouse_is_read_while_a_run_holds_its_catalog(lakehouse):
    """The catalog is read once and released, so a pipeline can rewrite it meanwhile."""
    src = LakehouseSource(str(lakehouse))
    with connect_catalog(lakehouse, read_only=False) as writer:  # as a run does
        writer.execute("SELECT 1")
        assert src.query("SELECT COUNT(*) AS n FROM `${silver}.server_metrics_silver`"
                         ).iloc[0]["n"] > 0
    src.close()


# --- the command -----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--lakehouse", "/nonexistent/lakehouse"], "no lakehouse at /nonexistent/lakehouse"),
    (["--refresh", "0.5"], "--refresh must be between 1 and 3600 seconds"),
    (["--refresh", "soon"], "'soon' is not a duration"),
    (["--bigquery-project", "Not_A_Project"], "is not a Google Cloud project id"),
])
def test_a_mistake_is_one_line_and_exit_2(args, message):
    proc = run("-m", "beam_pipelines.dashboard", *args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- BigQuery mode ---------------------------------------------------------------------

def test_bigquery_mode_shows_what_the_lakehouse_shows(bigquery_emulator, lakehouse, tmp_path,
                                                     monkeypatch):
    """The same inputs through the pipelines into the BigQuery emulator: every panel's
    figures equal the lakehouse's."""
    from beam_pipelines.bigquery import admin
    from beam_pipelines.bigquery.warehouse import Warehouse
    from beam_pipelines.config import load_rules
    from beam_pipelines.dashboard.sources import BigQuerySource

    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_emulator.url)
    admin.setup(Warehouse(PROJECT, "dash"), load_rules())
    sink = ["--sink", "bigquery", "--bq-project", PROJECT, "--bq-dataset-prefix", "dash",
            "--output-dir", str(tmp_path), "--no-summary"]
    for pipeline, sample in (("metrics", "server_metrics.jsonl"), ("logs", "access.log")):
        proc = run("-m", "run", pipeline, "--input", str(lakehouse / "_sample" / sample),
                   *sink, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    local, warehouse = LakehouseSource(str(lakehouse)), BigQuerySource(PROJECT, "dash")
    first, last = q.fleet_days(local)
    assert q.fleet_days(warehouse) == (first, last)
    where = q.FleetFilter(first, last)
    web = q.web_days(local)

    def same(fetch, keys):
        a = fetch(local).sort_values(keys).reset_index(drop=True)
        b = fetch(warehouse).sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-6)

    same(lambda s: q.server_health(s, where), ["server_id"])
    same(lambda s: q.hourly(s, where), ["hour_start"])
    same(lambda s: q.cpu_heatmap(s, where), ["location", "server_type"])
    same(lambda s: q.locations(s, where), ["location"])
    same(lambda s: q.top_countries(s, *web), ["requests", "country"])
    same(lambda s: q.status_codes(s, *web), ["status"])
    same(lambda s: q.top_pages(s, *web), ["requests", "path"])
    same(lambda s: q.incidents(s, first, last)[["incident_id", "severity", "families"]],
         ["incident_id"])
    books = q.accounting(warehouse).set_index("pipeline")
    assert books["silver_identity_holds"].all() and (books["gold_mismatches"] == "").all()
    assert books.drop(columns="silver_identity_holds").equals(
        q.accounting(local).set_index("pipeline").drop(columns="silver_identity_holds"))


# --- in a browser ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser_page(lakehouse):
    from playwright.sync_api import sync_playwright

    from beam_pipelines.dashboard import browser

    with browser.Dashboard("--lakehouse", str(lakehouse), "--refresh", "1") as dashboard, \
            sync_playwright() as p:
        chromium = browser.launch(p)
        page = chromium.new_page(viewport={"width": 1400, "height": 2000})
        problems = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(dashboard.url)
        browser.settle(page)
        yield page, problems
        chromium.close()


@pytest.mark.browser
def test_every_page_loads_and_draws_with_no_error(browser_page):
    from beam_pipelines.dashboard import browser

    page, problems = browser_page
    for path, (title, _) in browser.PAGES.items():
        browser.go_to(page, path)
        assert page.get_by_test_id("stException").count() == 0, \
            page.get_by_test_id("stException").all_inner_texts()
        charts = page.locator(browser.VEGA)
        assert charts.count() > 0 or path == "map", title  # the map page: deck.gl only
        for i in range(charts.count()):  # drawn: marks in the SVG, not an empty frame
            assert charts.nth(i).locator("svg .mark-group").count() > 0, (title, i)
        if path == "web":  # the geolocation database's licence asks for it
            assert page.get_by_text("IP geolocation by").count() == 1
        if path in ("map", "web"):
            deck = page.locator(f"{browser.DECK} canvas")
            assert deck.count() >= 1, title
            box = deck.first.bounding_box()
            assert box["width"] > 300 and box["height"] > 200
        assert problems == [], (title, problems)


@pytest.mark.browser
def test_a_filter_changes_what_the_table_shows(browser_page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from beam_pipelines.dashboard import browser

    page, problems = browser_page
    browser.go_to(page, "")
    labels = page.get_by_test_id("stMetricLabel")
    assert labels.count() > 1
    page.get_by_test_id("stMultiSelect").first.click()  # server type
    option = page.get_by_role("option").filter(has_not_text="Select all").last
    kind = option.inner_text().strip()
    option.click()
    page.keyboard.press("Escape")
    browser.settle(page)
    # under load the metrics can redraw after the page settled: give them a while
    deadline = time.monotonic() + 15
    while labels.all_inner_texts() != [kind] and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert labels.all_inner_texts() == [kind]
    table = page.get_by_test_id("stDataFrame").first
    # the table redraws after the labels: wait until its rows are the filtered ones (or
    # time out, and the assertion below shows what it holds)
    try:
        page.wait_for_function(
            "([e, kind]) => { const rows = [...e.querySelectorAll('tbody tr')]; "
            "return rows.length > 0 && rows.every(r => { const c = r.querySelectorAll('td'); "
            "return c.length > 2 && c[2].innerText === kind; }); }",
            arg=[table.element_handle(), kind], timeout=15_000)
    except PlaywrightTimeout:  # the assertion below says more
        pass
    cells = table.evaluate("e => [...e.querySelectorAll('tbody tr')].map("
                           "r => [...r.querySelectorAll('td')].map(c => c.innerText))")
    types = {row[2] for row in cells if len(row) > 2}
    assert types == {kind}, cells[:3]
    assert problems == []


@pytest.mark.browser
def test_live_mode_picks_up_rows_written_meanwhile(browser_page, lakehouse):
    from beam_pipelines.dashboard import browser

    page, problems = browser_page
    browser.go_to(page, "live")

    def records() -> int:
        value = page.get_by_test_id("stMetric").filter(has_text="Records in the window") \
            .get_by_test_id("stMetricValue").inner_text()
        return int(value.replace(",", ""))

    before = records()
    # 25 copies of silver rows at the newest timestamp: inside the window, whatever it is
    import pyarrow as pa

    silver = lakehouse / "silver" / "server_metrics_silver"
    (latest,) = _catalog(lakehouse, "SELECT MAX(timestamp) FROM server_metrics_silver")[0]
    newest = sorted(glob.glob(str(silver / "**" / "part-*.parquet"), recursive=True))[-1]
    rows = pq.ParquetFile(newest).read().slice(0, 25)
    at = rows.schema.get_field_index("timestamp")
    rows = rows.set_column(at, rows.schema.field(at),
                           pa.array([latest] * 25, rows.schema.field(at).type))
    path = silver / "part-live-test.parquet"
    pq.write_table(rows, path)
    try:
        page.wait_for_function(
            """n => [...document.querySelectorAll('[data-testid="stMetric"]')].some(m =>
                 m.innerText.includes('Records in the window') &&
                 parseInt(m.querySelector('[data-testid="stMetricValue"]').innerText
                          .replace(/,/g, '')) === n)""", arg=before + 25, timeout=20_000)
    finally:
        os.remove(path)
    assert problems == []
