"""The web-log medallion on Arrow batches gives, table by table and dead letter by dead
letter, what the row-level medallion gives on the same files: generated logs with faults,
lines built to take every fallback, and the real logs of the external corpus."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.sources import ReadRawBatches, ReadServerMetricFiles
from generators.weblogs import WebLogConfig, WebLogGenerator
from tests.conftest import NOW, fixed_clock, run_and_collect
from tests.equivalence import assert_tables_equal
from transforms.batches import raw_lines
from transforms.web_logs.access_log import LogFormat
from transforms.web_logs.bronze import row_level, web_bronze_batch
from transforms.web_logs.gold import group_span, visitor_sketches
from transforms.web_logs.medallion import WebLogsBatchMedallion, split_by_span
from transforms.web_logs.row_gold import VisitorSketch
from transforms.web_logs.row_medallion import WebLogsMedallion
from transforms.web_logs.row_silver import PrivacyPolicy

POLICY = PrivacyPolicy(salt=b"equivalence")
CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "external-corpus")
_OK = '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5'

#: Lines the vectorised parse must hand to the row-level parser, or must read exactly as it.
AWKWARD = [
    _OK, _OK, _OK + ' "-" "-"', _OK + ' "" ""', _OK + ' "None" "None"',
    '1.2.3.4 - - [30/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [00/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [29/Feb/2024:23:59:59 -2359] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/Jan/2026:10:00:00.250 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0099] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/Jan/2026:24:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/Jan/1999:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [31/Dec/2099:23:59:59 -0100] "GET / HTTP/1.1" 200 5',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 99999999999999999999',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 9223372036854775807',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 9223372036854775808',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 ٣',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" ²00 5',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 099 5',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 600 -',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" - -',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "-" 400 -',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET  /x" 400 - "a"',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET ?x HTTP/" 400 - "a" "b" 0.123',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET /a?b=1?c HTTP/1.1" 200 1 "r" "a" x y',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "get / HTTP/1.1" 200 1',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "\\x16\\x03\\x01" 400 -',
    '1.2.3.4 - alice\\x41 [05/Jan/2026:10:00:00 +0000] "GET /caf\\xC3\\xA9 HTTP/1.1" 200 1',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET /q\\"x HTTP/1.1" 200 1 "-" "a \\"b\\""',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET /café HTTP/1.1" 200 1 "-" "é"',
    '1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "Googlebot',
    '1.2.3.4\xa0x - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '01.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    'example.com - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '::ffff:81.2.69.160 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '[2001:DB8::1] - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    'fe80::1%eth0 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5',
    '10.0.0.1 - - [05/Jan/2026:10:59:59 +0000] "GET / HTTP/1.1" 200 5',
    '10.0.0.1 - - [05/Jan/2026:11:00:00 +0000] "GET / HTTP/1.1" 200 5',
    "", "   ", "not a log line", "\ufeff" + _OK,
]


def _awkward_bytes() -> list[bytes]:
    return [t.encode() for t in AWKWARD] + [
        b"\xff\xfe not utf-8", _OK.encode() + b"\r", _OK.encode() + b' "-" "x"\r',
        b'1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET /\xe9 HTTP/1.1" 200 1',
        b"x" * (1 << 20) + b" " + _OK.encode()]


def _generated(tmp_path, name="access.log", **overrides) -> str:
    config = dict(count=3_000, rate_per_s=20, malformed_rate=0.03, duplicate_rate=0.02,
                  late_rate=0.01, seed=11)
    config.update(overrides)
    generator = WebLogGenerator(WebLogConfig(**config))
    path = tmp_path / name
    path.write_text("\n".join(generator.render()) + "\n")
    return str(path)


def _both(paths: list[str], windows=(60, 3600), top_n: int = 5,
          dedupe: bool = True) -> tuple[dict, dict]:
    files = {"jsonl": paths}
    rows = run_and_collect(lambda p: p | ReadServerMetricFiles(files) | WebLogsMedallion(
        POLICY, window_seconds=windows, top_n=top_n, clock=fixed_clock,
        dedupe_identical_lines=dedupe))

    def batched(p):
        tables = (p | ReadRawBatches(files, batch_lines=700, range_bytes=100_000)
                  | WebLogsBatchMedallion(POLICY, window_seconds=windows, top_n=top_n,
                                          clock=fixed_clock, dedupe_identical_lines=dedupe))
        return tables

    return rows, run_and_collect(batched)


def test_the_vectorised_parse_reads_every_line_as_the_row_level_parser():
    raw = raw_lines(_awkward_bytes(), "awkward.log")
    fast, slow = web_bronze_batch(raw, NOW), row_level(raw, NOW)
    key = lambda r: repr(sorted(r.items()))  # noqa: E731
    assert sorted(fast.records.to_pylist(), key=key) == sorted(slow.records.to_pylist(),
                                                                 key=key)
    assert sorted(fast.dead_letters, key=key) == sorted(slow.dead_letters, key=key)
    reasons = {d["reason"] for d in fast.dead_letters}
    assert {"invalid_timestamp", "timestamp_out_of_range", "wrong_type", "invalid_ip",
            "unparseable_log_line", "empty_payload", "payload_too_large"} <= reasons


def test_a_byte_count_past_64_bits_is_a_dead_letter_not_a_crash():
    raw = raw_lines([t.encode() for t in AWKWARD[14:17]], "big.log")
    out = web_bronze_batch(raw, NOW)
    assert out.records.column("bytes").to_pylist() == [9223372036854775807]
    assert [(d["reason"], d["message"]) for d in out.dead_letters] == [
        ("wrong_type", "bytes 99999999999999999999 does not fit the column's 64-bit integer"),
        ("wrong_type", "bytes 9223372036854775808 does not fit the column's 64-bit integer")]


def test_lines_of_the_usual_shape_never_take_the_row_level_path(monkeypatch):
    from transforms.web_logs import bronze

    taken = []
    monkeypatch.setattr(bronze, "row_level", lambda raw, *a: taken.append(raw.num_rows))
    generator = WebLogGenerator(WebLogConfig(count=3_000, rate_per_s=50, seed=3))
    raw = raw_lines([line.encode() for line in generator.render()], "clean.log")
    out = web_bronze_batch(raw, NOW)
    assert out.records.num_rows == 3_000 and taken == []


@pytest.mark.parametrize("dedupe", [True, False])
def test_batch_and_row_level_medallions_agree_on_generated_logs_with_faults(tmp_path, dedupe):
    paths = [_generated(tmp_path), _generated(tmp_path, "second.log", seed=12, count=1_000)]
    (tmp_path / "awkward.log").write_bytes(b"\n".join(_awkward_bytes()) + b"\n")
    rows, batches = _both(paths + [str(tmp_path / "awkward.log")], dedupe=dedupe)
    # The row-level medallion is the reference: the batch one must equal it.
    assert_tables_equal(rows, batches)
    dead = batches["dead_letters"]
    reasons = {d["reason"] for d in dead}
    assert reasons >= {"out_of_range", "unparseable_log_line", "wrong_type"}
    assert ("duplicate_event" in reasons) is dedupe
    # Accounting: every line in exactly one place.
    lines = sum(open(p, "rb").read().count(b"\n") for p in paths) + len(_awkward_bytes())
    bronze_dead = sum(1 for d in dead if d["layer"] == "bronze")
    assert len(batches["web_logs_bronze"]) + bronze_dead == lines
    silver_dead = sum(1 for d in dead if d["layer"] == "silver")
    assert len(batches["web_logs_silver"]) + silver_dead == len(batches["web_logs_bronze"])
    # a status logged as '-' (no response was sent) is a request of class '-', no error
    (unsent,) = [r for r in batches["web_logs_silver"] if r["status"] is None]
    assert unsent["status_class"] == "-"
    by_status = [r for r in batches["web_traffic_by_status"] if r["status"] is None]
    assert by_status and all(r["status_class"] == "-" and r["errors_4xx"] == 0
                             and r["errors_5xx"] == 0 for r in by_status)


def test_batch_and_row_level_agree_with_other_windows(tmp_path):
    path = _generated(tmp_path, count=2_500, rate_per_s=40, seed=5)
    rows, batches = _both([path], windows=(30, 300), top_n=3)
    assert_tables_equal(rows, batches)
    assert {r["granularity"] for r in batches["web_top_paths"]} == {"30s", "300s"}


def test_unique_visitors_are_the_row_level_sketch_estimate_exactly():
    rng = np.random.default_rng(7)
    sizes = (5, 300, 1_025, 40_000)
    gid = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)])
    visitors = rng.integers(0, 2 ** 64, size=len(gid), dtype=np.uint64)
    visitors = np.concatenate([visitors, visitors[:3_000]])  # returning visitors
    gid = np.concatenate([gid, gid[:3_000]])
    ids = [f"{v:016x}" for v in visitors.tolist()]
    expected = []
    for g in range(len(sizes)):
        sketch = VisitorSketch()  # row by row, in arrival order
        for i in np.flatnonzero(gid == g).tolist():
            sketch.add(ids[i])
        expected.append(sketch.estimate_and_bytes()[0])
    batch = visitor_sketches(gid, visitors, pa.array(ids), len(sizes))
    assert [s.estimate() for s in batch] == expected
    assert expected[:2] == [5, 300] and abs(expected[3] - 40_000) / 40_000 < 0.05


@pytest.mark.parametrize("name", ["elastic_apache_logs.log", "zanbil_shop_1000.log",
                                  "nasa_jul95_head.log"])
def test_batch_and_row_level_agree_on_real_logs(name):
    path = os.path.join(CORPUS, name)
    assert os.path.exists(path), f"the external corpus is missing {path}"
    rows, batches = _both([path], dedupe=False)
    assert_tables_equal(rows, batches)


def test_the_external_corpus_is_all_here():
    assert len(glob.glob(os.path.join(CORPUS, "*.log"))) >= 3


def test_a_span_holds_whole_windows_of_every_size():
    assert group_span((60, 3600)) == 3600
    assert group_span((30, 300, 7)) == 2100
    with pytest.raises(ValueError, match="common multiple"):
        group_span((61, 3599, 86_400))


def test_bronze_splits_into_one_fragment_per_span():
    raw = raw_lines([t.encode() for t in AWKWARD[-6:-4]] + [_OK.encode()], "spans.log")
    bronze = web_bronze_batch(raw, NOW).records
    spans = dict(split_by_span(bronze, 3600))
    assert sorted(t.num_rows for t in spans.values()) == [1, 2]
    assert all(isinstance(t, pa.Table) for t in spans.values())


def test_a_line_dated_beyond_max_future_is_a_dead_letter_as_in_the_row_level_parser():
    from datetime import timedelta

    stamp = lambda minutes: (NOW + timedelta(minutes=minutes)).strftime(  # noqa: E731
        "%d/%b/%Y:%H:%M:%S +0000")
    lines = [f'1.2.3.4 - - [{stamp(m)}] "GET / HTTP/1.1" 200 5'.encode() for m in (4, 6)]
    raw = raw_lines(lines, "future.log")
    fast, slow = (web_bronze_batch(raw, NOW, max_future_s=300),
                  row_level(raw, NOW, max_future_s=300))
    assert fast.records.num_rows == slow.records.num_rows == 1
    assert [d["reason"] for d in fast.dead_letters] == ["future_event"]
    assert fast.dead_letters == slow.dead_letters


def _corpus_lines(name: str) -> list[bytes]:
    path = os.path.join(CORPUS, name)
    assert os.path.exists(path), f"the external corpus is missing {path}"
    with open(path, "rb") as fh:
        return fh.read().splitlines()


def test_nasas_1995_log_parses_whole_host_names_and_all():
    """NASA KSC, July 1995: Common Log Format, mostly host names (reverse DNS, some with
    underscores), dates before 2000. Every line is a request."""
    import ipaddress

    lines = _corpus_lines("nasa_jul95_head.log")
    out = web_bronze_batch(raw_lines(lines, "nasa"), NOW)
    assert out.dead_letters == [] and out.records.num_rows == len(lines) == 4000

    def is_ip(token: bytes) -> bool:
        try:
            ipaddress.ip_address(token.decode())
            return True
        except ValueError:
            return False

    hosts = sum(not is_ip(line.split(b" ", 1)[0]) for line in lines)
    assert out.records.column("client_host").null_count == len(lines) - hosts
    assert out.records.column("client_ip").null_count == hosts > 3000
    assert pc.min(out.records.column("timestamp")).as_py().year == 1995


def test_the_shop_log_parses_whole():
    lines = _corpus_lines("zanbil_shop_1000.log")
    out = web_bronze_batch(raw_lines(lines, "zanbil"), NOW)
    assert out.dead_letters == [] and out.records.num_rows == len(lines)


def test_the_apache_log_parses_whole_but_its_one_cut_line():
    """semicomplete.com, May 2015: line 8,899 ends inside Googlebot's user agent (the quote
    never closes). Read as a Common Log Format line, it would count a crawler as a human."""
    lines = _corpus_lines("elastic_apache_logs.log")
    out = web_bronze_batch(raw_lines(lines, "elastic"), NOW)
    assert out.records.num_rows == len(lines) - 1
    (dead,) = out.dead_letters
    assert dead["reason"] == "unclosed_quote" and dead["payload"] == lines[8898].decode()
    assert dead["payload"].endswith("+http://www.google.com/bot.html")


def test_the_whole_corpus_through_the_pipeline_accounts_for_every_line(tmp_path):
    import subprocess
    import sys

    files = [os.path.join(CORPUS, n) for n in ("elastic_apache_logs.log",
                                              "nasa_jul95_head.log", "zanbil_shop_1000.log")]
    out = tmp_path / "lake"
    proc = subprocess.run([sys.executable, "-m", "run", "logs", "--output-dir", str(out),
                           "--input", ",".join(files)], capture_output=True, text=True,
                          timeout=600, cwd=os.path.join(os.path.dirname(__file__), ".."))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    assert "input       15,000" in proc.stdout, proc.stdout
    assert "14,999 accepted  +       1 dead letters" in proc.stdout, proc.stdout

    with connect_catalog(out) as con:
        statuses = dict(con.execute("select geo_status, count(*) from web_logs_silver "
                                    "group by 1").fetchall())
    assert statuses["hostname"] > 3000 and sum(statuses.values()) == 14_999


def test_the_earliest_event_is_an_option_in_both_engines():
    from datetime import datetime, timezone

    lines = [b'1.2.3.4 - - [01/Jul/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 5',
             b'1.2.3.4 - - [31/Dec/1989:23:59:59 +0000] "GET / HTTP/1.0" 200 5',
             b'1.2.3.4 - - [01/Jan/2001:00:00:00 +0000] "GET / HTTP/1.0" 200 5']
    raw = raw_lines(lines, "old.log")
    default = web_bronze_batch(raw, NOW)
    assert default.records.num_rows == 2
    assert [d["reason"] for d in default.dead_letters] == ["timestamp_out_of_range"]
    y2k = datetime(2000, 1, 1, tzinfo=timezone.utc)
    y2k = LogFormat(earliest=y2k)
    fast, slow = web_bronze_batch(raw, NOW, log_format=y2k), row_level(raw, NOW, log_format=y2k)
    assert fast.records.num_rows == slow.records.num_rows == 1
    assert fast.dead_letters == slow.dead_letters and len(fast.dead_letters) == 2
    assert "outside [2000-01-01, 2100-01-01)" in fast.dead_letters[0]["message"]


NGINX_MAIN = LogFormat("nginx_main")


def test_nginx_main_reads_the_forwarded_for_field_in_both_engines():
    base = b'10.0.0.5 - - [22/Jan/2019:03:56:16 +0330] "GET /a HTTP/1.1" 200 5 "-" "curl/8"'
    lines = [base + b' "-"',                              # no proxy: null
             base + b' "203.0.113.9, 10.0.0.7"',          # a chain
             base + b' "203.0.113.9"  ',                  # trailing spaces
             base + b' "caf\\xC3\\xA9"',                   # an escape: the row-level path
             base,                                        # the field is missing
             base + b' "203.0.113.9" extra',              # something after it
             b'10.0.0.5 - - [22/Jan/2019:03:56:16 +0330] "GET /a HTTP/1.1" 200 5 "-"']
    raw = raw_lines(lines, "shop.log")
    fast, slow = web_bronze_batch(raw, NOW, log_format=NGINX_MAIN), \
        row_level(raw, NOW, log_format=NGINX_MAIN)
    assert fast.records.to_pylist() == slow.records.to_pylist()
    assert fast.dead_letters == slow.dead_letters
    assert fast.records.column("forwarded_for").to_pylist() == [
        None, "203.0.113.9, 10.0.0.7", "203.0.113.9", "café"]
    assert set(fast.records.column("log_format").to_pylist()) == {"nginx_main"}
    assert [d["reason"] for d in fast.dead_letters] == ["unparseable_log_line"] * 3
    assert "not nginx's main format" in fast.dead_letters[0]["message"]
    # The default format reads the same lines as Combined, the last field ignored.
    combined = web_bronze_batch(raw, NOW)
    assert combined.records.num_rows == 7 and not combined.dead_letters
    assert combined.records.column("forwarded_for").null_count == 7


def test_a_real_nginx_log_parses_whole_with_its_forwarded_for():
    """The zanbil.ir shop log (nginx main, +0330), read from the external corpus."""
    path = os.path.join(CORPUS, "zanbil_shop_1000.log")
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    raw = raw_lines(lines, path)
    fast, slow = web_bronze_batch(raw, NOW, log_format=NGINX_MAIN), \
        row_level(raw, NOW, log_format=NGINX_MAIN)
    assert fast.records.num_rows == len(lines) == 1000 and not fast.dead_letters
    assert fast.records.to_pylist() == slow.records.to_pylist()
    forwarded = [f for f in fast.records.column("forwarded_for").to_pylist() if f]
    assert forwarded == ["103.28.132.65"] * 13


TRUSTING = PrivacyPolicy(salt=b"equivalence", trusted_proxies=("10.0.0.0/8", "fd00::/8"))


@pytest.mark.parametrize("remote, forwarded, client, proxy", [
    ("10.0.0.5", "8.8.8.8, 10.0.0.7", "8.8.8.8", "10.0.0.5"),    # through two proxies
    ("10.0.0.5", None, "10.0.0.5", None),                        # nothing forwarded
    ("8.8.4.4", "1.1.1.1", "8.8.4.4", None),                     # untrusted: not believed
    ("10.0.0.5", "1.1.1.1, 8.8.8.8", "8.8.8.8", "10.0.0.5"),     # the right-most untrusted
    ("10.0.0.5", "10.0.0.9, 10.0.0.8", "10.0.0.9", "10.0.0.5"),  # all trusted: left-most
    ("10.0.0.5", "garbage, 8.8.8.8", "8.8.8.8", "10.0.0.5"),
    ("10.0.0.5", "8.8.8.8, garbage", "10.0.0.5", None),          # the walk stops there
    ("fd00::1", "2001:db8::7", "2001:db8::7", "fd00::1"),
    ("::ffff:10.0.0.5", "8.8.8.8", "8.8.8.8", "::ffff:10.0.0.5"),  # IPv4-mapped proxy
])
def test_the_client_is_the_right_most_untrusted_address(remote, forwarded, client, proxy):
    assert TRUSTING.client_of(remote, forwarded) == (client, proxy)
    assert POLICY.client_of(remote, forwarded) == (remote, None)  # no trusted proxies


def test_trusted_proxies_give_the_client_to_geolocation_privacy_and_visitors(tmp_path):
    import re

    lines = open(_generated(tmp_path, count=3_000), "rb").read().splitlines()
    chains = (b' "-"', b' "8.8.8.8, 10.0.0.7"', b' "81.2.69.160"', b' "8.8.8.8"')
    nginx = []
    for i, line in enumerate(lines):
        if i % 4 == 1:  # through the load balancer
            line = re.sub(rb"^\S+", b"10.0.0.5", line)
        nginx.append(line + chains[i % 4])
    # Silver rejects a status out of range: its dead letter keeps no forwarded address.
    nginx += [re.sub(rb'" [0-9]{3} ', b'" 999 ', line, count=1) for line in nginx[1:40:4]]
    path = tmp_path / "nginx.log"
    path.write_bytes(b"\n".join(nginx) + b"\n")
    files = {"jsonl": [str(path)]}
    rows = run_and_collect(lambda p: p | ReadServerMetricFiles(files) | WebLogsMedallion(
        TRUSTING, clock=fixed_clock, log_format=NGINX_MAIN))

    def batched(p):
        tables = (p | ReadRawBatches(files, batch_lines=700)
                  | WebLogsBatchMedallion(TRUSTING, clock=fixed_clock, log_format=NGINX_MAIN))
        return tables

    batches = run_and_collect(batched)
    assert_tables_equal(rows, batches)
    silver = batches["web_logs_silver"]
    proxied = [r for r in silver if r["proxy_network"] is not None]
    assert proxied and all(r["proxy_network"] == "10.0.0.0/24" for r in proxied)
    # The load balancer's lines are located where 8.8.8.8 is, never as private.
    assert {(r["client_network"], r["geo_status"]) for r in proxied} == {
        ("8.8.8.0/24", "located")}
    assert "forwarded_for" not in silver[0]  # raw addresses stay in bronze
    silver_dead = [json.loads(d["payload"]) for d in batches["dead_letters"]
                   if d["layer"] == "silver"]
    assert silver_dead and all(d["forwarded_for"] is None and "client" not in d
                               for d in silver_dead)
