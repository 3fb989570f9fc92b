"""Gold of the web logs on arrays: a span's silver rows → every traffic table's rows for the
windows inside the span.

The same tables as the row-level :class:`transforms.web_logs.row_gold.WebLogsGold`, with its
dimensions (:data:`.row_gold.DIMENSIONS`' columns and ``(unknown)`` spellings),
its counts and its sketch of unique visitors: each group's distinct visitors, found with
numpy, go into a :class:`~.row_gold.VisitorSketch`, whose estimate does not depend on
the order they came in, so it is the row-level one exactly. A span
holds whole windows of every size (see :func:`group_span`), so no window needs a second
pass.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.web_logs import (
    WEB_TOP_PATHS,
    WEB_TRAFFIC_BY_AGENT,
    WEB_TRAFFIC_BY_CITY,
    WEB_TRAFFIC_BY_COUNTRY,
    WEB_TRAFFIC_BY_STATUS,
)
from transforms.batches import conform, dense_codes
from transforms.web_logs.row_gold import UNKNOWN_PLACE, Traffic, VisitorSketch
from transforms.windowing import HOUR, MINUTE

_US = 1_000_000
_TS = pa.timestamp("us", tz="UTC")
#: The longest span one group may cover: windows must fit whole into it.
MAX_SPAN_S = 7 * 86_400


def group_span(window_seconds: tuple[int, ...]) -> int:
    """The span of one group: the least common multiple of the window sizes, so every
    epoch-aligned window of every size lies inside one span."""
    span = 1
    for seconds in window_seconds:
        span = span * seconds // math.gcd(span, seconds)
    if span > MAX_SPAN_S:
        raise ValueError(f"windows of {', '.join(f'{s}s' for s in window_seconds)} have no "
                         f"common multiple within {MAX_SPAN_S // 86_400} days: choose sizes "
                         "that divide each other (e.g. 1m,1h)")
    return span


def _unknown(column: pa.Array) -> pa.Array:
    return pc.fill_null(column, UNKNOWN_PLACE)


def _place(silver: pa.Table) -> dict[str, pa.Array]:
    return {"country_code": silver.column("geo_country_code"),
            "country": _unknown(silver.column("geo_country")),
            "geo_status": silver.column("geo_status")}


def _path_or_request(silver: pa.Table) -> pa.Array:
    """The path, or the request line when there is none (an empty path included)."""
    path = silver.column("path")
    has_path = pc.fill_null(pc.greater(pc.utf8_length(path), 0), False)
    return pc.if_else(has_path, path, silver.column("request"))


#: table → its dimension columns from a span's silver table.
DIMENSIONS = {
    WEB_TRAFFIC_BY_COUNTRY.name: _place,
    WEB_TRAFFIC_BY_CITY.name: lambda s: {
        **_place(s), "region": s.column("geo_region"), "city": _unknown(s.column("geo_city")),
        "latitude": s.column("geo_latitude"), "longitude": s.column("geo_longitude")},
    WEB_TRAFFIC_BY_STATUS.name: lambda s: {"status": s.column("status"),
                                           "status_class": s.column("status_class")},
    WEB_TRAFFIC_BY_AGENT.name: lambda s: {"browser": _unknown(s.column("browser")),
                                          "device_class": s.column("device_class"),
                                          "is_bot": s.column("is_bot")},
    WEB_TOP_PATHS.name: lambda s: {"path": _path_or_request(s)},
}
SCHEMAS = {s.name: s for s in (WEB_TRAFFIC_BY_COUNTRY, WEB_TRAFFIC_BY_CITY,
                               WEB_TRAFFIC_BY_STATUS, WEB_TRAFFIC_BY_AGENT, WEB_TOP_PATHS)}


def _groups(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(group id of each row, the first row of each group) over several columns of dense
    codes (-1 for null): folded into one integer key, densified only when the product of
    cardinalities could overflow, then one 1-D unique (a row-wise unique sorts rows as
    opaque bytes, several times slower)."""
    code, bound = keys[0] + 1, int(keys[0].max(initial=-1)) + 2
    for column in keys[1:]:
        size = int(column.max(initial=-1)) + 2
        if bound * size >= 1 << 62:
            _, code = np.unique(code, return_inverse=True)
            code, bound = code.reshape(-1), int(code.max(initial=0)) + 1
        code, bound = code * size + column + 1, bound * size
    _, first, gid = np.unique(code, return_index=True, return_inverse=True)
    return gid.reshape(-1), first


