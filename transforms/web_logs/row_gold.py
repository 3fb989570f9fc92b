"""Gold for web logs: traffic per window by country, city, status, path and user agent.

Every table has one row per window (minute and hour by default, both in the same table,
told apart by ``granularity``) and dimension value: requests, bytes, 4xx and 5xx counts,
the error rate, bot requests and unique visitors. Requests from addresses that could not be
located (private, reserved, unknown) are their own row, never left out, so every table's
requests add up to silver's count for each window (``web_top_paths`` excepted: it keeps
the top N paths).

Unique visitors are estimated with an Apache DataSketches HLL sketch of ``visitor_id``
(:class:`VisitorSketch`), stored next to the estimate as ``visitor_sketch``: windows and
panes combine by merging, and so can days, countries and cities afterwards (in Python
with ``datasketches``, in BigQuery with the DataSketches functions).
"""
from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
from datasketches import hll_sketch, hll_union, tgt_hll_type

from transforms.bronze import micros_of, utc_of
from transforms.windowing import BATCH, HOUR, MINUTE, Mode, Streaming, bucket, pane_columns

UNKNOWN_PLACE = "(unknown)"


#: The sketch's size: 2¹² buckets, as the DataSketches functions for BigQuery make by
#: default, so sketches made there and here merge. HLL_4: 4 bits a bucket.
LG_K = 12
HLL_4 = tgt_hll_type.HLL_4


class VisitorSketch:
    """An Apache DataSketches HLL sketch of ``visitor_id`` strings: mergeable, so windows,
    panes, days and places add up by set union, never by summing counts.

    The estimate and the stored bytes are those of the sketch's union with itself: its
    buckets alone, not the order its items came in (an HLL sketch's own estimate follows
    the insertion order), so one set gives one answer whether it was counted row by row,
    a batch at a time or merged from parts, and a roll-up of stored sketches gives what
    counting the union at once gives."""

    __slots__ = ("_sketch",)

    def __init__(self, sketch=None):
        self._sketch = sketch if sketch is not None else hll_sketch(LG_K, HLL_4)

    def add(self, visitor_id: str) -> None:
        self._sketch.update(visitor_id)

    def add_all(self, visitor_ids) -> None:
        update = self._sketch.update
        for visitor_id in visitor_ids:
            update(visitor_id)

    def merge(self, other: VisitorSketch) -> None:
        self._sketch = _union(self._sketch, other._sketch)

    def _canonical(self):
        return _union(self._sketch, self._sketch)

    def estimate(self) -> int:
        return round(self._canonical().get_estimate())

    def to_bytes(self) -> bytes:
        return self._canonical().serialize_compact()

    def estimate_and_bytes(self) -> tuple[int, bytes]:
        canonical = self._canonical()
        return round(canonical.get_estimate()), canonical.serialize_compact()

    @classmethod
    def from_bytes(cls, data: bytes) -> VisitorSketch:
        return cls(hll_sketch.deserialize(bytes(data)))

    def __getstate__(self):
        return self._sketch.serialize_compact()

    def __setstate__(self, data):
        self._sketch = hll_sketch.deserialize(data)


def _union(*sketches):
    union = hll_union(LG_K)
    for sketch in sketches:
        union.update(sketch)
    return union.get_result(HLL_4)


def merged_estimate(sketches) -> int:
    """Distinct visitors of the union of stored sketches (bytes): a roll-up of days,
    countries or cities."""
    parts = [hll_sketch.deserialize(bytes(s)) for s in sketches if s is not None]
    return round(_union(*parts, *parts).get_estimate()) if parts else 0


