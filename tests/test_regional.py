"""Seed 001's regional sources: declared mappings, exact unit and time conversions, null
sensors, dead letters for what cannot be mapped, and a mixed run in batch and streaming."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import apache_beam as beam
import pytest
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.cli import main
from generators.metrics import GeneratorConfig
from generators.regional import write_regional
from schemas.regional import SHAPES, Alias
from tests.conftest import NOW, fixed_clock, line, run_and_collect
from transforms.bronze import RawRecord
from transforms.dead_letters import RecordRejected
from transforms.server_metrics.regional import round_half_up, to_canonical
from transforms.server_metrics.row_bronze import ValidateServerMetrics, to_bronze
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.windowing import Streaming

TestStream.__test__ = False

INDIA_HEADER = ("server_code", "timestamp_ist", "temp_celsius", "cpu_usage_percent")


def usa(**overrides) -> str:
    record = {"instance_id": "i-0abc", "time_utc": "2026-01-05T10:00:00Z",
              "temp_fahrenheit": 98.6, "load_fraction": 0.57, "voltage_v": 120.4}
    record.update(overrides)
    return json.dumps(record)


def germany(**overrides) -> dict:
    record = {"node_name": "fra-node-01", "epoch_time": 1767607200, "temp_kelvin": 318.15,
              "power_watts": 412.5}
    record.update(overrides)
    return record


@pytest.mark.parametrize("fahrenheit, celsius", [
    (98.6, 37.0), (212, 100.0), (32, 0.0), (-40, -40.0), (99.5, 37.5), (100.0, 37.8)])
def test_fahrenheit_to_celsius_rounds_like_the_seed(fahrenheit, celsius):
    row = to_bronze(RawRecord(usa(temp_fahrenheit=fahrenheit), "u"), NOW)
    assert row["temperature_c"] == celsius


@pytest.mark.parametrize("kelvin, celsius", [
    (273.15, 0.0), (318.15, 45.0), (0, -273.2), (300.0, 26.9), (373.15, 100.0)])
def test_kelvin_to_celsius_rounds_half_up(kelvin, celsius):
    assert to_bronze(RawRecord(germany(temp_kelvin=kelvin), "g"), NOW)["temperature_c"] == \
        celsius


def test_half_up_is_spark_rounding_not_pythons():
    assert round_half_up(0.25) == 0.3 and round(0.25, 1) == 0.2
    assert round_half_up(-273.15) == -273.2


def test_each_time_convention_becomes_utc():
    ten = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
    india = to_bronze(RawRecord("IN-1,2026-01-05 15:30:00,45.5,71.2", "i.csv:2",
                                INDIA_HEADER), NOW)
    assert india["timestamp"] == ten  # IST is UTC+05:30
    explicit = to_bronze(RawRecord("IN-1,2026-01-05T10:00:00+00:00,45.5,71.2", "i.csv:3",
                                   INDIA_HEADER), NOW)
    assert explicit["timestamp"] == ten  # an explicit zone wins
    assert to_bronze(RawRecord(usa(), "u"), NOW)["timestamp"] == ten
    assert to_bronze(RawRecord(germany(), "g"), NOW)["timestamp"] == ten


def test_units_names_and_regions_map_onto_the_canonical_record():
    u = to_bronze(RawRecord(usa(), "u"), NOW)
    assert (u["server_id"], u["region"], u["cpu_usage"], u["voltage_v"]) == \
        ("i-0abc", "usa", 57.0, 120.4)  # 0.57 · 100, without binary noise
    g = to_bronze(RawRecord(germany(), "g"), NOW)
    assert (g["server_id"], g["region"], g["power_watts"], g["temperature_c"]) == \
        ("fra-node-01", "germany", 412.5, 45.0)
    i = to_bronze(RawRecord("IN-1,2026-01-05 15:30:00,45.5,71.2", "i", INDIA_HEADER), NOW)
    assert (i["server_id"], i["region"], i["temperature_c"], i["cpu_usage"]) == \
        ("IN-1", "india", 45.5, 71.2)
    # a regional server is located in its region (gold groups by location)
    assert (u["location"], g["location"], i["location"]) == ("usa", "germany", "india")


def test_missing_sensors_are_null_never_zero():
    g = to_bronze(RawRecord(germany(), "g"), NOW)
    assert g["cpu_usage"] is None and g["memory_usage"] is None and g["voltage_v"] is None
    i = to_bronze(RawRecord("IN-1,2026-01-05 15:30:00,45.5,", "i", INDIA_HEADER), NOW)
    assert i["cpu_usage"] is None and i["power_watts"] is None
    u = to_bronze(RawRecord(usa(voltage_v=None), "u"), NOW)
    assert u["voltage_v"] is None


def test_canonical_records_pass_untouched():
    record = json.loads(line())
    assert to_canonical(record) is record
    assert to_bronze(RawRecord(line(), "c"), NOW)["region"] is None


def test_undeclared_columns_are_kept_as_unknown_fields():
    row = to_bronze(RawRecord(usa(rack="r12"), "u"), NOW)
    assert json.loads(row["extra_fields"]) == {"rack": "r12"}


@pytest.mark.parametrize("raw, message", [
    (RawRecord(usa(temp_fahrenheit="n/a"), "u"), "usa: temp_fahrenheit 'n/a'"),
    (RawRecord(usa(load_fraction=1.7), "u"), "load fraction lies within [0, 1]"),
    (RawRecord(usa(time_utc="yesterday"), "u"), "usa: time_utc 'yesterday'"),
    (RawRecord(germany(temp_kelvin=float("nan")), "g"), "germany: temp_kelvin"),
    (RawRecord("IN-1,05/01/2026 15:30,45.5,71.2", "i", INDIA_HEADER), "india: timestamp_ist"),
    (RawRecord("IN-1,2026-01-05 15:30:00,hot,71.2", "i", INDIA_HEADER), "india: temp_celsius"),
])
def test_what_cannot_be_mapped_is_a_dead_letter_with_the_reason(raw, message):
    with pytest.raises(RecordRejected) as err:
        to_bronze(raw, NOW)
    assert err.value.reason == "unmappable_record" and message in err.value.message
    found = run_and_collect(lambda p: p | beam.Create([raw])
                            | ValidateServerMetrics(clock=fixed_clock))
    assert found["records"] == []
    [dead] = found["dead_letters"]
    assert dead["reason"] == "unmappable_record" and dead["step"].startswith("Parse")
    assert dead["payload"]  # the original payload, as received


def test_the_mappings_are_declared_and_checked():
    assert {s.region for s in SHAPES} == {"india", "usa", "germany", None}  # None: host
    with pytest.raises(ValueError, match="unknown field"):
        Alias("temp", "temperature")
    with pytest.raises(ValueError, match="unknown conversion"):
        Alias("temp", "temperature_c", "rankine_to_celsius")


@pytest.fixture(scope="module")
def regional_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("regional")
    config = GeneratorConfig(servers=6, interval_ms=10_000, duration_s=1800, seed=5,
                             anomaly_rate=0.0)
    paths, stats = write_regional(config, str(out), malformed_rate=0.02)
    (out / "canonical.jsonl").write_text("\n".join(line(server_id=f"c-{i}",
                                         timestamp=f"2026-01-05T00:{i:02d}:00Z")
                                         for i in range(10)) + "\n")
    return out, paths, stats


def test_a_mixed_regional_input_in_one_run_adds_up(regional_dir, tmp_path, capsys):
    out, paths, stats = regional_dir
    lake = tmp_path / "lake"
    # The inventory names one USA server: its name, type and location (not its region).
    named = json.loads((out / "usa.jsonl").read_text().splitlines()[0])["instance_id"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"{named}: {{name: usa-web-01, type: web, location: us-east}}\n"
                         "i-not-reporting: {name: spare}\n")
    assert main(["--input", str(out), "--output-dir", str(lake),
                 "--inventory", str(inventory)]) == 0
    printed = capsys.readouterr().out
    assert "✗" not in printed
    with connect_catalog(lake) as con:
        regions = dict(con.execute("select coalesce(region, 'canonical'), count(*) "
                                   "from server_metrics_bronze group by 1").fetchall())
        dead = dict(con.execute("select reason, count(*) from dead_letters "
                                "group by 1").fetchall())
        silver = con.execute("select count(*) from server_metrics_silver").fetchone()[0]
        nulls = con.execute("select count(*) from server_metrics_silver where region = "
                            "'germany' and cpu_usage is not null").fetchone()[0]
        per_region_sources = con.execute(
            "select region, min(source) from server_metrics_bronze where region is not null "
            "group by 1 order by 1").fetchall()
    written = sum(stats.records.values())
    assert dead == {"unmappable_record": stats.malformed}
    assert sum(regions.values()) + stats.malformed == written + 10  # input = bronze + dead
    assert regions["canonical"] == 10 and set(regions) == {"canonical", "india", "usa",
                                                           "germany"}
    assert silver == sum(regions.values()) and nulls == 0
    assert [r for r, _ in per_region_sources] == ["germany", "india", "usa"]
    # gold by location has a row per region, with its point for the map
    with connect_catalog(lake) as con:
        places = con.execute("select location, bool_and(latitude is not null) from "
                             "location_performance where location in ('india', 'usa', "
                             "'germany') group by 1 order by 1").fetchall()
    assert places == [("germany", True), ("india", True), ("usa", True)]
    with connect_catalog(lake) as con:
        identities = con.execute(
            "select distinct server_name, server_type, location, region from "
            "server_metrics_silver where server_id = ?", [named]).fetchall()
        usa_places = con.execute("select distinct location from server_metrics_silver "
                                 "where region = 'usa' order by 1").fetchall()
        # health over the metrics each region reports: null only where none is (germany
        # reports neither CPU nor memory)
        unscored = con.execute(
            "select distinct s.region from server_health_summary h join (select distinct "
            "server_id, region from server_metrics_silver) s using (server_id) "
            "where h.server_health_score is null").fetchall()
    assert identities == [("usa-web-01", "web", "us-east", "usa")]
    assert usa_places == [("us-east",), ("usa",)]
    assert unscored == [("germany",)]


def test_regional_records_stream_like_they_batch():
    payloads = [usa(time_utc=f"2026-01-05T10:00:{s:02d}Z", load_fraction=0.1 * (s % 9))
                for s in range(0, 60, 5)]
    payloads.append(usa(time_utc="2026-01-05T10:00:30Z", temp_fahrenheit="n/a"))
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc).timestamp()

    def batch(p):
        return (p | beam.Create([RawRecord(x, "in") for x in payloads])
                | ServerMetricsMedallion(clock=fixed_clock))

    stream = TestStream()
    for i, payload in enumerate(payloads):
        stream = stream.add_elements([TimestampedValue(RawRecord(payload, "in"), t0 + i)])
    stream = stream.advance_watermark_to_infinity()

    def streaming(p):
        return p | stream | ServerMetricsMedallion(
            clock=fixed_clock, mode=Streaming(allowed_lateness_s=3600))

    b, s = run_and_collect(batch), run_and_collect(streaming, streaming=True)
    assert sorted(map(repr, b["server_metrics_silver"])) == \
        sorted(map(repr, s["server_metrics_silver"]))
    assert {r["region"] for r in b["server_metrics_silver"]} == {"usa"}
    assert Counter(d["reason"] for d in s["dead_letters"]) == {"unmappable_record": 1}
    assert len(b["server_metrics_silver"]) == len(payloads) - 1


def test_regional_records_stream_from_pubsub_end_to_end(pubsub_emulator, tmp_path, capsys):
    """`python -m generators regional --to pubsub` publishes the three shapes as JSON;
    `python -m run --streaming` maps them and every record ends in one place."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from beam_pipelines.ops.pubsub import setup
    from generators.cli import main as generate
    from tests.streaming_runs import drain_once, written_rows
    from tests.test_pubsub import names

    topic, subscription = names()
    setup(topic, subscription)
    start = (datetime.now(timezone.utc) - timedelta(minutes=3)).replace(microsecond=0)
    assert generate(["regional", "--to", "pubsub", "--topic", topic, "--no-pace",
                     "--servers", "3", "--duration", "2m", "--interval", "10s",
                     "--malformed-rate", "0.1", "--seed", "3",
                     "--start", start.isoformat()]) == 0
    published = capsys.readouterr().err
    assert "published 36 messages (36 events)" in published
    malformed = int(published.split("; ")[-1].split(" malformed")[0].split()[-1])
    out = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--subscription", subscription,
         "--duration", "180s", "--output-dir", str(out)],  # --run-for's former name
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ})
    # Drained once every message is in bronze or its dead letters.
    stdout, stderr = drain_once(
        proc, lambda: written_rows(out, "bronze", "server_metrics_bronze")
        + written_rows(out, "dead_letter", "dead_letters") >= 36, "every message written")
    assert proc.returncode == 0, stderr[-3000:]
    assert "MISMATCH" not in stdout and stdout.count("✓") == 7, stdout
    with connect_catalog(out) as con:
        regions = dict(con.execute("select region, count(*) from server_metrics_bronze "
                                   "group by 1").fetchall())
        dead = dict(con.execute("select reason, count(*) from dead_letters "
                                "group by 1").fetchall())
    assert set(regions) == {"india", "usa", "germany"}
    assert dead == ({"unmappable_record": malformed} if malformed else {})
    assert sum(regions.values()) + malformed == 36