def _sums(gid: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    out = np.zeros(groups, dtype=np.int64)
    np.add.at(out, gid, values)
    return out


def visitor_sketches(gid: np.ndarray, visitors: np.ndarray, ids: pa.Array,
                     groups: int) -> list[VisitorSketch]:
    """Each group's sketch of its distinct visitors: the (group, visitor) pairs made
    distinct with numpy over the 64-bit ``visitors`` (see ``visitor_hashes``), then only
    those ``ids`` (the ``visitor_id`` strings, as BigQuery's functions hash them) go
    into the sketches."""
    order = np.lexsort((visitors, gid))
    g, v = gid[order], visitors[order]
    new = np.ones(len(g), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    counts = np.bincount(g[new], minlength=groups).tolist()
    distinct = ids.take(pa.array(order[new])).to_pylist()
    sketches, start = [], 0
    for count in counts:
        sketch = VisitorSketch()
        sketch.add_all(distinct[start:start + count])
        sketches.append(sketch)
        start += count
    return sketches


def _visitor_columns(sketches: list[VisitorSketch]) -> tuple[pa.Array, pa.Array]:
    pairs = [sketch.estimate_and_bytes() for sketch in sketches]
    return (pa.array([p[0] for p in pairs], pa.int64()),
            pa.array([p[1] for p in pairs], pa.binary()))


def _granularity(seconds: int) -> str:
    return {MINUTE: "minute", HOUR: "hour"}.get(seconds, f"{seconds}s")


class _Windows:
    """A silver table's rows grouped by (window of ``seconds``, the table's dimensions):
    the group of each row, the first row of each group, and the counts of each group."""

    def __init__(self, silver: pa.Table, dims: dict, dim_codes: list, seconds: int):
        micros = silver.column("timestamp").cast(pa.int64()).to_numpy()
        status = silver.column("status").fill_null(0).to_numpy()  # '-': not an error
        start = micros - micros % (seconds * _US)
        window = (start - start.min()) // (seconds * _US)  # dense enough: a span's windows
        self.gid, self.first = _groups([window] + dim_codes)
        self.groups = groups = len(self.first)
        self.start = start[self.first]
        gid = self.gid
        self.requests = np.bincount(gid, minlength=groups)
        self.bytes = _sums(gid, silver.column("bytes").fill_null(0).to_numpy(), groups)
        self.errors_4xx = _sums(gid, ((status >= 400) & (status < 500)).astype(np.int64),
                                groups)
        self.errors_5xx = _sums(gid, (status >= 500).astype(np.int64), groups)
        self.bots = _sums(gid, silver.column("is_bot").to_numpy(zero_copy_only=False)
                          .astype(np.int64), groups)
        first = pa.array(self.first)
        self.dims = {k: (v.combine_chunks() if isinstance(v, pa.ChunkedArray) else v).take(
            first) for k, v in dims.items()}


def traffic_table(name: str, silver: pa.Table, visitors: np.ndarray,
                  window_seconds: tuple[int, ...], top_n: int = 20) -> pa.Table:
    """One gold table's rows for every window of ``silver`` (a span's rows)."""
    schema = SCHEMAS[name]
    if not silver.num_rows:
        return schema.arrow_schema().empty_table()
    dims = DIMENSIONS[name](silver)
    dim_codes = [dense_codes(column) for column in dims.values()]
    ids = silver.column("visitor_id").combine_chunks()
    parts = []
    for seconds in window_seconds:
        w = _Windows(silver, dims, dim_codes, seconds)
        groups, requests = w.groups, w.requests
        unique, sketches = _visitor_columns(visitor_sketches(w.gid, visitors, ids, groups))
        cols = {
            "window_start": pa.array(w.start, pa.int64()).cast(_TS),
            "window_end": pa.array(w.start + seconds * _US, pa.int64()).cast(_TS),
            "granularity": pa.repeat(pa.scalar(_granularity(seconds)), groups),
            "pane_index": pa.repeat(pa.scalar(0, pa.int64()), groups),
            "pane_timing": pa.repeat(pa.scalar("ON_TIME"), groups),
            **w.dims,
            "requests": pa.array(requests, pa.int64()),
            "bytes": pa.array(w.bytes, pa.int64()),
            "errors_4xx": pa.array(w.errors_4xx, pa.int64()),
            "errors_5xx": pa.array(w.errors_5xx, pa.int64()),
            "error_rate": pa.array((w.errors_4xx + w.errors_5xx) / requests, pa.float64()),
            "bot_requests": pa.array(w.bots, pa.int64()),
            "unique_visitors": unique,
            "visitor_sketch": sketches,
        }
        if name == WEB_TOP_PATHS.name:
            paths = cols["path"].to_numpy(zero_copy_only=False)
            # Per window: most requests first, ties by path.
            order = np.lexsort((paths.astype(str), -requests, w.start))
            ws = w.start[order]
            rank = np.arange(len(order)) - np.searchsorted(ws, ws, side="left") + 1
            keep = order[rank <= top_n]
            cols = {k: v.take(pa.array(keep)) for k, v in cols.items()}
            cols["rank"] = pa.array(rank[rank <= top_n], pa.int64())
        parts.append(conform(pa.table(cols), schema))
    return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


def traffic_parts(name: str, silver: pa.Table, visitors: np.ndarray, seconds: int):
    """Streaming: a silver fragment → ((seconds, window start µs, *dimensions), Traffic) per
    window and dimension value, the element the row-level gold keys each row by, holding
    this fragment's share (its sketch merges with the other fragments')."""
    if not silver.num_rows:
        return
    dims = DIMENSIONS[name](silver)
    w = _Windows(silver, dims, [dense_codes(column) for column in dims.values()], seconds)
    sketches = visitor_sketches(w.gid, visitors, silver.column("visitor_id").combine_chunks(),
                                w.groups)
    values = list(zip(*(column.to_pylist() for column in w.dims.values()), strict=True))
    for j in range(w.groups):
        traffic = Traffic()
        traffic.requests, traffic.bytes = int(w.requests[j]), int(w.bytes[j])
        traffic.errors_4xx, traffic.errors_5xx = int(w.errors_4xx[j]), int(w.errors_5xx[j])
        traffic.bot_requests = int(w.bots[j])
        traffic.visitors = sketches[j]
        yield (seconds, int(w.start[j]), *values[j]), traffic


def gold_tables(silver: pa.Table, visitors: np.ndarray, window_seconds: tuple[int, ...],
                top_n: int = 20) -> dict[str, pa.Table]:
    return {name: traffic_table(name, silver, visitors, window_seconds, top_n)
            for name in DIMENSIONS}

