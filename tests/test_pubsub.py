"""Publishing to the official Pub/Sub emulator: setup, attributes, envelopes, flush."""
from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from beam_pipelines.errors import UserError
from beam_pipelines.io.live_sources import raw_records
from beam_pipelines.ops.pubsub import check_subscription, check_topic, setup, teardown
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.publisher import publish
from tests.conftest import NOW
from transforms.bronze import RawRecord
from transforms.dead_letters import RecordRejected
from transforms.server_metrics.row_bronze import to_bronze
from transforms.server_metrics.row_silver import to_silver
from transforms.server_metrics.rules import ServerMetricsRules

ROOT = Path(__file__).resolve().parent.parent
_names = itertools.count()


def names():
    n = next(_names)
    return (f"projects/test-project/topics/metrics-{n}",
            f"projects/test-project/subscriptions/metrics-{n}")


def pull_all(subscription: str, idle_s: float = 3.0) -> list:
    from google.cloud import pubsub_v1

    received = []
    with pubsub_v1.SubscriberClient() as sub:
        idle_until = time.monotonic() + idle_s
        while time.monotonic() < idle_until:
            resp = sub.pull(subscription=subscription, max_messages=1000, timeout=5)
            if resp.received_messages:
                received.extend(m.message for m in resp.received_messages)
                sub.acknowledge(subscription=subscription,
                                ack_ids=[m.ack_id for m in resp.received_messages])
                idle_until = time.monotonic() + idle_s
    return received


def test_resource_paths_are_validated():
    assert check_topic("projects/my-project/topics/metrics")
    for bad in ("metrics", "projects/p/topics/metrics", "projects/my-project/topics/x",
                "projects/my-project/topics/metrics\n"):
        with pytest.raises(UserError, match="not a topic path"):
            check_topic(bad)
    with pytest.raises(UserError, match="not a subscription path"):
        check_subscription("projects/my-project/topics/metrics")
    with pytest.raises(UserError, match="not a subscription path"):
        check_subscription("projects/my-project/subscriptions/metrics\n")


def test_setup_is_idempotent_and_teardown_removes(pubsub_emulator):
    topic, subscription = names()
    assert setup(topic, subscription) == [f"created topic {topic}",
                                          f"created subscription {subscription}"]
    assert setup(topic, subscription) == [f"exists  topic {topic}",
                                          f"exists  subscription {subscription}"]
    assert teardown(topic, subscription) == [f"deleted subscription {subscription}",
                                             f"deleted topic {topic}"]
    proc = subprocess.run([sys.executable, "-m", "beam_pipelines.ops.pubsub", "setup", "--topic",
                           topic], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ})
    assert proc.returncode == 0 and proc.stdout.strip() == f"created topic {topic}"


@pytest.mark.parametrize("envelope", [1, 7])
def test_every_event_arrives_with_time_and_id(pubsub_emulator, envelope):
    topic, subscription = names()
    setup(topic, subscription)
    gen = MetricsGenerator(GeneratorConfig(servers=5, count=300, seed=9, malformed_rate=0.05))
    stats = publish(gen, topic, envelope=envelope, pace=False, handle_signals=False)
    assert stats.failed == 0 and stats.events == 300 and \
        stats.messages == -(-300 // envelope)
    messages = pull_all(subscription)
    assert len(messages) == stats.messages
    ids = [m.attributes["event_id"] for m in messages]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"9-\d{12}", i) for i in ids)
    records = [r for m in messages for r in raw_records(m.data, dict(m.attributes), topic)]
    assert len(records) == 300
    accepted = rejected = 0
    for m in messages:
        event_time = datetime.fromisoformat(m.attributes["event_time"])
        for raw in raw_records(m.data, dict(m.attributes), topic):
            try:
                row = to_silver(to_bronze(raw, NOW), ServerMetricsRules())
                accepted += 1
                assert row["timestamp"] >= event_time  # the attribute is the earliest event
            except RecordRejected:
                rejected += 1
    assert rejected == gen.stats.malformed and accepted + rejected == 300


