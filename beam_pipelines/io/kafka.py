"""Kafka as a streaming source (``--kafka-bootstrap HOST:PORT --kafka-topic T[,T...]
--kafka-group G``): seeds 002 and 003 read their metrics from Kafka.

Locally a ``confluent-kafka`` consumer is polled like the Pub/Sub subscription: one
message is one record (its value, verbatim), its event time the message's timestamp.
The consumer takes every partition of the topics itself (one local reader: no group
rebalancing) starting at the group's committed offsets, and commits a partition's offset
only up to the first message whose records are not yet durably written (the same
delivery ledger as Pub/Sub's acknowledgements), so a run that dies is resumed by the next
one from there; what it already wrote is recognised and not written twice.

On Dataflow the pipeline reads with Beam's ``ReadFromKafka``, a cross-language transform
whose Java expansion service Beam downloads when the job is submitted (it needs Java and
Maven Central at submit time); offsets are committed by the runner as bundles finalise.
"""
from __future__ import annotations

import threading
import time

import apache_beam as beam
import orjson

from beam_pipelines.errors import UserError
from beam_pipelines.io.live_sources import LiveRead, Poller
from schemas.families import MISSING_PARTS
from transforms.bronze import RawRecord


def parse_topics(text: str) -> tuple[str, ...]:
    topics = tuple(t.strip() for t in (text or "").split(",") if t.strip())
    bad = [t for t in topics if not all(c.isalnum() or c in "._-" for c in t) or len(t) > 249]
    if not topics or bad:
        raise UserError(f"--kafka-topic {text!r}: one or more topic names (letters, digits, "
                        "'.', '_', '-'), comma-separated")
    return topics


def consumer_config(bootstrap: str, group: str) -> dict:
    return {"bootstrap.servers": bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "enable.partition.eof": False, "socket.timeout.ms": 10_000}


