"""The access-log parser on real-world line variants, and its bronze transform."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.conftest import NOW, fixed_clock, run_and_collect
from transforms.bronze import RawRecord
from transforms.dead_letters import RecordRejected
from transforms.web_logs.access_log import ParseAccessLogs, parse_access_log, to_web_log_bronze

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " \
     "Chrome/120.0.0.0 Safari/537.36"
T = datetime(2000, 10, 10, 20, 55, 36, tzinfo=timezone.utc)

ACCEPTED = [
    # (line, expected subset of fields)
    ('127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
     '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
     dict(client_ip="127.0.0.1", auth_user="frank", timestamp=T, method="GET",
          path="/apache_pb.gif", query=None, protocol="HTTP/1.0", status=200, bytes=2326,
          referrer="http://www.example.com/start.html",
          user_agent="Mozilla/4.08 [en] (Win98; I ;Nav)", log_format="combined")),
    # Common Log Format
    ('127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /index.html HTTP/1.0" 200 2326',
     dict(log_format="common", referrer=None, user_agent=None, auth_user=None, ident=None)),
    # bytes '-' (304, HEAD)
    ('10.1.2.3 - - [10/Oct/2000:20:55:36 +0000] "HEAD / HTTP/1.1" 304 - "-" "curl/8.5.0"',
     dict(bytes=None, method="HEAD", status=304, referrer=None, user_agent="curl/8.5.0",
          timestamp=T)),
    # IPv6
    ('2001:db8::1 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/2.0" 200 5 "-" "' + UA + '"',
     dict(client_ip="2001:db8::1", protocol="HTTP/2.0", user_agent=UA)),
    # IPv6 in brackets, written out in full
    ('[2001:0db8:0000:0000:0000:0000:0000:0001] - - [10/Oct/2000:20:55:36 +0000] '
     '"GET / HTTP/1.1" 200 5', dict(client_ip="2001:db8::1")),
    # IPv4-mapped IPv6
    ('::ffff:192.0.2.7 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5',
     dict(client_ip="::ffff:c000:207")),
    # query string, kept apart and as logged
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET /search?q=beam%20io&page=2 HTTP/1.1" '
     '200 512 "https://example.org/" "' + UA + '"',
     dict(path="/search", query="q=beam%20io&page=2")),
    # an empty query string
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET /a? HTTP/1.1" 200 1',
     dict(path="/a", query="")),
    # escaped quotes and backslashes inside the user agent and the request
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET /q?x=\\"1\\" HTTP/1.1" 200 1 "-" '
     '"Bot \\"quoted\\" \\\\ end"',
     dict(query='x="1"', user_agent='Bot "quoted" \\ end')),
    # TLS handshake bytes sent to a plain-HTTP port: Apache escapes them, status 400
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "\\x16\\x03\\x01\\x00\\xa5\\x01" 400 226 '
     '"-" "-"', dict(method=None, path=None, status=400,
                     request="\\x16\\x03\\x01\\x00\\xa5\\x01")),  # not UTF-8: as logged
    # request line '-' (a connection closed before the request: 408)
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "-" 408 - "-" "-"',
     dict(method=None, path=None, request="-", status=408, user_agent=None)),
    # HTTP/0.9: no protocol
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET /" 200 10',
     dict(method="GET", path="/", protocol=None)),
    # proxy-style absolute URI
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET http://example.com/x?y=1 HTTP/1.1" 200 1',
     dict(path="http://example.com/x", query="y=1")),
    # CONNECT and OPTIONS *
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "CONNECT example.com:443 HTTP/1.1" 200 0',
     dict(method="CONNECT", path="example.com:443")),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "OPTIONS * HTTP/1.1" 200 0',
     dict(method="OPTIONS", path="*")),
    # a scanner's junk request line
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "../../etc/passwd" 400 0',
     dict(method=None, request="../../etc/passwd")),
    # positive and half-hour time zones
    ('1.2.3.4 - - [11/Oct/2000:02:25:36 +0530] "GET / HTTP/1.1" 200 1', dict(timestamp=T)),
    # milliseconds in the time
    ('1.2.3.4 - - [10/Oct/2000:20:55:36.250 +0000] "GET / HTTP/1.1" 200 1',
     dict(timestamp=T.replace(microsecond=250_000))),
    # Windows line ending
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1\r\n',
     dict(status=200)),
    # extra fields after the user agent (response time, forwarded-for), ignored
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8" 0.004 '
     '"203.0.113.9"', dict(user_agent="curl/8")),
    # referrer without a user agent
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1 "https://a.example/"',
     dict(referrer="https://a.example/", user_agent=None, log_format="combined")),
    # empty referrer and agent strings
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1 "" ""',
     dict(referrer=None, user_agent=None)),
    # a bot, a 5xx, a big body
    ('66.249.66.1 - - [10/Oct/2000:20:55:36 +0000] "GET /robots.txt HTTP/1.1" 503 10485760 '
     '"-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"',
     dict(status=503, bytes=10485760)),
    # an IPv6 zone and a lower-case month
    ('fe80::1%eth0 - - [10/oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1',
     dict(client_ip="fe80::1%eth0", timestamp=T)),
    # Apache logs status '-' when no response was sent: a request with no status
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" - -',
     dict(status=None, bytes=None)),
    # a status outside 100-599 is a number: silver judges its range
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 999 1', dict(status=999)),
    # a user name with an escaped character
    ('1.2.3.4 - j\\x20doe [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1',
     dict(auth_user="j doe")),
    # Apache's escaped quotes inside a field, and closed extra fields after the agent.
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua \\"q\\" x"',
     dict(user_agent='ua "q" x')),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" '
     '"1.2.3.4, 5.6.7.8" 0.123', dict(user_agent="ua", log_format="combined")),
    # NASA, July 1995: a host name where the address goes (HostnameLookups on), and a
    # time before 2000.
    ('unicomp6.unicomp.net - - [01/Jul/1995:00:00:06 -0400] "GET /shuttle/countdown/ '
     'HTTP/1.0" 200 3985', dict(client_ip=None, client_host="unicomp6.unicomp.net",
                                timestamp=datetime(1995, 7, 1, 4, 0, 6, tzinfo=timezone.utc),
                                log_format="common")),
]

REJECTED = [
    ("", "empty_payload"),
    ("   \n", "empty_payload"),
    ("this is not a log line", "unparseable_log_line"),
    ('{"json": "is not a log line"}', "unparseable_log_line"),
    ('1.2.3.4 - - 10/Oct/2000:20:55:36 +0000 "GET / HTTP/1.1" 200 1', "unparseable_log_line"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1 200 1', "unparseable_log_line"),
    ('www.exa!mple.com - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1', "invalid_ip"),
    ('[www.example.com] - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1', "invalid_ip"),
    ('999.1.1.1 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1', "invalid_ip"),
    ('1.2.3.4 - - [32/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [10/Okt/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [2000-10-10T20:55:36Z] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0099] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +2400] "GET / HTTP/1.1" 200 1', "invalid_timestamp"),
    ('1.2.3.4 - - [10/Oct/1989:20:55:36 +0000] "GET / HTTP/1.1" 200 1',
     "timestamp_out_of_range"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" OK 1', "wrong_type"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 20 1', "wrong_type"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 -5', "wrong_type"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1.5k', "wrong_type"),
    # Strict where a field would otherwise be emptied or lost in silence: a quote left
    # open (a cut line, an unescaped quote inside a field) is never read as "no agent".
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "http://exa',
     "unclosed_quote"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.0 '
     '(compatible; Googlebot/2.1; +http://www.google.com/bot.html', "unclosed_quote"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" '
     '"Mozilla/5.0 "quoted" thing"', "unclosed_quote"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "ua" "1.2.3.4',
     "unclosed_quote"),
    ('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000 "GET / HTTP/1.1" 200 5', "unparseable_log_line"),
]


@pytest.mark.parametrize("line, expected", ACCEPTED, ids=[f"ok{i}" for i in
                                                           range(len(ACCEPTED))])
def test_real_world_lines_parse(line, expected):
    record = to_web_log_bronze(RawRecord(line, "access.log:1"), NOW)
    for key, value in expected.items():
        assert record[key] == value, (key, record[key], value)
    assert record["source"] == "access.log:1" and record["ingest_timestamp"] == NOW


@pytest.mark.parametrize("line, reason", REJECTED, ids=[f"bad{i}" for i in
                                                         range(len(REJECTED))])
def test_unreadable_lines_get_a_reason(line, reason):
    with pytest.raises(RecordRejected) as err:
        to_web_log_bronze(RawRecord(line), NOW)
    assert err.value.reason == reason and err.value.message


def test_bytes_that_are_not_utf8_read_like_apache_escapes_and_stay_as_written():
    line = b'1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "caf\xe9"'
    escaped = b'1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "caf\\xe9"'
    assert to_web_log_bronze(RawRecord(line), NOW)["user_agent"] == "caf\\xe9" == \
        to_web_log_bronze(RawRecord(escaped), NOW)["user_agent"]


@pytest.mark.parametrize("logged", [
    '"GET /caf\\xC3\\xA9?q=\\xE2\\x82\\xAC HTTP/1.1"',   # nginx escapes UTF-8 bytes
    '"GET /café?q=€ HTTP/1.1"',                            # Apache writes them raw
])
def test_both_spellings_of_a_utf8_path_end_equal(logged):
    record = parse_access_log(f'1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] {logged} 200 1')
    assert (record["path"], record["query"]) == ("/café", "q=€")


def test_escapes_that_are_not_utf8_are_kept_as_written():
    record = parse_access_log('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] '
                              '"GET /caf\\xe9\\x41\\\\x41 HTTP/1.1" 200 1')
    assert record["path"] == "/caf\\xe9\\x41\\x41"  # a run is decoded whole, or kept


def test_the_request_line_is_kept_verbatim():
    record = parse_access_log('1.2.3.4 - - [10/Oct/2000:20:55:36 +0000] '
                              '"GET /a%2Fb?c HTTP/1.1" 200 1')
    assert record["request"] == "GET /a%2Fb?c HTTP/1.1" and record["path"] == "/a%2Fb"


def test_bronze_transform_accounts_for_every_line():
    lines = [line for line, _ in ACCEPTED] + [line for line, _ in REJECTED]
    raw = [RawRecord(line, f"access.log:{i}") for i, line in enumerate(lines)]
    import apache_beam as beam

    found = run_and_collect(lambda p: ParseAccessLogs(clock=fixed_clock).expand(
        p | beam.Create(raw)))
    assert len(found["records"]) == len(ACCEPTED)
    assert len(found["dead_letters"]) == len(REJECTED)
    assert len(found["records"]) + len(found["dead_letters"]) == len(lines)
    dead = {d["source"]: d for d in found["dead_letters"]}
    first_bad = dead[f"access.log:{len(ACCEPTED) + 2}"]
    assert (first_bad["reason"], first_bad["payload"], first_bad["layer"],
            first_bad["step"]) == ("unparseable_log_line", "this is not a log line",
                                   "bronze", "ParseAccessLog")