class Traffic:
    """The accumulator of every web-log gold table."""

    __slots__ = ("requests", "bytes", "errors_4xx", "errors_5xx", "bot_requests",
                 "visitors")

    def __init__(self):
        self.requests = self.bytes = self.errors_4xx = self.errors_5xx = 0
        self.bot_requests = 0
        self.visitors = VisitorSketch()

    def add(self, row: dict) -> None:
        self.requests += 1
        self.bytes += row["bytes"] or 0
        status = row["status"] or 0  # '-' (no response sent) is not an error code
        if 400 <= status < 500:
            self.errors_4xx += 1
        elif status >= 500:
            self.errors_5xx += 1
        if row["is_bot"]:
            self.bot_requests += 1
        self.visitors.add(row["visitor_id"])

    def merge(self, other: Traffic) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.errors_4xx += other.errors_4xx
        self.errors_5xx += other.errors_5xx
        self.bot_requests += other.bot_requests
        self.visitors.merge(other.visitors)

    def columns(self) -> dict:
        return {"requests": self.requests, "bytes": self.bytes,
                "errors_4xx": self.errors_4xx, "errors_5xx": self.errors_5xx,
                "error_rate": ((self.errors_4xx + self.errors_5xx) / self.requests
                               if self.requests else None),
                "bot_requests": self.bot_requests,
                **dict(zip(("unique_visitors", "visitor_sketch"),
                           self.visitors.estimate_and_bytes(), strict=True))}

    def __getstate__(self):
        return (self.requests, self.bytes, self.errors_4xx, self.errors_5xx,
                self.bot_requests, self.visitors)

    def __setstate__(self, state):
        (self.requests, self.bytes, self.errors_4xx, self.errors_5xx, self.bot_requests,
         self.visitors) = state


class SummariseTraffic(beam.CombineFn):
    def create_accumulator(self):
        return Traffic()

    def add_input(self, traffic, row):
        traffic.add(row)
        return traffic

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators, None) or Traffic()  # streaming may merge nothing
        for t in accumulators:
            merged.merge(t)
        return merged

    def extract_output(self, traffic):
        return traffic


class MergeTraffic(SummariseTraffic):
    """Partial :class:`Traffic` (a batch fragment's share of a key) → their sum."""

    def add_input(self, traffic, part):
        traffic.merge(part)
        return traffic


def _place(row) -> tuple:
    located = row["geo_status"] == "located"
    return (row["geo_country_code"], row["geo_country"] or UNKNOWN_PLACE,
            row["geo_status"] if not located else "located")


#: table → (dimension columns, key function of a silver row).
DIMENSIONS = {
    "web_traffic_by_country": (
        ("country_code", "country", "geo_status"), _place),
    "web_traffic_by_city": (
        ("country_code", "country", "geo_status", "region", "city", "latitude",
         "longitude"),
        lambda r: _place(r) + (r["geo_region"], r["geo_city"] or UNKNOWN_PLACE,
                               r["geo_latitude"], r["geo_longitude"])),
    "web_traffic_by_status": (
        ("status", "status_class"), lambda r: (r["status"], r["status_class"])),
    "web_traffic_by_agent": (
        ("browser", "device_class", "is_bot"),
        lambda r: (r["browser"] or UNKNOWN_PLACE, r["device_class"], r["is_bot"])),
    "web_top_paths": (("path",), lambda r: (r["path"] or r["request"],)),
}


def _window_columns(start_micros: int, seconds: int) -> dict:
    start = utc_of(start_micros)
    return {"window_start": start, "window_end": start + timedelta(seconds=seconds),
            "granularity": {MINUTE: "minute", HOUR: "hour"}.get(seconds, f"{seconds}s")}


class _FormatFn(beam.DoFn):
    def __init__(self, names: tuple[str, ...]):
        self._names = names

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        (seconds, start, *values), traffic = element
        pane_index, pane_timing = pane_columns(window, pane)
        yield {**_window_columns(start, seconds), **dict(zip(self._names, values,
                                                             strict=True)),
               **traffic.columns(), "pane_index": pane_index, "pane_timing": pane_timing}