class Offsets:
    """Per partition, what may be committed: the first offset not yet durably written
    (or one past the newest consumed, when everything is)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next: dict[tuple[str, int], int] = {}         # one past the newest consumed
        self._open: dict[tuple[str, int], set[int]] = {}    # consumed, not yet written

    def consumed(self, topic: str, partition: int, offset: int, written: bool) -> None:
        with self._lock:
            key = (topic, partition)
            self._next[key] = max(self._next.get(key, 0), offset + 1)
            if not written:
                self._open.setdefault(key, set()).add(offset)

    def written(self, ack_ids) -> None:
        with self._lock:
            for ack_id in ack_ids:
                topic, partition, offset = parse_ack_id(ack_id)
                self._open.get((topic, partition), set()).discard(offset)

    def committable(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return {key: min(self._open[key]) if self._open.get(key) else nxt
                    for key, nxt in self._next.items()}

    def unwritten(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._open.values())


def ack_id(topic: str, partition: int, offset: int) -> str:
    return f"{topic}\x00{partition}\x00{offset}"


def parse_ack_id(text: str) -> tuple[str, int, int]:
    topic, partition, offset = text.split("\x00")
    return topic, int(partition), int(offset)


class FamilyJoin:
    """Seed 002's parts of one record, one per topic (``schemas/families.py``), joined per
    (server_id, timestamp): complete once a part of every topic is in; after ``wait_s``
    (or at a drain) what came is handed on marked incomplete, and bronze dead-letters it
    ``incomplete_join``, so no part is ever dropped."""

    def __init__(self, topics: tuple[str, ...], wait_s: float = 30.0):
        self.topics = topics
        self.wait_s = wait_s
        self._open: dict[tuple, dict] = {}   # key → {"since", "micros", "parts": {topic: obj}}

    @staticmethod
    def key_of(value: bytes):
        """(server_id, timestamp) of a part, or None when it cannot be joined (it is then
        a record of its own, which bronze judges)."""
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None, None
        if not isinstance(obj, dict) or obj.get("server_id") is None or \
                obj.get("timestamp") is None:
            return None, obj
        return (str(obj["server_id"]), str(obj["timestamp"])), obj

    @staticmethod
    def source_of(key: tuple) -> str:
        return f"kafka-join://{key[0]}@{key[1]}"

    def offer(self, key: tuple, topic: str, obj: dict, micros: int, part: str, now: float):
        """A part → the whole record ``(micros, payload, parts)`` when it completes one;
        None while parts are missing, or when this topic's part is in already (the copy is
        then returned as a record of its own: ``(micros, payload, None)``)."""
        entry = self._open.setdefault(key, {"since": now, "micros": micros, "parts": {},
                                            "ids": []})
        if topic in entry["parts"]:
            return micros, orjson.dumps(obj), None
        entry["parts"][topic] = obj
        entry["ids"].append(part)
        entry["micros"] = min(entry["micros"], micros)
        if len(entry["parts"]) < len(self.topics):
            return None
        del self._open[key]
        return self._whole(entry)

    def due(self, now: float, everything: bool = False) -> list[tuple]:
        """Records whose parts stopped coming (``everything``: all, at a drain) →
        ``(key, (micros, payload, parts))``, marked with what is missing."""
        keys = []
        for key, entry in self._open.items():  # in the order they opened: the due first
            if not everything and now - entry["since"] < self.wait_s:
                break
            keys.append(key)
        return [(k, self._whole(self._open.pop(k))) for k in keys]

    def _whole(self, entry: dict):
        merged: dict = {}
        for topic in reversed(self.topics):  # the first topic's value wins a shared field
            merged.update(entry["parts"].get(topic, {}))
        missing = [t for t in self.topics if t not in entry["parts"]]
        if missing:
            merged[MISSING_PARTS] = missing
        return entry["micros"], orjson.dumps(merged), ",".join(entry["ids"])

    def __len__(self) -> int:
        return len(self._open)


class KafkaPoller(Poller):
    def __init__(self, bootstrap: str, topics: tuple[str, ...], group: str,
                 max_messages: int = 5000, poll_s: float = 0.2, commit_every_s: float = 1.0,
                 join: FamilyJoin | None = None):
        self.join = join
        self._stopped = False
        self.bootstrap = bootstrap
        self.topics = topics
        self.group = group
        self.max_messages = max_messages
        self.poll_s = poll_s
        self.commit_every_s = commit_every_s
        self.has_more = False
        self.caught_up = False
        self.offsets = Offsets()
        self._consumer = None
        self._ledger = None
        self._last_commit = 0.0
        self._committed: dict = {}

    def open(self):
        from confluent_kafka import OFFSET_STORED, Consumer, TopicPartition

        from beam_pipelines.io import delivery

        self._ledger = delivery.current()
        self._consumer = Consumer(consumer_config(self.bootstrap, self.group))
        assignment = []
        for topic in self.topics:
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise RuntimeError(f"Kafka topic {topic!r} does not exist at {self.bootstrap}")
            assignment += [TopicPartition(topic, p, OFFSET_STORED) for p in meta.partitions]
        self._consumer.assign(assignment)
        if self._ledger is not None:
            delivery.settle_at_finish(self._commit_at_finish)

    def poll(self, now: float):
        self._settle(now)
        if self._stopped:  # a drain: the parts still waiting go on, marked incomplete
            return self._joined(self.join.due(now, everything=True)) if self.join else []
        messages = self._consumer.consume(self.max_messages, self.poll_s)
        items = []
        for message in messages:
            if message.error() is not None:
                continue  # partition EOF and transient errors: librdkafka retries itself
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            value = message.value() or b""
            kind, stamp = message.timestamp()
            micros = stamp * 1000 if kind and stamp > 0 else round(now * 1_000_000)
            if self.join is not None and self._join_part(topic, partition, offset, value,
                                                         micros, now, items):
                continue
            records = [RawRecord(value, f"kafka://{topic}/{partition}@{offset}",
                                 attributes=attributes_of(message.key(), message.headers()))]
            if self._ledger is not None:
                records = self._ledger.admit(ack_id(topic, partition, offset), records)
            self.offsets.consumed(topic, partition, offset, written=self._ledger is None)
            items += [(micros, r) for r in records]
        if self.join is not None:
            items += self._joined(self.join.due(now))
        self.has_more = len(messages) >= self.max_messages
        self.caught_up = not messages
        return items

    def _join_part(self, topic, partition, offset, value, micros, now, items) -> bool:
        """A part of a record split by family: held (its message waits for the whole
        record's write) and joined; False when it cannot be joined (a record of its own)."""
        key, obj = self.join.key_of(value)
        if key is None:
            return False
        # the part's message waits for the whole record (nothing to wait for when an
        # earlier run wrote it: then there is nothing to join either)
        held = self._ledger is None or self._ledger.admit(
            ack_id(topic, partition, offset), [RawRecord(b"", self.join.source_of(key))])
        self.offsets.consumed(topic, partition, offset, written=self._ledger is None)
        if not held:
            return True
        whole = self.join.offer(key, topic, obj, micros, f"{topic}/{partition}@{offset}", now)
        if whole is not None:
            items += self._joined([(key, whole)])
        return True

    def _joined(self, done) -> list:
        items = []
        for key, (micros, payload, parts) in done:
            if parts is None:  # a second part of one topic: a copy, judged on its own
                items.append((micros, RawRecord(payload, self.join.source_of(key) + "#copy")))
                continue
            items.append((micros, RawRecord(payload, self.join.source_of(key),
                                            attributes={"parts": parts})))
        return items

    def stop_reading(self) -> None:
        self._stopped = True

    def pending(self) -> bool:
        return self.join is not None and len(self.join) > 0

    def _settle(self, now: float, force: bool = False) -> None:
        if self._ledger is not None:
            self.offsets.written(self._ledger.take_ready())
        if force or now - self._last_commit >= self.commit_every_s:
            self._last_commit = now
            self._committed = commit(self._consumer, self.offsets, self._committed)

    def _commit_at_finish(self, ready: list[str]) -> int:
        """After the runner has written everything (the consumer is closed by then):
        commit the rest with a consumer of the same group."""
        from confluent_kafka import Consumer

        self.offsets.written(ready)
        consumer = Consumer(consumer_config(self.bootstrap, self.group))
        try:
            done = commit(consumer, self.offsets, {})
        finally:
            consumer.close()
        return 0 if done or not self.offsets.committable() else len(ready)

    def close(self):
        if self._consumer is not None:
            self._settle(time.time(), force=True)
            self._consumer.close()
            self._consumer = None


def commit(consumer, offsets: Offsets, already: dict) -> dict:
    """Commit the offsets that moved since ``already``; returns what is committed."""
    from confluent_kafka import KafkaException, TopicPartition

    due = {k: v for k, v in offsets.committable().items() if already.get(k) != v}
    if not due:
        return already
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in due.items()],
                        asynchronous=False)
    except KafkaException:
        return already  # tried again at the next round; a restart re-reads, never skips
    return {**already, **due}