def test_the_generator_command_writes_the_three_files(tmp_path, capsys):
    from generators.cli import main as generate

    assert generate(["regional", "-o", str(tmp_path), "--servers", "3", "--duration", "1m",
                     "--seed", "9"]) == 0
    assert "18 records (6 india, 6 usa, 6 germany; 0 malformed)" in capsys.readouterr().err
    india = (tmp_path / "india.csv").read_text().splitlines()
    assert india[0] == ",".join(INDIA_HEADER) and len(india) == 7
    usa_rows = [json.loads(x) for x in (tmp_path / "usa.jsonl").read_text().splitlines()]
    assert set(usa_rows[0]) == {"instance_id", "time_utc", "temp_fahrenheit",
                                "load_fraction", "voltage_v"}
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "germany.parquet").column_names == [
        "node_name", "epoch_time", "temp_kelvin", "power_watts"]
    assert generate(["regional"]) == 2
    assert "--output-dir" in capsys.readouterr().err
    # the directory is --output-dir, as everywhere; the former --out-dir still works
    assert generate(["regional", "--output-dir", str(tmp_path / "a"), "--duration", "1m"]) == 0
    assert generate(["regional", "--out-dir", str(tmp_path / "b"), "--duration", "1m"]) == 0
    assert {p.name for p in (tmp_path / "b").iterdir()} == {
        "india.csv", "usa.jsonl", "germany.parquet"}


