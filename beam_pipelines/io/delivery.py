"""At-least-once into the local lakehouse: a Pub/Sub message is acknowledged only once
every record it carried has reached a *terminal* table (silver, or a dead letter), in a
Parquet file renamed into place.

Two parts, both in the one process of the local streaming runner:

* :class:`DeliveryLedger`: the poller *holds* each message under the ``source`` of its
  records (``subscription#event-id[/n]``, the column every bronze, silver and dead-letter
  row carries); the lakehouse writer reports the sources of each terminal file it renamed
  into place; a message whose records are all written is *ready* and the poller
  acknowledges it. Held messages have their ack deadline extended, and the poller stops
  pulling while too many records are held (back-pressure).
* :class:`Resume`: what earlier runs already wrote to the same output directory. A
  streaming run from a subscription appends to its lakehouse instead of replacing it, so
  a restart resumes: a redelivered record already in a terminal table is acknowledged
  without being processed again, and one already in bronze (the run ended between the
  bronze and the silver flush) is processed on, but its bronze row is not written twice.

On Dataflow neither is used: the service acknowledges a message once its effects are
committed to the job's durable state, and ``id_label`` removes redeliveries.
"""
from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """What the output directory already holds for one pipeline, read at start-up."""

    bronze: frozenset = frozenset()    # sources with a bronze row
    terminal: frozenset = frozenset()  # sources with a silver row or a dead letter
    prior_input: int = 0               # bronze rows + bronze dead letters already written

    @classmethod
    def load(cls, output_dir: str, pipeline: str, bronze_table: str, silver_table: str,
             dead_letter_table: str = "dead_letters") -> Resume:
        import duckdb

        def scan(layer: str, table: str) -> str | None:
            files = os.path.join(output_dir, layer, table, "*.parquet")
            if not glob.glob(files):
                return None
            return f"read_parquet('{files.replace(chr(39), chr(39) * 2)}')"

        bronze = scan("bronze", bronze_table)
        silver = scan("silver", silver_table)
        dead = scan("dead_letter", dead_letter_table)
        with duckdb.connect() as con:
            def sources(sql: str, *params) -> set:
                return {s for (s,) in con.execute(sql, list(params)).fetchall()
                        if s is not None}

            def count(sql: str, *params) -> int:
                return con.execute(sql, list(params)).fetchone()[0]

            in_bronze = sources(f"select source from {bronze}") if bronze else set()
            terminal = sources(f"select source from {silver}") if silver else set()
            prior = count(f"select count(*) from {bronze}") if bronze else 0
            if dead:
                terminal |= sources(f"select source from {dead} where pipeline = ?", pipeline)
                prior += count(f"select count(*) from {dead} where layer = 'bronze' and "
                               f"pipeline = ?", pipeline)
        return cls(frozenset(in_bronze), frozenset(terminal), prior)