class _TopN(beam.DoFn):
    """Rows of one window → its ``n`` busiest paths, ranked (ties by path).

    In streaming the grouping accumulates, so each firing sees every path's rows so far;
    the latest pane of each path counts."""

    def __init__(self, n: int):
        self._n = n

    def process(self, keyed_rows, window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam):
        _, rows = keyed_rows
        latest = {}
        for row in rows:
            if row["path"] not in latest or row["pane_index"] > latest[row["path"]][
                    "pane_index"]:
                latest[row["path"]] = row
        best = sorted(latest.values(), key=lambda r: (-r["requests"], r["path"]))[: self._n]
        pane_index, pane_timing = pane_columns(window, pane)
        for rank, row in enumerate(best, 1):
            yield {**row, "rank": rank, "pane_index": pane_index, "pane_timing": pane_timing}


class TrafficBy(beam.PTransform):
    """Silver rows → one table: rows per (window size, window, dimension value)."""

    def __init__(self, table: str, window_seconds: tuple[int, ...],
                 mode: Mode = BATCH, top_n: int = 20):
        super().__init__()
        self._table = table
        self._key = DIMENSIONS[table][1]
        self._seconds = window_seconds
        self._mode = mode
        self._top_n = top_n

    def expand(self, silver):
        key = self._key
        tables = []
        for seconds in self._seconds:
            keyed = silver | f"Key{seconds}s" >> beam.Map(
                lambda r, s=seconds: ((s, bucket(micros_of(r["timestamp"]), s), *key(r)), r))
            tables.append(traffic_rows(keyed, self._table, seconds, self._mode,
                                       self._top_n, SummariseTraffic()))
        return tables | "AllWindowSizes" >> beam.Flatten()


class TrafficFromParts(beam.PTransform):
    """Streaming on batches: one PCollection per window size of ``((seconds, window start
    µs, *dimensions), Traffic)`` partials (a fragment's share of a key) → the table's
    rows, combined as the row-level gold combines rows."""

    def __init__(self, table: str, window_seconds: tuple[int, ...],
                 mode: Streaming, top_n: int = 20):
        super().__init__()
        self._table = table
        self._seconds = window_seconds
        self._mode = mode
        self._top_n = top_n

    def expand(self, parts):
        tables = [traffic_rows(pcoll, self._table, seconds, self._mode, self._top_n,
                               MergeTraffic())
                  for seconds, pcoll in zip(self._seconds, parts, strict=True)]
        return tables | "AllWindowSizes" >> beam.Flatten()


def traffic_rows(keyed, table: str, seconds: int, mode: Mode,
                 top_n: int, combine: beam.CombineFn):
    """``((seconds, window start µs, *dimensions), value)`` elements of one window size →
    the table's rows: ``combine`` (of rows, or of partial :class:`Traffic`) per key, in
    accumulating event-time windows in streaming; the top paths ranked per window."""
    names = DIMENSIONS[table][0]
    rows = (keyed
            | f"Windows{seconds}s" >> mode.windows(seconds, accumulate=True)
            | f"Summarise{seconds}s" >> beam.CombinePerKey(combine)
            | f"Format{seconds}s" >> beam.ParDo(_FormatFn(names)))
    if table == "web_top_paths":
        rows = (rows
                | f"ByWindow{seconds}s" >> beam.Map(lambda r: (micros_of(r["window_start"]), r))
                | f"GroupWindow{seconds}s" >> beam.GroupByKey()
                | f"KeepTop{seconds}s" >> beam.ParDo(_TopN(top_n)))
    # Window sizes differ: one table needs one windowing to be flattened.
    return rows | f"ToGlobal{seconds}s" >> mode.to_global()




class WebLogsGold(beam.PTransform):
    """Gold layer of the web logs: a dict of table name → rows."""

    def __init__(self, window_seconds: tuple[int, ...] = (MINUTE, HOUR),
                 mode: Mode = BATCH, top_n: int = 20):
        super().__init__()
        self._seconds = window_seconds
        self._mode = mode
        self._top_n = top_n

    def expand(self, silver):
        return {table: silver | f"Traffic_{table}" >> TrafficBy(
                    table, self._seconds, self._mode, self._top_n)
                for table in DIMENSIONS}
