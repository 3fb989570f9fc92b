"""Web-log gold, hand-computed: per window and country, city, status, agent, top paths."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import apache_beam as beam
import pytest

from tests.conftest import NOW, run_and_collect
from transforms.bronze import RawRecord
from transforms.geo import Place, geo_fields
from transforms.web_logs.access_log import to_web_log_bronze
from transforms.web_logs.row_gold import VisitorSketch, WebLogsGold, merged_estimate
from transforms.web_logs.row_silver import PrivacyPolicy, to_web_silver

POLICY = PrivacyPolicy(salt=b"gold")
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " \
         "Chrome/131.0.0.0 Safari/537.36"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
LONDON = Place("located", "GB", "United Kingdom", "England", "London", 51.5, -0.1)
LEEDS = Place("located", "GB", "United Kingdom", "England", "Leeds", 53.8, -1.5)
PARIS = Place("located", "FR", "France", "Île-de-France", "Paris", 48.9, 2.35)


def silver(ip, minute, second, path, status, size, agent, place):
    line = (f'{ip} - - [05/Jan/2026:10:{minute:02d}:{second:02d} +0000] "GET {path} HTTP/1.1" '
            f'{status} {size} "-" "{agent}"')
    row = to_web_log_bronze(RawRecord(line), NOW)
    row.update(geo_fields(place))
    return to_web_silver(row, POLICY)


ROWS = [
    silver("81.2.69.1", 0, 1, "/", 200, 1000, CHROME, LONDON),
    silver("81.2.69.1", 0, 5, "/a", 404, 100, CHROME, LONDON),        # same visitor
    silver("81.2.69.2", 0, 9, "/", 200, 1000, CHROME, LEEDS),
    silver("90.1.1.1", 0, 30, "/b", 500, 50, CHROME, PARIS),
    silver("66.249.66.1", 0, 59, "/", 200, 1000, BOT, Place("unknown")),
    silver("10.0.0.7", 1, 0, "/", 304, "-", CHROME, Place("private")),  # the next minute
]


@pytest.fixture(scope="module")
def gold():
    return run_and_collect(lambda p: (p | beam.Create(ROWS)) | WebLogsGold(top_n=2))


def rows(gold, table, granularity, **match):
    return [r for r in gold[table] if r["granularity"] == granularity
            and all(r[k] == v for k, v in match.items())]


def test_traffic_by_country_per_minute_and_hour(gold):
    (gb,) = rows(gold, "web_traffic_by_country", "minute", country_code="GB")
    assert (gb["requests"], gb["bytes"], gb["errors_4xx"], gb["errors_5xx"],
            gb["unique_visitors"], gb["error_rate"]) == (3, 2100, 1, 0, 2, pytest.approx(1 / 3))
    assert gb["window_start"] == datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
    (fr,) = rows(gold, "web_traffic_by_country", "minute", country_code="FR")
    assert (fr["errors_5xx"], fr["error_rate"]) == (1, 1.0)
    # Unlocated requests are their own rows, with the reason.
    unknown = rows(gold, "web_traffic_by_country", "hour", country_code=None)
    assert sorted((r["geo_status"], r["country"], r["requests"]) for r in unknown) == [
        ("private", "(unknown)", 1), ("unknown", "(unknown)", 1)]
    hour = rows(gold, "web_traffic_by_country", "hour")
    assert sum(r["requests"] for r in hour) == len(ROWS)
    assert sum(r["requests"] for r in rows(gold, "web_traffic_by_country", "minute")) == \
        len(ROWS)


def test_traffic_by_city_has_a_point_for_maps(gold):
    (leeds,) = rows(gold, "web_traffic_by_city", "hour", city="Leeds")
    assert (leeds["latitude"], leeds["longitude"], leeds["requests"]) == (53.8, -1.5, 1)
    (london,) = rows(gold, "web_traffic_by_city", "hour", city="London")
    assert (london["requests"], london["unique_visitors"]) == (2, 1)


def test_traffic_by_status_and_agent(gold):
    statuses = {r["status"]: r["requests"] for r in rows(gold, "web_traffic_by_status", "hour")}
    assert statuses == {200: 3, 404: 1, 500: 1, 304: 1}
    (bots,) = rows(gold, "web_traffic_by_agent", "hour", is_bot=True)
    assert (bots["browser"], bots["device_class"], bots["requests"], bots["bot_requests"]) == (
        "Googlebot", "bot", 1, 1)


def test_top_paths_are_ranked_per_window(gold):
    top = sorted((r["rank"], r["path"], r["requests"])
                 for r in rows(gold, "web_top_paths", "hour"))
    assert top == [(1, "/", 4), (2, "/a", 1)]  # top 2 of /, /a, /b: ties by path


def test_the_visitor_sketch_is_exact_when_small_and_merges_by_set_union():
    small = VisitorSketch()
    for v in ["a", "b", "a", "c"]:
        small.add(v)
    assert small.estimate() == 3
    rng = random.Random(1)
    values = [f"{rng.getrandbits(64):016x}" for _ in range(50_000)]
    a, b = VisitorSketch(), VisitorSketch()
    a.add_all(values[:30_000])
    b.add_all(values[20_000:])
    whole = VisitorSketch()
    whole.add_all(reversed(values))  # another order
    a.merge(b)
    # the 10,000 visitors in both count once: set union, not a sum
    assert abs(a.estimate() - 50_000) / 50_000 < 0.05
    # the same set gives the same answer, however it was put together
    assert a.estimate() == whole.estimate()
    assert a.to_bytes() == whole.to_bytes()
    day1, day2 = VisitorSketch(), VisitorSketch()
    day1.add_all(values[:30_000])
    day2.add_all(values[20_000:])
    assert merged_estimate([day1.to_bytes(), None, day2.to_bytes()]) == whole.estimate()
    import pickle

    assert pickle.loads(pickle.dumps(a)).estimate() == a.estimate()


def test_every_gold_row_has_exactly_its_declared_columns(gold):
    from schemas.web_logs import WEB_GOLD_TABLES

    assert {t.name for t in WEB_GOLD_TABLES} == set(gold)
    for table in WEB_GOLD_TABLES:
        assert gold[table.name], table.name
        for row in gold[table.name]:
            assert set(row) == set(table.names), table.name
        table.arrow_schema()  # and the rows convert to it
        import pyarrow as pa

        pa.Table.from_pylist(gold[table.name], schema=table.arrow_schema())


def test_web_logs_batch_and_streaming_give_identical_gold_tables(tmp_path):
    """The same lines (a copy, a malformed line and a late line among them) through the
    whole web-log medallion, in batch and in streaming."""
    from collections import Counter

    from apache_beam.testing.test_stream import TestStream
    from apache_beam.transforms.window import TimestampedValue

    from schemas.web_logs import WEB_GOLD_TABLES
    from tests.conftest import fixed_clock
    from transforms.web_logs.row_medallion import WebLogsMedallion
    from transforms.windowing import BATCH, Streaming

    base = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc).timestamp()
    agents = (CHROME, BOT)
    lines = []
    for i in range(40):  # five minutes, an address and agent per i
        ts = base + 7.5 * i
        stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
        ip = f"81.2.69.{i % 5}" if i % 3 else f"10.0.0.{i % 4}"
        lines.append((ts, f'{ip} - - [{stamp}] "GET /p{i % 6} HTTP/1.1" '
                          f'{(200, 404, 500, 200)[i % 4]} {100 + i} "-" "{agents[i % 2]}"'))
    lines.append((base + 100, "not a log line"))
    lines.append((base + 200, lines[5][1]))                  # a copy, later
    late = [(base + 30, lines[4][1].replace("/p4", "/late"))]

    policy = PrivacyPolicy(salt=b"parity")
    database = tmp_path / "empty.mmdb"
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City",
                        languages=["en"], description="parity")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "city": {"names": {"en": "London"}}, "location": {"latitude": 51.5,
                                                           "longitude": -0.1}})
    writer.to_db_file(str(database))

    def medallion(mode=BATCH):
        return WebLogsMedallion(policy, str(database), (60, 3600), top_n=3, clock=fixed_clock,
                                mode=mode, dedupe_identical_lines=True)

    def batch(p):
        return p | beam.Create([RawRecord(t, "in") for _, t in lines + late]) | medallion()

    stream = TestStream()
    for ts, text in lines:
        stream = stream.add_elements([TimestampedValue(RawRecord(text, "in"), ts)])
    stream = (stream.advance_watermark_to(base + 7.5 * 40 + 60)
                    .add_elements([TimestampedValue(RawRecord(t, "in"), ts) for ts, t in late])
                    .advance_watermark_to_infinity())

    def streaming(p):
        return p | stream | medallion(Streaming(allowed_lateness_s=3600))

    b = run_and_collect(batch)
    s = run_and_collect(streaming, streaming=True)

    def latest(rows, schema):
        keep = {}
        for row in rows:
            key = tuple(row[k] for k in schema.key)
            if key not in keep or row["pane_index"] > keep[key]["pane_index"]:
                keep[key] = row
        # a sketch is compared by what it counts (a small one lists its items in
        # arrival order)
        return sorted((tuple((k, merged_estimate([v]) if k == "visitor_sketch" else v)
                             for k, v in r.items() if k not in ("pane_index", "pane_timing"))
                       for r in keep.values()), key=repr)

    for schema in WEB_GOLD_TABLES:
        assert latest(b[schema.name], schema) == latest(s[schema.name], schema), schema.name
    reasons = lambda t: Counter(d["reason"] for d in t["dead_letters"])  # noqa: E731
    assert reasons(b) == reasons(s) == Counter({"unparseable_log_line": 1,
                                                 "duplicate_event": 1})
    assert len(b["web_logs_silver"]) == len(s["web_logs_silver"]) == 41