@dataclass
class DeliveryLedger:
    """Messages held until their records are written; thread-safe (the runner writes
    from several threads while the source polls)."""

    resume: Resume = field(default_factory=Resume)
    max_held_records: int = 200_000
    #: records dropped at the source because an earlier run wrote them to a terminal table
    skipped: int = 0
    #: bronze rows not written again because an earlier run wrote them
    bronze_rewrites_dropped: int = 0

    def __post_init__(self):
        self._lock = threading.Lock()
        self._waiting: dict[str, set] = {}        # ack id -> sources not yet written
        self._by_source: dict[str, set] = {}      # source -> ack ids waiting for it
        self._since: dict[str, float] = {}        # ack id -> when held (or last extended)
        self._ready: list[str] = []
        self._written: set = set()                # terminal sources written in this run

    # ---- the poller's side -----------------------------------------------------------
    def admit(self, ack_id: str, records: list) -> list:
        """A pulled message and its records → the records to process: those an earlier
        run already brought to a terminal table are left out. The message is held until
        the rest are written (or ready at once when none is left)."""
        keep = [r for r in records if r.source not in self.resume.terminal]
        with self._lock:
            self.skipped += len(records) - len(keep)
            waiting = {r.source for r in keep} - self._written
            if not waiting:
                self._ready.append(ack_id)
                return keep
            self._waiting[ack_id] = waiting
            self._since[ack_id] = time.monotonic()
            for source in waiting:
                self._by_source.setdefault(source, set()).add(ack_id)
        return keep

    def take_ready(self) -> list[str]:
        with self._lock:
            ready, self._ready = self._ready, []
        return ready

    def requeue(self, ack_ids: list[str]) -> None:
        """Acknowledgements that failed: tried again next round."""
        with self._lock:
            self._ready[:0] = ack_ids

    def overdue(self, age_s: float) -> list[str]:
        """Held messages not extended for ``age_s``: their deadline is extended now."""
        now = time.monotonic()
        with self._lock:
            due = [a for a, t in self._since.items() if now - t >= age_s]
            for ack_id in due:
                self._since[ack_id] = now
        return due

    def held_records(self) -> int:
        with self._lock:
            return len(self._by_source)

    def held_messages(self) -> int:
        with self._lock:
            return len(self._waiting)

    def saturated(self) -> bool:
        return self.held_records() >= self.max_held_records

    # ---- the writer's side -----------------------------------------------------------
    def written(self, sources) -> None:
        """A terminal file holding these sources is in place."""
        with self._lock:
            for source in sources:
                if source is None:
                    continue
                self._written.add(source)
                for ack_id in self._by_source.pop(source, ()):
                    waiting = self._waiting.get(ack_id)
                    if waiting is None:
                        continue
                    waiting.discard(source)
                    if not waiting:
                        del self._waiting[ack_id]
                        self._since.pop(ack_id, None)
                        self._ready.append(ack_id)

    def unwritten_bronze(self, table):
        """A bronze Arrow table without the rows an earlier run already wrote."""
        if not self.resume.bronze:
            return table
        import pyarrow as pa

        keep = [s not in self.resume.bronze for s in table.column("source").to_pylist()]
        dropped = len(keep) - sum(keep)
        if not dropped:
            return table
        with self._lock:
            self.bronze_rewrites_dropped += dropped
        return table.filter(pa.array(keep))


_CURRENT: list[DeliveryLedger | None] = [None]


def current() -> DeliveryLedger | None:
    """The ledger of this process's streaming run, when it acknowledges on write."""
    return _CURRENT[0]


def start(ledger: DeliveryLedger | None) -> None:
    _CURRENT[0] = ledger


def finish(subscription: str) -> int:
    """After the pipeline finished: acknowledge what is ready; returns how many messages
    stay unacknowledged (to be redelivered to the next run)."""
    ledger, _CURRENT[0] = _CURRENT[0], None
    if ledger is None:
        return 0
    ready = ledger.take_ready()
    if ready:
        from google.cloud import pubsub_v1

        from google.api_core import exceptions

        client = pubsub_v1.SubscriberClient()
        try:
            for attempt in range(3):
                try:
                    acknowledge(client, subscription, ready)
                    break
                except exceptions.ServiceUnavailable:
                    if attempt == 2:
                        raise
                    time.sleep(1.0)
        except (exceptions.GoogleAPICallError, exceptions.RetryError):
            return ledger.held_messages() + len(ready)
        finally:
            client.close()
    return ledger.held_messages()


# One attempt each, a few seconds at most: the source's round must not block for the
# client's default minute of retries while the service is away; what fails is retried.
def acknowledge(client, subscription: str, ack_ids: list[str]) -> None:
    for i in range(0, len(ack_ids), 1000):
        client.acknowledge(subscription=subscription, ack_ids=ack_ids[i:i + 1000],
                           retry=None, timeout=5.0)


def extend(client, subscription: str, ack_ids: list[str], deadline_s: int) -> None:
    for i in range(0, len(ack_ids), 1000):
        client.modify_ack_deadline(subscription=subscription, ack_ids=ack_ids[i:i + 1000],
                                   ack_deadline_seconds=deadline_s, retry=None, timeout=5.0)