def read_kafka(bootstrap: str, topics: tuple[str, ...], group: str, stop_at: float | None,
               max_out_of_orderness_s: float, dataflow: bool = False, batches: bool = False,
               max_future_s: float | None = None, join_wait_s: float | None = None):
    """``join_wait_s``: the topics carry seed 002's parts of each record (one topic per
    family), joined back per (server, timestamp), waiting this long for a missing part."""
    if dataflow:
        if join_wait_s is not None:
            raise UserError("--kafka-join runs on the local runner only (on Dataflow, "
                            "publish whole records)")
        return _DataflowKafka(bootstrap, topics, group, batches)
    join = FamilyJoin(topics, join_wait_s) if join_wait_s is not None else None
    return LiveRead(KafkaPoller(bootstrap, topics, group, join=join), stop_at,
                    max_out_of_orderness_s, batches=batches, max_future_s=max_future_s)


def check(bootstrap: str, topics: tuple[str, ...]) -> None:
    """Fail fast, one line: the broker answers and every topic exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap,
                            "socket.timeout.ms": 5000}).list_topics(timeout=10)
    except KafkaException as exc:
        raise UserError(f"--kafka-bootstrap {bootstrap}: no answer ({exc.args[0].str()})") \
            from None
    missing = [t for t in topics if t not in meta.topics]
    if missing:
        raise UserError(f"Kafka topic(s) {', '.join(missing)} do not exist at {bootstrap}: "
                        "create them (python -m generators creates its topic)")


class _DataflowKafka(beam.PTransform):
    """Dataflow: Beam's ReadFromKafka (Java, expanded at submit time) → RawRecords
    timestamped with the messages' create time (``batches``: live raw batches)."""

    def __init__(self, bootstrap: str, topics: tuple[str, ...], group: str, batches: bool):
        super().__init__()
        self._bootstrap, self._topics, self._group = bootstrap, topics, group
        self._batches = batches
        self.archive_dir: str | None = None  # --archive (see live_sources.with_archive)

    def expand(self, begin):
        from apache_beam.io.kafka import ReadFromKafka

        from beam_pipelines.io.live_sources import BatchRecordsFn, archive_beside

        read = ReadFromKafka(
            consumer_config={"bootstrap.servers": self._bootstrap, "group.id": self._group,
                             "auto.offset.reset": "earliest"},
            topics=list(self._topics), with_metadata=True, commit_offset_in_finalize=True,
            timestamp_policy=ReadFromKafka.create_time_policy)
        try:
            messages = begin | "ReadFromKafka" >> read
        except RuntimeError as exc:  # the expansion service's jar could not be fetched
            if "jar" not in str(exc):
                raise
            raise UserError(
                "Kafka on Dataflow is Beam's Java ReadFromKafka, expanded when the job is "
                "built by an expansion service that Beam downloads from Maven Central (it "
                "needs Java and that network then); it could not be fetched here") from None
        records = messages | "ToRawRecords" >> beam.Map(_raw_record_of)
        archive_beside(records, self.archive_dir)
        if not self._batches:
            return records
        return records | "BatchRecords" >> beam.ParDo(BatchRecordsFn())


def _raw_record_of(message) -> RawRecord:
    return RawRecord(message.value or b"",
                     f"kafka://{message.topic}/{message.partition}@{message.offset}",
                     attributes=attributes_of(getattr(message, "key", None),
                                              getattr(message, "headers", None)))


def attributes_of(key, headers) -> dict | None:
    """A Kafka message's key and headers, as the raw archive keeps them (text; bytes
    that are not UTF-8 in their repr)."""
    def text(value) -> str:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return repr(value)
        return str(value)

    attributes = {f"header.{name}": text(value) for name, value in headers or ()}
    if key is not None:
        attributes["key"] = text(key)
    return attributes or None
