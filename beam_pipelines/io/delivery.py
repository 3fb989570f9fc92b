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

import logging
import re
import threading
import time
from dataclasses import dataclass, field

import apache_beam as beam

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """What the output directory already holds for one pipeline, read at start-up.

    Gold is kept in memory by the runner, so what a window had gathered when the earlier
    run ended is gone; ``silver_files`` are replayed into gold (not into silver again), so
    every window is computed whole once more. ``pane_offset`` puts the new panes of a
    keyed gold table above the earlier run's (the catalog shows the highest pane of each
    key), and ``identity`` keeps rows of append-only tables from being written twice:
    bronze by source, a gold table without a key by the whole row."""

    bronze: frozenset = frozenset()    # sources with a bronze row
    terminal: frozenset = frozenset()  # sources with a silver row or a dead letter
    prior_input: int = 0               # bronze rows + bronze dead letters already written
    silver_files: tuple = ()           # the silver table's files, replayed into gold
    pane_offset: dict = field(default_factory=dict)   # keyed gold table -> first pane index
    written_rows: dict = field(default_factory=dict)  # keyless gold table -> rows (tuples)

    @classmethod
    def load(cls, output_dir: str, pipeline: str, schemas) -> Resume:
        import duckdb

        from beam_pipelines.catalog import READ_FILES
        from beam_pipelines.io.lakehouse import data_files, table_dir

        def files(schema) -> list[str]:
            return data_files(table_dir(output_dir, schema))

        by_layer: dict = {}
        for schema in schemas:
            by_layer.setdefault(schema.layer, []).append(schema)
        bronze_files = files(by_layer["bronze"][0])
        silver_files = files(by_layer["silver"][0])
        dead_files = files(by_layer["dead_letter"][0])
        with duckdb.connect() as con:
            def query(sql: str, paths: list[str], *params):
                return con.execute(sql.replace("FILES", READ_FILES),
                                   [paths, *params]).fetchall()

            def sources(sql: str, paths: list[str], *params) -> set:
                return {s for (s,) in query(sql, paths, *params) if s is not None}

            in_bronze = sources("select source from FILES", bronze_files) if bronze_files \
                else set()
            terminal = sources("select source from FILES", silver_files) if silver_files \
                else set()
            prior = query("select count(*) from FILES", bronze_files)[0][0] if bronze_files \
                else 0
            if dead_files:
                terminal |= sources("select source from FILES where pipeline = ?", dead_files,
                                    pipeline)
                prior += query("select count(*) from FILES where layer = 'bronze' and "
                               "pipeline = ?", dead_files, pipeline)[0][0]
            offsets, rows = {}, {}
            for schema in by_layer.get("gold", ()):
                paths = files(schema)
                if not paths:
                    continue
                if schema.key:
                    offsets[schema.name] = query("select coalesce(max(pane_index) + 1, 0) "
                                                 "from FILES", paths)[0][0]
                else:  # read as the writer will compare them: Arrow's Python values
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    table = pa.concat_tables([pq.read_table(p) for p in paths])
                    rows[schema.name] = frozenset(
                        tuple(r[n] for n in schema.names) for r in table.to_pylist())
        return cls(frozenset(in_bronze), frozenset(terminal), prior, tuple(silver_files),
                   offsets, rows)


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
        # ack id -> when held or last extended; insertion order is that order (an extended
        # id moves to the end), so the due ones are a prefix.
        self._since: dict[str, float] = {}
        self._ready: list[str] = []

    # ---- the poller's side -----------------------------------------------------------
    def admit(self, ack_id: str, records: list) -> list:
        """A pulled message and its records → the records to process: those an earlier
        run already brought to a terminal table are left out. The message is held until
        the rest are written (or ready at once when none is left)."""
        keep = [r for r in records if r.source not in self.resume.terminal]
        with self._lock:
            self.skipped += len(records) - len(keep)
            # A copy of a record already written here is dead-lettered as a redelivery,
            # which is itself a terminal write: waiting for it is enough.
            waiting = {r.source for r in keep}
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
        due = []
        with self._lock:
            for ack_id, since in self._since.items():
                if now - since < age_s:
                    break  # the rest were held or extended later
                due.append(ack_id)
            for ack_id in due:
                del self._since[ack_id]
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

    def resumed_gold(self, name: str, table):
        """A gold Arrow table as a resumed run writes it: panes numbered after the earlier
        run's, rows of a table without a key that the earlier run wrote left out (the
        replay computes them again)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        offset = self.resume.pane_offset.get(name)
        if offset:
            i = table.schema.get_field_index("pane_index")
            table = table.set_column(i, "pane_index",
                                     pc.add(table.column(i), pa.scalar(offset, pa.int64())))
        written = self.resume.written_rows.get(name)
        if written:
            names = table.column_names
            keep = [tuple(r[n] for n in names) not in written for r in table.to_pylist()]
            table = table.filter(pa.array(keep, pa.bool_()))
        return table


_CURRENT: list[DeliveryLedger | None] = [None]


def current() -> DeliveryLedger | None:
    """The ledger of this process's streaming run, when it acknowledges on write."""
    return _CURRENT[0]


