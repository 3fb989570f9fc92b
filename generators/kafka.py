"""Generated records to Kafka (``--to kafka``): one message per record, its value the line,
its timestamp the record's event time, keyed by server (or visitor) so one source's
records stay in order on one partition. The topic is created when missing. Paced like
the Pub/Sub publisher."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from generators.pacing import paced


@dataclass
class KafkaStats:
    delivered: int = 0
    failed: int = 0

    def line(self) -> str:
        failed = f", {self.failed:,} failed" if self.failed else ""
        return f"{self.delivered:,} messages delivered{failed}"


def ensure_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                                replication_factor=1)]).values():
        try:
            future.result(15)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def _key(line: str) -> bytes | None:
    if line.startswith("{"):
        import orjson

        try:
            value = orjson.loads(line)
            key = value.get("server_id") if isinstance(value, dict) else None
            return str(key).encode() if key is not None else None
        except ValueError:
            return None
    return line.split(" ", 1)[0].encode() or None  # an access log: the client


def by_family(text: str, prefix: str) -> list[tuple[str, str]]:
    """A record → (topic, part) per metric family (``schemas/families.py``); a line that
    is not a record goes whole to the first family's topic, where the source reads it as
    a record of its own (and bronze says what is wrong with it)."""
    import orjson

    from schemas.families import family_topics, split

    topics = family_topics(prefix)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or obj.get("server_id") is None or obj.get("timestamp") is None:
        return [(next(iter(topics.values())), text)]
    return [(topics[family], orjson.dumps(part).decode())
            for family, part in split(obj).items()]


def produce(generator, bootstrap: str, topic: str, pace: bool = True,
            stop: threading.Event | None = None, partitions: int = 3,
            per_family: bool = False) -> KafkaStats:
    """``per_family``: seed 002's topics, ``topic``-cpu, -mem, -net, -disk, a part of each
    record on each."""
    from confluent_kafka import Producer

    from schemas.families import family_topics

    stop = stop or threading.Event()
    for name in (family_topics(topic).values() if per_family else (topic,)):
        ensure_topic(bootstrap, name, partitions)
    stats = KafkaStats()

    def delivered(error, _message):
        if error is None:
            stats.delivered += 1
        else:
            stats.failed += 1

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": False, "acks": "all"})
    try:
        for _, event_ms, line in paced(generator.render_timed(), pace, stop):
            text = line.decode() if isinstance(line, bytes) else line
            key = _key(text)
            for name, value in by_family(text, topic) if per_family else ((topic, text),):
                while True:
                    try:
                        producer.produce(name, value=value.encode(), key=key,
                                         timestamp=int(event_ms), on_delivery=delivered)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        producer.poll(0.1)
            producer.poll(0)
    finally:
        producer.flush(30)
    return stats
