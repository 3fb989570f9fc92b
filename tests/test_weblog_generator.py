"""The web-log generator: realistic, seeded, fast enough, and readable by the parser."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from generators.weblogs import WebLogConfig, WebLogGenerator
from transforms.dead_letters import RecordRejected
from transforms.web_logs.access_log import parse_access_log

ROOT = Path(__file__).resolve().parent.parent


def parsed(config: WebLogConfig):
    gen = WebLogGenerator(config)
    ok, bad = [], Counter()
    for line in gen.render():
        try:
            ok.append(parse_access_log(line))
        except RecordRejected as exc:
            bad[exc.reason] += 1
    return gen, ok, bad


def test_same_seed_same_lines_and_another_seed_differs():
    config = dict(count=2000, rate_per_s=100, malformed_rate=0.02, duplicate_rate=0.01,
                  late_rate=0.01)
    first = list(WebLogGenerator(WebLogConfig(**config)).render())
    again = list(WebLogGenerator(WebLogConfig(**config)).render())
    other = list(WebLogGenerator(WebLogConfig(seed=7, **config)).render())
    assert first == again and first != other


def test_every_clean_line_parses_and_every_malformed_one_is_rejected():
    gen, ok, bad = parsed(WebLogConfig(count=20_000, rate_per_s=200, malformed_rate=0.02,
                                       duplicate_rate=0.01, late_rate=0.01))
    stats = gen.stats
    assert stats.written == stats.events + stats.duplicates == 20_000 + stats.duplicates
    assert sum(bad.values()) == stats.malformed > 0
    assert len(ok) == stats.written - stats.malformed
    assert set(bad) == {"unparseable_log_line", "invalid_ip", "invalid_timestamp"}


def test_the_traffic_looks_like_a_real_site():
    _, ok, _ = parsed(WebLogConfig(count=30_000, rate_per_s=200))
    statuses = Counter(r["status"] // 100 for r in ok)
    assert {2, 3, 4, 5} <= set(statuses) and statuses[2] / len(ok) > 0.9
    assert 0.002 < statuses[5] / len(ok) < 0.02
    hits = Counter(r["path"] for r in ok)
    top = hits.most_common()
    assert top[0][1] / len(ok) > 0.05                       # popular pages...
    assert sum(1 for _, n in top if n <= 3) > 50            # ...and a long tail of rare ones
    ips = {r["client_ip"] for r in ok}
    assert any(":" in ip for ip in ips) and any("." in ip for ip in ips)
    agents = Counter(r["user_agent"] for r in ok)
    assert any("Googlebot" in a for a in agents) and any("iPhone" in a for a in agents)
    # A visitor keeps its address and browser; a visit walks with referrers on the site.
    by_ip = {}
    for r in ok:
        by_ip.setdefault(r["client_ip"], set()).add(r["user_agent"])
    assert all(len(a) == 1 for a in by_ip.values())
    assert sum(1 for r in ok if (r["referrer"] or "").startswith(
        "https://www.example-shop.com/")) > len(ok) * 0.3
    assert any(r["bytes"] is None and r["status"] == 304 for r in ok)
    assert any(r["path"] == "/wp-login.php" and r["status"] == 404 for r in ok)


def test_event_time_covers_the_duration_at_the_rate():
    gen = WebLogGenerator(WebLogConfig(duration_s=600, rate_per_s=50))
    lines = [parse_access_log(line) for line in gen.render()]
    assert 0.9 * 30_000 < len(lines) < 1.1 * 30_000
    times = [r["timestamp"] for r in lines]
    assert times == sorted(times) and (times[-1] - times[0]).total_seconds() > 590


@pytest.mark.parametrize("kwargs, message", [
    (dict(visitors=0), "visitors must be at least 1"),
    (dict(rate_per_s=0), "rate must be positive"),
    (dict(malformed_rate=0.6, late_rate=0.6), "add up to more than 1"),
])
def test_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WebLogConfig(**kwargs)


def test_cli_writes_logs_and_reports_mistakes_in_one_line(tmp_path):
    out = tmp_path / "access.log"
    proc = subprocess.run([sys.executable, "-m", "generators", "logs", "--count", "500",
                           "--malformed-rate", "0.1", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "500 events" in proc.stderr, proc.stderr
    assert len(out.read_text().splitlines()) == 500
    bad = subprocess.run([sys.executable, "-m", "generators", "logs", "--rate", "-3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "rate must be positive" in bad.stderr


def test_logs_publish_to_pubsub_with_time_and_id(pubsub_emulator):
    from beam_pipelines.ops.pubsub import setup
    from generators.publisher import publish
    from tests.test_pubsub import names, pull_all

    topic, subscription = names()
    setup(topic, subscription)
    gen = WebLogGenerator(WebLogConfig(count=300, rate_per_s=100))
    stats = publish(gen, topic, pace=False, handle_signals=False)
    assert stats.messages == stats.events == 300 and stats.failed == 0
    received = pull_all(subscription)
    assert len(received) == 300
    assert len({m.attributes["event_id"] for m in received}) == 300
    from datetime import datetime

    for message in received:  # the attribute is the line's time, to the millisecond
        logged = parse_access_log(message.data.decode())["timestamp"]
        attribute = datetime.fromisoformat(message.attributes["event_time"])
        assert attribute.replace(microsecond=0) == logged