#: How the source settles what is ready once the runner has written everything (Pub/Sub
#: acknowledges, Kafka commits): ``settle(ready_ids)`` → how many it could not settle.
_SETTLE: list = [None]


def start(ledger: DeliveryLedger | None) -> None:
    _CURRENT[0] = ledger
    _SETTLE[0] = None


def settle_at_finish(settle) -> None:
    """The source's way of settling the last ready messages (set when it opens)."""
    _SETTLE[0] = settle


def finish() -> int:
    """After the pipeline finished: settle what is ready; returns how many messages stay
    unsettled (read again by the next run)."""
    ledger, _CURRENT[0] = _CURRENT[0], None
    settle, _SETTLE[0] = _SETTLE[0], None
    if ledger is None:
        return 0
    ready = ledger.take_ready()
    failed = settle(ready) if ready and settle is not None else 0
    return ledger.held_messages() + failed


def acknowledger(subscription: str):
    """Pub/Sub's settle: acknowledge with a client of its own (the source's is closed)."""
    def settle(ready: list[str]) -> int:
        from google.api_core import exceptions
        from google.cloud import pubsub_v1

        client = pubsub_v1.SubscriberClient()
        try:
            for attempt in range(3):
                try:
                    acknowledge(client, subscription, ready)
                    return 0
                except exceptions.ServiceUnavailable:
                    if attempt == 2:
                        raise
                    time.sleep(1.0)
        except (exceptions.GoogleAPICallError, exceptions.RetryError):
            return len(ready)
        finally:
            client.close()
        return 0
    return settle


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


def replay_silver(files, without_files: frozenset = frozenset()) -> beam.PTransform | None:
    """The root that reads an earlier run's silver files again, for gold (None: nothing
    to replay); rows read from ``without_files`` (input files being read again) are left
    out."""
    return _ReplaySilver(tuple(files), without_files) if files else None


class _ReplaySilver(beam.PTransform):
    """Silver files → their Arrow tables, a row group at a time."""

    def __init__(self, files: tuple, without_files: frozenset = frozenset()):
        super().__init__()
        self._files = files
        self._without = without_files

    def expand(self, pbegin):
        from transforms.batches import declare_tables

        tables = (pbegin
                  | "SilverFiles" >> beam.Create(self._files)
                  | "ReadSilver" >> beam.FlatMap(_row_groups, self._without))
        declare_tables(tables)
        return tables


#: What a CSV or log record's ``source`` adds to its file's path: ``:line``. One rule for
#: Python (:func:`file_of`), Arrow (:func:`file_of_sources`) and DuckDB (``regexp_replace``).
LINE_SUFFIX = r":[0-9]+$"


def file_of(source: str) -> str:
    """The input file of one record's ``source``."""
    return re.sub(LINE_SUFFIX, "", source)


def file_of_sources(sources):
    """The input file of each record's ``source`` (an Arrow string array)."""
    import pyarrow.compute as pc

    return pc.replace_substring_regex(sources, LINE_SUFFIX, "")


def from_files(table, files: frozenset):
    """A boolean mask: the rows of ``table`` whose source is one of ``files``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.fill_null(pc.is_in(file_of_sources(table.column("source")),
                                 value_set=pa.array(sorted(files), pa.string())), False)


def _row_groups(path: str, without_files: frozenset = frozenset()):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for i in range(parquet.num_row_groups):
        group = parquet.read_row_group(i)
        yield group.filter(pc.invert(from_files(group, without_files))) if without_files \
            else group
