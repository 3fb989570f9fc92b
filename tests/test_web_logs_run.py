"""`python -m run logs` end to end, on the generated sample and on given files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from schemas.web_logs import WEB_GOLD_TABLES, WEB_LOGS_BRONZE, WEB_LOGS_SILVER

ROOT = Path(__file__).resolve().parent.parent


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "run", "logs", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_logs_run_out_of_the_box_with_top_countries_and_cities(tmp_path):
    out = tmp_path / "lakehouse"
    proc = run("--output-dir", str(out), "--sample-duration", "20m", "--sample-rate", "10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    assert "Top countries" in proc.stdout and "Top cities" in proc.stdout
    assert "DB-IP" in proc.stdout  # the licence's attribution
    for table in (WEB_LOGS_BRONZE, WEB_LOGS_SILVER) + WEB_GOLD_TABLES:
        files = sorted((out / table.layer / table.name).glob("**/*.parquet"))
        assert files, table.name
        assert pq.read_schema(files[0]).remove_metadata() == table.arrow_schema(), table.name
    with connect_catalog(out) as con:
        located, total = con.execute(
            "select count(*) filter (where geo_status = 'located'), count(*) "
            "from web_logs_silver").fetchone()
        assert located > 0.5 * total
        # No raw address in silver: only networks.
        assert con.execute("select count(*) from web_logs_silver where client_network "
                           "not like '%/%'").fetchone()[0] == 0


def test_logs_from_files_with_hashed_addresses(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(
        '81.2.69.160 - - [05/Jan/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8"\n'
        '81.2.69.160 - - [05/Jan/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8"\n'
        '10.0.0.1 - - [05/Jan/2026:10:00:02 +0000] "GET /x HTTP/1.1" 404 5\n'
        'garbage\n')
    out = tmp_path / "lakehouse"
    proc = run("--input", str(log), "--output-dir", str(out), "--ip-privacy", "hash",
               "--ip-salt", "s3cret", "--windows", "1h", "--dedupe-identical-lines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with connect_catalog(out) as con:
        assert con.execute("select reason from dead_letters order by 1").fetchall() == [
            ("duplicate_event",), ("unparseable_log_line",)]
        networks = [r[0] for r in con.execute(
            "select client_network from web_logs_silver order by 1").fetchall()]
        assert len(networks) == 2 and all(len(n) == 16 and "." not in n for n in networks)
        statuses = dict(con.execute("select geo_status, sum(requests) from "
                                    "web_traffic_by_country group by 1").fetchall())
        assert statuses["private"] == 1 and sum(statuses.values()) == 2


@pytest.mark.parametrize("args, message", [
    (["--geo-database", "missing.mmdb"], "--geo-database missing.mmdb: no such file"),
    (["--windows", "soon"], "--windows"),
    (["--ip-privacy", "blur"], "invalid choice"),
    (["--ipv4-prefix", "40"], "prefix lengths"),
    (["--input", "nothing-here.log"], "no file matches"),
])
def test_logs_mistakes_are_one_line(args, message, tmp_path, mistake):
    assert message in mistake("logs", *args, "--output-dir", str(tmp_path))


def test_logs_stream_from_the_live_generator(tmp_path):
    out = tmp_path / "lakehouse"
    proc = run("--streaming", "--run-for", "12s", "--sample-rate", "30", "--output-dir",
               str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a live generator (30 requests/s" in proc.stdout
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    with connect_catalog(out) as con:
        assert 200 <= con.execute("select count(*) from web_logs_bronze").fetchone()[0] <= 600


def test_logs_stream_from_pubsub(pubsub_emulator, tmp_path):
    import os
    from datetime import datetime, timedelta, timezone

    from beam_pipelines.ops.pubsub import setup
    from generators.publisher import publish
    from generators.weblogs import WebLogConfig, WebLogGenerator
    from tests.streaming_runs import drain_once, written_rows
    from tests.test_pubsub import names

    topic, subscription = names()
    setup(topic, subscription)
    start = datetime.now(timezone.utc) - timedelta(seconds=90)
    gen = WebLogGenerator(WebLogConfig(duration_s=60, rate_per_s=5, start=start,
                                       malformed_rate=0.05, duplicate_rate=0.03))
    stats = publish(gen, topic, envelope=4, pace=False, handle_signals=False)
    assert stats.failed == 0
    out = tmp_path / "lakehouse"
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "logs", "--streaming", "--subscription", subscription,
         "--run-for", "180s", "--output-dir", str(out), "--dedupe-identical-lines"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ})

    def written() -> bool:  # every line in bronze or its dead letters, and through silver
        bronze = written_rows(out, "bronze", "web_logs_bronze")
        dead = lambda layer: written_rows(out, "dead_letter", "dead_letters",  # noqa: E731
                                    f"layer = '{layer}'")
        return (bronze + dead("bronze") >= stats.events
                and written_rows(out, "silver", "web_logs_silver") + dead("silver") >= bronze)

    stdout, stderr = drain_once(proc, written, "every line written")
    assert proc.returncode == 0, stderr[-3000:]
    assert "MISMATCH" not in stdout and stdout.count("✓") == 10, stdout
    with connect_catalog(out) as con:
        bronze, = con.execute("select count(*) from web_logs_bronze").fetchone()
        dead = dict(con.execute("select reason, count(*) from dead_letters group by 1")
                    .fetchall())
    assert bronze + sum(v for k, v in dead.items() if k != "duplicate_event") == \
        gen.stats.written == stats.events
    assert dead["duplicate_event"] == gen.stats.duplicates


def test_raw_addresses_stay_in_bronze(tmp_path):
    """Silver, gold and silver's dead letters carry networks; only bronze (and bronze's own
    dead letters, the raw lines) hold raw addresses."""
    log = tmp_path / "access.log"
    line = ('81.2.69.160 - - [05/Jan/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 10 "-" "x"\n')
    log.write_text(line + line + line.replace(" 200 ", " 999 "))
    out = tmp_path / "lakehouse"
    proc = run("--input", str(log), "--output-dir", str(out), "--dedupe-identical-lines")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with connect_catalog(out) as con:
        silver_dead = con.execute("select reason, payload from dead_letters "
                                  "where layer = 'silver' order by 1").fetchall()
        assert [r for r, _ in silver_dead] == ["duplicate_event", "out_of_range"]
        assert all("81.2.69.160" not in p and "81.2.69.0/24" in p for _, p in silver_dead)
        for table in ("web_logs_silver",) + tuple(t.name for t in WEB_GOLD_TABLES):
            rows = con.execute(f"select * from {table}").fetchall()
            assert "81.2.69.160" not in repr(rows), table
        assert "81.2.69.160" in repr(con.execute("select * from web_logs_bronze").fetchall())


def test_identical_lines_are_requests_unless_asked_otherwise(tmp_path):
    """A load balancer's health check polled many times a second writes identical lines:
    every one is a request in gold; --dedupe-identical-lines keeps one of each."""
    check = ('10.0.0.5 - - [05/Jan/2026:10:00:01 +0000] "GET /healthz HTTP/1.1" 200 2 "-" '
             '"ELB-HealthChecker/2.0"\n')
    log = tmp_path / "access.log"
    log.write_text(check * 66 + check.replace(":01 ", ":02 ") * 66)
    counts = {}
    for flag in ("--no-dedupe-identical-lines", "--dedupe-identical-lines"):
        out = tmp_path / flag
        proc = run("--input", str(log), "--input", str(tmp_path / "*.log"), "--output-dir",
                   str(out), flag)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with connect_catalog(out) as con:
            counts[flag] = (
                con.execute("select sum(requests) from web_traffic_by_status "
                            "where granularity = 'minute'").fetchone()[0],
                con.execute("select count(*) from dead_letters").fetchone()[0])
    # the same file named twice is read once
    assert counts == {"--no-dedupe-identical-lines": (132, 0),
                      "--dedupe-identical-lines": (2, 130)}



def test_a_real_nginx_log_behind_trusted_proxies(tmp_path):
    """The zanbil.ir shop log (nginx main): 13 requests came through Google's proxies
    (66.249.83.0/24) for 103.28.132.65; trusting those, that is the client."""
    corpus = ROOT.parent / "shared" / "external-corpus" / "zanbil_shop_1000.log"
    out = tmp_path / "lake"
    proc = run("--input", str(corpus), "--output-dir", str(out), "--log-format",
               "nginx_main", "--trusted-proxies", "66.249.83.0/24", "--ip-salt", "s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    with connect_catalog(out) as con:
        assert con.execute("select count(*), count(forwarded_for) from web_logs_bronze"
                           ).fetchone() == (1000, 13)
        assert con.execute(
            "select client_network, proxy_network, count(*) from web_logs_silver "
            "where proxy_network is not null group by all").fetchall() == [
            ("103.28.132.0/24", "66.249.83.0/24", 13)]
        assert con.execute("select count(*) from dead_letters").fetchone() == (0,)


def test_a_declared_nginx_format_end_to_end(tmp_path):
    """A format string as the server declares it: its directives land in bronze and
    silver's typed columns (extra ones in bronze only), a line cut short is a dead
    letter, and the summary's identities hold."""
    fmt = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
           '"$http_referer" "$http_user_agent" $request_time $upstream_response_time '
           '$host "$http_cookie"')
    log = tmp_path / "access.log"
    log.write_text(
        '81.2.69.160 - - [05/Jan/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8" '
        '0.120 0.100 shop.example "id=1"\n'
        '81.2.69.160 - - [05/Jan/2026:10:00:02 +0000] "GET /a HTTP/1.1" 502 0 "-" "curl/8" '
        '2.001 -, 1.999 api.example "-"\n'
        '81.2.69.160 - - [05/Jan/2026:10:00:03 +0000] "GET /b HTTP/1.1" 200 10 "-" "curl\n')
    out = tmp_path / "lake"
    proc = run("--input", str(log), "--output-dir", str(out), "--log-format", fmt)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and proc.stdout.count("✓") == 10, proc.stdout
    with connect_catalog(out) as con:
        assert con.execute(
            "select vhost, request_time_us, upstream_time_us, extra_fields, log_format "
            "from web_logs_bronze order by timestamp").fetchall() == [
            ("shop.example", 120_000, 100_000, '{"$http_cookie": "id=1"}', "custom"),
            ("api.example", 2_001_000, 1_999_000, None, "custom")]
        assert con.execute("select vhost, request_time_us from web_logs_silver "
                           "order by timestamp").fetchall() == [
            ("shop.example", 120_000), ("api.example", 2_001_000)]
        silver_columns = [r[0] for r in con.execute("describe web_logs_silver").fetchall()]
        assert "extra_fields" not in silver_columns
        assert con.execute("select reason from dead_letters").fetchall() == [
            ("unclosed_quote",)]