def test_sigterm_flushes_and_counts_exactly(pubsub_emulator):
    topic, subscription = names()
    setup(topic, subscription)
    proc = subprocess.Popen(
        [sys.executable, "-m", "generators", "metrics", "--to", "pubsub", "--topic", topic,
         "--servers", "50", "--interval", "10ms", "--duration", "10m", "--envelope", "3"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ})
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    match = re.search(r"published ([\d,]+) messages \(([\d,]+) events\)", err)
    assert match, err
    reported_messages, reported_events = (int(g.replace(",", "")) for g in match.groups())
    assert reported_messages > 100  # it was running: paced at 5,000 events/s
    messages = pull_all(subscription)
    assert len(messages) == reported_messages  # nothing lost, nothing counted twice
    assert sum(len(raw_records(m.data, dict(m.attributes), topic)) for m in messages) == \
        reported_events


def test_publisher_errors_are_one_line():
    proc = subprocess.run([sys.executable, "-m", "generators", "metrics", "--to", "pubsub",
                           "--topic", "nope"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "not a topic path" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


class _ClockedPublisher:
    """Records when each message leaves (a stand-in for the client: timing only)."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, data, **attrs):
        from concurrent.futures import Future

        self.sent.append((time.time(), datetime.fromisoformat(attrs["event_time"])))
        future = Future()
        future.set_result("id")
        return future

    def stop(self):
        pass


@pytest.mark.parametrize("started_s_ago, live", [(3.0, True), (3600.0, False)])
def test_a_live_fleet_is_paced_by_the_wall_clock_and_a_replay_by_its_first_record(
        started_s_ago, live):
    from datetime import timedelta, timezone

    start = datetime.now(timezone.utc) - timedelta(seconds=started_s_ago)
    gen = MetricsGenerator(GeneratorConfig(servers=2, interval_ms=500, duration_s=4.0,
                                           seed=3, start=start))
    client = _ClockedPublisher()
    began = time.time()
    publish(gen, "projects/p-1/topics/t-1", pace=True, publisher=client, handle_signals=False)
    if live:  # what was due while starting leaves at once; the rest when it is due
        overdue = [sent - began for sent, event in client.sent if event.timestamp() < began]
        due = [sent - event.timestamp() for sent, event in client.sent
               if event.timestamp() >= began]
        # (bounds loose enough for a loaded machine; a wrong pacing is off by seconds)
        assert overdue and max(overdue) < 1.5, overdue
        assert due and max(due) < 1.5 and min(due) > -0.1, due
    else:     # replayed at the fleet's speed: none before its offset from the first record
        first = client.sent[0][1].timestamp()
        early = [(sent - began, event.timestamp() - first) for sent, event in client.sent
                 if sent - began < event.timestamp() - first - 0.05]
        assert not early, early  # (a load can only make a send later)
        assert client.sent[-1][1].timestamp() - first >= 3.0


class _Recording:
    """A publisher that keeps what it was given (the contract, not the transport)."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, data, **attributes):
        from concurrent.futures import Future

        self.sent.append((data, attributes))
        done = Future()
        done.set_result("id")
        return done

    def stop(self):
        pass


@pytest.mark.parametrize("envelope", [1, 4])
def test_what_the_publisher_sends_the_source_reads_back_event_by_event(envelope):
    from beam_pipelines.io.live_sources import _micros

    generator = MetricsGenerator(GeneratorConfig(servers=2, count=10, seed=3))
    lines = [line for _, _, line in MetricsGenerator(GeneratorConfig(
        servers=2, count=10, seed=3)).render_timed()]
    recording = _Recording()
    publish(generator, "projects/p-1234/topics/t", envelope=envelope, pace=False,
            publisher=recording, handle_signals=False)
    read = [r for data, attributes in recording.sent
            for r in raw_records(data, attributes, "sub")]
    assert [r.payload.decode() for r in read] == lines
    assert len({r.source for r in read}) == len(lines)  # each event its own delivery id
    assert all(_micros(attributes, None) > 0 for _, attributes in recording.sent)


def test_event_times_are_read_exactly_as_beam_reads_rfc_3339():
    import random
    from datetime import datetime, timedelta, timezone

    from apache_beam.utils.timestamp import Timestamp

    from beam_pipelines.io.live_sources import event_time_micros

    rng = random.Random(9)
    texts = []
    for _ in range(2000):
        at = datetime(1969, 1, 1, tzinfo=timezone.utc) + timedelta(
            microseconds=rng.randrange(120 * 365 * 86_400 * 10 ** 6))
        zone = timezone(timedelta(minutes=rng.randrange(-720, 841, 15)))
        spec = rng.choice(["seconds", "milliseconds", "microseconds"])
        text = at.astimezone(zone).isoformat(timespec=spec)
        texts.append(text.replace("+00:00", "Z") if rng.random() < 0.5 else text)
    texts += ["2026-01-05T10:00:00", "2026-01-05T10:00:00.5Z", "2026-01-05t10:00:00Z",
              "2026-01-05T10:00:00.1234567Z", "20260105T100000Z"]
    for text in texts:
        try:
            expected = Timestamp.from_rfc3339(text).micros
        except ValueError:
            with pytest.raises(ValueError):
                event_time_micros(text)
            continue
        assert event_time_micros(text) == expected, text
    with pytest.raises(ValueError):
        event_time_micros("yesterday")


def _session_members(sid: int) -> dict[int, str]:
    """Processes of session ``sid``: pid → command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":  # session id; zombies are gone
            found[int(entry)] = cmdline.decode(errors="replace")
    return found


def test_sigterm_stops_the_emulator_with_its_children_and_removes_its_files():
    """A service manager's stop of ``local_services pubsub``: gcloud and its Java child
    end, and the emulator's data folder and log are removed."""
    from beam_pipelines.ops.local_services import free_port

    cli = subprocess.Popen([sys.executable, "-m", "beam_pipelines.ops.local_services",
                            "pubsub", "--port", str(free_port())],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert "Pub/Sub emulator on" in cli.stdout.readline()
        gcloud = next(pid for pid, cmd in _session_members_of_children(cli.pid).items()
                      if "emulators pubsub start" in cmd)
        members = _session_members(gcloud)  # the service's own session
        assert any("java" in cmd for cmd in members.values()), members
        data_dir = re.search(r"--data-dir=(\S+)", members[gcloud]).group(1)
        assert os.path.isdir(data_dir)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=60) == 0
        assert _session_members(gcloud) == {}
        assert not os.path.exists(data_dir)
    finally:
        if cli.poll() is None:
            cli.kill()


def _session_members_of_children(parent: int) -> dict[int, str]:
    """Direct children of ``parent``: pid → command line."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(c): Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            for c in children}


def test_a_replay_to_a_topic_publishes_each_record_with_its_attributes(pubsub_emulator,
                                                                       tmp_path, capsys):
    """``replay --to-topic``: every archived record becomes a message again, its event time
    kept, its event id ``replay:`` + its source (a second replay is a redelivery to the
    source), ``replay_of`` its source; the envelope attribute is not (a record is one)."""
    from beam_pipelines.cli import main
    from beam_pipelines.io.archive import ArchiveWriter

    topic, subscription = names()
    setup(topic, subscription)
    writer = ArchiveWriter(str(tmp_path / "archive"))
    writer.write([(1, RawRecord(b'{"a": 1}', "projects/p/subscriptions/s#e1/0", attributes={
        "event_id": "e1", "event_time": "2026-12-06T10:00:00.000+00:00",
        "envelope": "ndjson"})), (2, RawRecord(b"\xff", "projects/p/subscriptions/s#e2"))])
    assert main(["replay", "--from-archive", str(tmp_path / "archive"),
                 "--to-topic", topic]) == 0
    assert "Published 2 record(s)" in capsys.readouterr().out
    got = sorted(pull_all(subscription, idle_s=1.0), key=lambda m: m.data)
    assert [m.data for m in got] == [b'{"a": 1}', b"\xff"]
    assert dict(got[0].attributes) == {
        "event_id": "replay:projects/p/subscriptions/s#e1/0",
        "event_time": "2026-12-06T10:00:00.000+00:00",
        "replay_of": "projects/p/subscriptions/s#e1/0"}
    assert got[1].attributes["replay_of"] == "projects/p/subscriptions/s#e2"