@pytest.mark.parametrize("name, text", [
    ("inventory.csv", "server_id,name,type,location\ns-1,db-01,database,europe\n"
                      "s-2,,web,\n"),
    ("inventory.yaml", "servers:\n  - {server_id: s-1, server_name: db-01, "
                       "server_type: database, location: europe}\n  - {server_id: s-2, "
                       "server_type: web}\n"),
])
def test_an_inventory_is_csv_or_yaml(name, text, tmp_path):
    from beam_pipelines.config import load_inventory

    path = tmp_path / name
    path.write_text(text)
    servers = {s.server_id: s for s in load_inventory(path).servers}
    assert (servers["s-1"].server_name, servers["s-1"].server_type,
            servers["s-1"].location) == ("db-01", "database", "europe")
    assert (servers["s-2"].server_name, servers["s-2"].location) == (None, None)


@pytest.mark.parametrize("text, message", [
    ("server_id,owner\ns-1,ops\n", "unknown column(s) owner"),
    ("server_id,name\ns-1,a\ns-1,b\n", "server 's-1' is listed twice"),
    ("name\nx\n", "server 1 has no server_id"),
])
def test_inventory_mistakes_are_one_line(text, message, tmp_path, capsys):
    path = tmp_path / "inventory.csv"
    path.write_text(text)
    assert main(["--inventory", str(path), "--output-dir", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_the_inventory_fills_only_what_a_record_does_not_say():
    import pyarrow as pa

    from transforms.server_metrics.rules import Inventory, InventoryEntry
    from transforms.server_metrics.silver import with_inventory

    bronze = pa.table({
        "server_id": ["a", " a ", "b", "c"],
        "server_name": ["own-name", None, None, None],
        "server_type": [None, None, "web", None],
        "location": ["europe", "usa", None, None],
        "region": [None, "usa", None, None]})
    inventory = Inventory((InventoryEntry("a", "inv-a", "database", "us-east"),
                           InventoryEntry("b", None, "cache", "asia")))
    out = with_inventory(bronze, inventory).to_pylist()
    assert [(r["server_name"], r["server_type"], r["location"]) for r in out] == [
        ("own-name", "database", "europe"),   # its own name and location win
        ("inv-a", "database", "us-east"),     # a region gives way to the inventory
        (None, "web", "asia"),                # its own type wins; the location filled
        (None, None, None)]                   # not in the inventory
