"""``--log-format``: the presets and the servers' own format strings (Apache ``LogFormat``,
nginx ``log_format``), each directive in its typed column, strict where a line does not
have the declared shape."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import pytest

from tests.test_web_batch_engine import CORPUS
from transforms.dead_letters import RecordRejected
from transforms.web_logs.access_log import LogFormat, parse_access_log
from transforms.web_logs.formats import FormatError, compile_format

UTC = timezone.utc


def parsed(line: str, log_format: str) -> dict:
    return {k: v for k, v in parse_access_log(line, LogFormat(log_format)).items()
            if v is not None}


def rejected(line: str, log_format: str) -> str:
    with pytest.raises(RecordRejected) as caught:
        parse_access_log(line, LogFormat(log_format))
    return caught.value.reason


CLF = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'


def test_common_is_strict_common_log_format():
    assert parsed(CLF, "common") == {
        "client_ip": "127.0.0.1", "auth_user": "frank",
        "timestamp": datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC), "method": "GET",
        "path": "/apache_pb.gif", "protocol": "HTTP/1.0",
        "request": "GET /apache_pb.gif HTTP/1.0", "status": 200, "bytes": 2326,
        "log_format": "common"}
    # a combined line is not a common one when the log is declared common
    assert rejected(CLF + ' "-" "curl/8"', "common") == "unparseable_log_line"
    assert rejected(CLF.replace('HTTP/1.0"', "HTTP/1.0"), "common") == "unclosed_quote"


def test_vhost_combined_reads_the_virtual_host_and_port():
    line = ('shop.example:443 203.0.113.7 - - [06/Dec/2026:10:00:00 +0000] '
            '"GET /a?b=1 HTTP/1.1" 200 512 "https://ref.example/" "curl/8.5"')
    row = parsed(line, "vhost_combined")
    assert (row["vhost"], row["server_port"], row["bytes"], row["query"],
            row["referrer"], row["user_agent"], row["log_format"]) == (
        "shop.example", 443, 512, "b=1", "https://ref.example/", "curl/8.5",
        "vhost_combined")


def test_nginx_iso8601_reads_the_time_with_its_offset():
    line = ('203.0.113.7 - - [2026-12-06T10:00:00+01:00] "GET / HTTP/1.1" 200 5 "-" '
            '"agent \\"quoted\\""')
    row = parsed(line, "nginx_iso8601")
    assert row["timestamp"] == datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    assert row["user_agent"] == 'agent "quoted"'  # nginx's and Apache's \" escape
    assert rejected(line.replace("+01:00", ""), "nginx_iso8601") == "invalid_timestamp"
    assert rejected(line.replace("2026-", "1985-"), "nginx_iso8601") == \
        "timestamp_out_of_range"


def test_an_apache_format_string_puts_each_directive_in_its_column():
    fmt = '%h %l %u %t "%r" %>s %b %D "%{SSL_PROTOCOL}x" %{SSL_CIPHER}x "%{Cookie}i"'
    line = ('203.0.113.7 - - [06/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 1234 '
            '"TLSv1.3" TLS_AES_128_GCM_SHA256 "session=\\"abc\\"; theme=dark"')
    row = parsed(line, fmt)
    assert (row["request_time_us"], row["tls_protocol"], row["tls_cipher"],
            row["log_format"]) == (1234, "TLSv1.3", "TLS_AES_128_GCM_SHA256", "custom")
    # a directive without a column of its own is kept, by its name, not dropped
    assert json.loads(row["extra_fields"]) == {"%{Cookie}i": 'session="abc"; theme=dark'}
    assert rejected(line.replace(" 1234 ", " 12.5ms "), fmt) == "wrong_type"
    # %T is seconds, %{ms}T milliseconds
    assert parsed(line.replace(" 1234 ", " 3 "),
                  fmt.replace("%D", "%T"))["request_time_us"] == 3_000_000
    assert parsed(line.replace(" 1234 ", " 45 "),
                  fmt.replace("%D", "%{ms}T"))["request_time_us"] == 45_000


def test_apache_times_in_any_strftime_format_with_their_zone_or_since_the_epoch():
    fmt = '%h %l %u [%{%d/%b/%Y:%T %z}t] "%r" %>s %b'
    line = '203.0.113.7 - - [06/Dec/2026:10:00:00 +0100] "GET / HTTP/1.1" 200 5'
    assert parsed(line, fmt)["timestamp"] == datetime(2026, 12, 6, 9, tzinfo=UTC)
    iso = '%h %l %u %{%Y-%m-%dT%H:%M:%S%z}t "%r" %>s %b'
    assert parsed('203.0.113.7 - - 2026-12-06T10:00:00-0500 "GET / HTTP/1.1" 200 5',
                  iso)["timestamp"] == datetime(2026, 12, 6, 15, tzinfo=UTC)
    assert rejected('203.0.113.7 - - 2026-12-06T25:00:00-0500 "GET / HTTP/1.1" 200 5',
                    iso) == "invalid_timestamp"
    epoch = '%h %l %u %{msec}t "%r" %>s %b'
    assert parsed('203.0.113.7 - - 1796551200123 "GET / HTTP/1.1" 200 5', epoch)[
        "timestamp"] == datetime(2026, 12, 6, 10, 0, 0, 123_000, tzinfo=UTC)
    assert rejected('203.0.113.7 - - 1 "GET / HTTP/1.1" 200 5', epoch) == \
        "timestamp_out_of_range"


def test_an_nginx_format_string_reads_proxies_and_upstream_times():
    fmt = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
           '"$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_time '
           '$upstream_response_time $host')
    line = ('10.0.0.1 - - [06/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 502 0 "-" "ua" '
            '"203.0.113.9, 10.0.0.2" 0.123 0.010, 0.020 shop.example')
    row = parsed(line, fmt)
    assert (row["forwarded_for"], row["request_time_us"], row["upstream_time_us"],
            row["vhost"]) == ("203.0.113.9, 10.0.0.2", 123_000, 30_000, "shop.example")
    # no upstream answered: null, not zero
    assert "upstream_time_us" not in parsed(line.replace("0.010, 0.020", "-"), fmt)


@pytest.mark.parametrize("fmt, message", [
    ("", "the format is empty"),
    ("just text", "no directive"),
    ('%h %l %u %t "%r" %>s %b %Z', "%Z is not a directive"),
    ('%h %a %t "%r"', "more than one directive fills client"),
    ('%h "%r" %>s', "no time"),
    ("$remote_addr [$time_local] $status", "no request line"),
    ('%h %{%Y-%m-%d %H:%M:%S}t "%r"', "has no %z"),
    ('%h %{%Y %Q %z}t "%r"', "%Q is not a time code"),
    ('%h %{msec_frac}t "%r"', "only a fraction of a second"),
])
def test_a_format_string_that_cannot_be_read_says_why(fmt, message):
    with pytest.raises(FormatError, match=message):
        compile_format(fmt)


def test_presets_and_format_strings_are_one_line_mistakes_on_the_command_line(capsys):
    from beam_pipelines.cli import main

    assert main(["logs", "--log-format", '%h %l %u %t "%r" %>s %b %Z']) == 2
    err = capsys.readouterr().err
    assert "--log-format" in err and "%Z is not a directive" in err
    assert err.count("\n") == 1
    assert main(["logs", "--log-format", "common", "--trusted-proxies", "10.0.0.0/8"]) == 2
    assert "X-Forwarded-For" in capsys.readouterr().err


def test_nasas_log_reads_alike_as_common_and_as_combined():
    """The declared preset and the per-line detection agree on a real Common Log Format
    log (NASA, July 1995): the same rows, the same dead letters."""
    path = os.path.join(CORPUS, "nasa_jul95_head.log")
    with open(path, encoding="utf-8", errors="backslashreplace") as fh:
        lines = [line.rstrip("\n") for line in fh]
    assert len(lines) >= 4_000
    same = rejections = 0
    for line in lines:
        try:
            auto = parse_access_log(line)
        except RecordRejected as exc:
            rejections += 1
            assert rejected(line, "common") == exc.reason, line
            continue
        declared = parse_access_log(line, LogFormat("common"))
        assert {**auto, "log_format": None} == {**declared, "log_format": None}, line
        same += 1
    assert same == len(lines) - rejections and rejections == 0


# ---- the vectorised reading of declared formats ---------------------------------------------
NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
NGINX = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
         '"$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_time '
         '$upstream_response_time $host "$http_cookie" $upstream_addr')
_N = ('10.0.0.1 - - [06/Dec/2026:10:00:00 +0000] "GET /x?y HTTP/1.1" 200 10 "-" "ua" "-" 1.5 '
      '- shop.example "-" 10.1.1.1:80')
APACHE = ('%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i" %{ms}T '
          '"%{SSL_PROTOCOL}x" "%{Cookie}i" %I')
_A = ('shop.example:443 203.0.113.7 - - [06/Dec/2026:10:00:00 +0000] "GET /a?b=1 HTTP/1.1" '
      '200 512 "-" "curl/8.5" 1.5 "TLSv1.3" "x=1" 300')
_I = '203.0.113.7 - - [2026-12-06T10:00:00+01:00] "GET / HTTP/1.1" 200 5 "-" "ua"'
AWKWARD = {
    NGINX: [_N, _N.replace('"-" 10.1', '"a=1" 10.1'), _N.replace(" 1.5 ", " 0.123456 "),
            _N.replace(" 1.5 ", " 0.1234567 "), _N.replace(" - shop", " 0.010, 0.020 shop"),
            _N.replace(" - shop", " 0.5 shop"), _N.replace("10.0.0.1", "host.example"),
            _N.replace("10.0.0.1", "[::1]"), _N.replace("10.0.0.1", "2001:db8::1"),
            _N.replace("+0000", "+0330"), _N.replace("06/Dec", "31/Nov"),
            _N.replace("2026:", "1985:"), _N.replace("2026:", "2036:"),
            _N.replace(" 200 ", " - "), _N.replace(" 200 ", " 2000 "),
            _N.replace(' 10 "', ' - "'), _N.replace(' 10 "', ' 99999999999999999999 "'),
            _N.replace('"ua"', '"u\\"a"'), _N.replace('"ua"', '"caf\\xC3\\xA9"'),
            _N.replace('"ua"', '"café"'), _N.replace("GET /x?y HTTP/1.1", "-"),
            _N.replace('"-" "ua"', '"" ""'), _N.replace("10.1.1.1:80", "-"), _N[:-20],
            "garbage", ""],
    APACHE: [_A, _A.replace(" 1.5 ", " 1.2345 "), _A.replace(" 1.5 ", " 15 "),
             _A.replace('"x=1"', '"-"'), _A.replace(":443", ":99999"),
             _A.replace(" 300", " -"), _A.replace("/Dec/", "/dec/")],
    '%h %l %u [%{%d/%b/%Y:%T %z}t] "%r" %>s %b': [
        _A.split(" ", 1)[1].split(' "-"')[0], _A.split(" ", 1)[1].split(' "-"')[0].replace(
            "+0000", "+0530"), _A.split(" ", 1)[1].split(' "-"')[0].replace("Dec", "Dex")],
    "nginx_iso8601": [_I, _I.replace("+01:00", "Z"), _I.replace("+01:00", "+0100"),
                      _I.replace("T10", "T25"), _I.replace("-12-", "-13-"),
                      _I.replace("2026", "1985"), _I.replace(":00+", ":00.123+")],
}


@pytest.mark.parametrize("fmt", list(AWKWARD))
def test_the_vectorised_reading_of_a_declared_format_is_the_row_level_one(fmt):
    from transforms.batches import raw_lines
    from transforms.web_logs.bronze import row_level, web_bronze_batch

    log_format = LogFormat(fmt)
    for line in AWKWARD[fmt]:  # a line at a time: the two paths order rows differently
        raw = raw_lines([line.encode()], "awkward.log")
        fast = web_bronze_batch(raw, NOW, log_format=log_format)
        slow = row_level(raw, NOW, log_format=log_format)
        assert fast.records.to_pylist() == slow.records.to_pylist(), line
        assert fast.dead_letters == slow.dead_letters, line


def test_declared_formats_of_the_usual_shape_never_take_the_row_level_path(monkeypatch):
    from generators.weblogs import WebLogConfig, WebLogGenerator
    from transforms.batches import raw_lines
    from transforms.web_logs import bronze

    taken = []
    monkeypatch.setattr(bronze, "row_level", lambda raw, *a: taken.append(raw.num_rows))
    lines = list(WebLogGenerator(WebLogConfig(count=3_000, rate_per_s=50, seed=3)).render())
    vhosts = [f"shop.example:443 {line}".encode() for line in lines]
    out = bronze.web_bronze_batch(raw_lines(vhosts, "vhosts.log"), NOW,
                                  log_format=LogFormat("vhost_combined"))
    assert out.records.num_rows == 3_000 and taken == []
    assert set(out.records.column("vhost").to_pylist()) == {"shop.example"}
    timed = [f'{line} 0.{i % 1000:03d} "s={i}"'.encode() for i, line in enumerate(lines)]
    fmt = ('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %{ms}T "%{Cookie}i"')
    out = bronze.web_bronze_batch(raw_lines(timed, "timed.log"), NOW,
                                  log_format=LogFormat(fmt))
    assert out.records.num_rows == 3_000 and taken == []
    assert out.records.column("extra_fields")[7].as_py() == '{"%{Cookie}i": "s=7"}'


def test_nasas_log_reads_alike_in_both_engines_as_common():
    from transforms.batches import raw_lines
    from transforms.web_logs.bronze import row_level, web_bronze_batch

    with open(os.path.join(CORPUS, "nasa_jul95_head.log"), "rb") as fh:
        raw = raw_lines(fh.read().splitlines(), "nasa.log")
    common = LogFormat("common")
    fast, slow = web_bronze_batch(raw, NOW, log_format=common), row_level(raw, NOW,
                                                                          log_format=common)
    key = lambda r: repr(sorted(r.items()))  # noqa: E731
    assert sorted(fast.records.to_pylist(), key=key) == sorted(slow.records.to_pylist(),
                                                                 key=key)
    assert fast.records.num_rows == raw.num_rows and not fast.dead_letters


# ---- JSON access logs -----------------------------------------------------------------------
_JSON = ('{"time_iso8601":"2026-12-06T10:00:00+01:00","remote_addr":"203.0.113.7",'
         '"request":"GET /a?b=1 HTTP/2.0","status":200,"body_bytes_sent":512,'
         '"http_referer":"","http_user_agent":"curl/8.5","request_time":0.125,'
         '"upstream_response_time":"0.100","host":"shop.example","trace_id":"abc"}')


def test_json_lines_read_by_nginx_variable_names():
    row = parsed(_JSON, "json")
    assert row == {
        "client_ip": "203.0.113.7", "timestamp": datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        "method": "GET", "path": "/a", "query": "b=1", "protocol": "HTTP/2.0",
        "request": "GET /a?b=1 HTTP/2.0", "status": 200, "bytes": 512,
        "user_agent": "curl/8.5", "request_time_us": 125_000, "upstream_time_us": 100_000,
        "vhost": "shop.example", "extra_fields": '{"trace_id": "abc"}', "log_format": "json"}


def test_json_field_names_are_configurable_and_a_split_request_is_joined():
    line = ('{"ts":"2026-12-06T10:00:00Z","ip":"2001:db8::1","method":"POST",'
            '"uri":"/api?x=1","protocol":"HTTP/1.1","code":"404","ms":"12"}')
    row = parsed(line, "json:ts=time_iso8601,code=status")
    assert (row["request"], row["status"], row["client_ip"], row["timestamp"]) == (
        "POST /api?x=1 HTTP/1.1", 404, "2001:db8::1", datetime(2026, 12, 6, 10, tzinfo=UTC))
    assert json.loads(row["extra_fields"]) == {"ms": "12"}
    with pytest.raises(FormatError, match="not a variable this reader knows"):
        LogFormat("json:ts=timestamp_of_day")


@pytest.mark.parametrize("line, reason", [
    ('{"remote_addr": "1.2.3.4"', "invalid_json"),
    ('["1.2.3.4"]', "not_an_object"),
    (_JSON.replace('"request":"GET /a?b=1 HTTP/2.0",', ""), "missing_required_field"),
    (_JSON.replace('"time_iso8601":"2026-12-06T10:00:00+01:00",', ""),
     "missing_required_field"),
    (_JSON.replace('"status":200', '"status":"OK"'), "wrong_type"),
    (_JSON.replace('"status":200', '"status":true'), "wrong_type"),
    (_JSON.replace('"request_time":0.125', '"request_time":"soon"'), "wrong_type"),
    (_JSON.replace('"remote_addr":"203.0.113.7"', '"remote_addr":"not an ip"'),
     "invalid_ip"),
    (_JSON.replace("2026-12-06T10:00:00+01:00", "yesterday"), "invalid_timestamp"),
])
def test_json_lines_that_cannot_be_read_are_specific_dead_letters(line, reason):
    assert rejected(line, "json") == reason


def test_json_logs_in_the_batch_engine_and_end_to_end(tmp_path):
    from beam_pipelines.catalog import connect as connect_catalog
    from tests.test_web_logs_run import run
    from transforms.batches import raw_lines
    from transforms.web_logs.bronze import row_level, web_bronze_batch

    lines = [_JSON, _JSON.replace('"status":200', '"status":503'), "{}", "not json"]
    raw = raw_lines([line.encode() for line in lines], "app.json")
    fast = web_bronze_batch(raw, NOW, log_format=LogFormat("json"))
    slow = row_level(raw, NOW, log_format=LogFormat("json"))
    assert fast.records.to_pylist() == slow.records.to_pylist()
    assert [d["reason"] for d in fast.dead_letters] == ["missing_required_field",
                                                        "invalid_json"]
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    out = tmp_path / "lake"
    proc = run("--input", str(log), "--output-dir", str(out), "--log-format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    with connect_catalog(out) as con:
        assert con.execute("select status, vhost, request_time_us from web_logs_silver "
                           "order by status").fetchall() == [
            (200, "shop.example", 125_000), (503, "shop.example", 125_000)]
