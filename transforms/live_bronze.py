"""Bronze's edge in streaming, shared by every record kind: redeliveries of a live
source dropped on batch fragments, before the kind's own parse.

A live raw batch (one poll) is split into fragments per (shard of the delivery id,
minute of the declared event time); the state of each such key remembers the ids seen,
so a redelivered message (same id, same declared time) is a ``redelivered`` dead letter,
worded as :class:`transforms.dedupe.FirstSeenFn` words it.
"""
from __future__ import annotations

import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.batches import DEAD, dead_letter_batch, keyed_tables
from transforms.dead_letters import dead_letter
from transforms.windowing import MINUTE

_US = 1_000_000


class SplitByDeliveryFn(beam.DoFn):
    """A live raw batch → ((shard of the delivery id, minute of the declared event time),
    fragment), timestamped at that minute: the keys of the redelivery state. A redelivery
    carries the same id and declared time as its first delivery, so the same key."""

    def __init__(self, shards: int):
        self._shards = shards

    def process(self, raw: pa.Table):
        if not raw.num_rows:
            return
        shards = self._shards
        if shards == 1:  # one key per minute: nothing to hash
            shard = np.zeros(raw.num_rows, np.int64)
        else:
            shard = np.fromiter((zlib.crc32((s or "").encode()) % shards
                                 for s in raw.column("source").to_pylist()), np.int64,
                                raw.num_rows)
        micros = raw.column("event_us").to_numpy()
        minute = micros - micros % (MINUTE * _US)
        order = np.lexsort((minute, shard))
        shard, minute = shard[order], minute[order]
        starts = np.flatnonzero(np.concatenate((
            [True], (shard[1:] != shard[:-1]) | (minute[1:] != minute[:-1]))))
        ends = np.append(starts[1:], len(order))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            start = int(minute[a])
            yield TimestampedValue(((int(shard[a]), start), raw.take(pa.array(order[a:b]))),
                                   Timestamp(micros=start))


class FirstDeliveryFn(beam.DoFn):
    """A fragment of one (shard, minute) → its records whose delivery id is new; the
    others become ``redelivered`` dead letters (as :class:`transforms.dedupe.FirstSeenFn`
    words them). The ids are forgotten ``remember_s`` after the minute's end."""

    SEEN = ReadModifyWriteStateSpec("seen", PickleCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, remember_s: int = 600):
        self._remember_us = remember_s * _US

    def setup(self):
        self._rejected = Metrics.counter("bronze", "redelivered_rejected")

    def process(self, keyed, seen=beam.DoFn.StateParam(SEEN),
                forget=beam.DoFn.TimerParam(FORGET)):
        (_, minute), raw = keyed
        known = seen.read() or set()
        repeats = []
        for j, source in enumerate(raw.column("source").to_pylist()):
            key = source or ""
            if key in known:
                repeats.append(j)
            else:
                known.add(key)
        seen.write(known)
        forget.set(Timestamp(micros=minute + MINUTE * _US + self._remember_us))
        if not repeats:
            yield raw
            return
        self._rejected.inc(len(repeats))
        again = raw.take(pa.array(repeats, pa.int64()))
        dead = []
        for payload, source, micros in zip(again.column("payload").to_pylist(),
                                           again.column("source").to_pylist(),
                                           again.column("event_us").to_pylist(), strict=True):
            dead.append(dead_letter(
                layer="bronze", step="DropRedeliveries",
                reason="redelivered", message=f"delivery {source or ''!r} was already received",
                payload=payload, source=source,
                event_timestamp=Timestamp(micros=micros).to_utc_datetime(has_tz=True)))
        yield TaggedOutput(DEAD, dead_letter_batch(dead))
        keep = np.ones(raw.num_rows, dtype=bool)
        keep[repeats] = False
        if keep.any():
            yield raw.filter(pa.array(keep))

    @on_timer(FORGET)
    def forget(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class StreamingBronze(beam.PTransform):
    """Live raw batches → {"records": bronze batches, "dead_letters": [batches]}:
    redeliveries dropped (when asked), then ``parse``, the record kind's bronze DoFn on
    batches (with its ``DEAD`` output), under the step name ``label``."""

    def __init__(self, label: str, parse: beam.DoFn, drop_redeliveries: bool, shards: int):
        super().__init__()
        self._label = label
        self._parse = parse
        self._drop_redeliveries = drop_redeliveries
        self._shards = shards

    def expand(self, raw):
        dead = []
        if self._drop_redeliveries:
            first = (raw
                     | "SplitByDelivery" >> beam.ParDo(SplitByDeliveryFn(self._shards))
                     .with_output_types(keyed_tables(beam.typehints.Tuple[int, int]))
                     | "DropRedeliveries" >> beam.ParDo(FirstDeliveryFn()).with_outputs(
                         DEAD, main="raw"))
            raw = first.raw
            dead.append(first[DEAD])
        bronze = raw | self._label >> beam.ParDo(self._parse).with_outputs(DEAD, main="records")
        return {"records": bronze.records, "dead_letters": dead + [bronze[DEAD]]}
