"""Silver on batches: a bronze table → (silver table, dead letters), and the dedupe of one
server's records.

Ranges, vocabulary and derived columns are computed on whole columns. A record any
vectorised check flags goes through the row-level :func:`.row_silver.to_silver`,
so its dead letter has the reason and message it always had. Names are canonicalised
once per distinct value, not per record.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.server_metrics import SERVER_METRIC, SERVER_METRICS_SILVER
from transforms.batches import concat, conform, from_rows, rows_of
from transforms.dead_letters import dead_letter, rejection_of
from transforms.server_metrics.bronze import edge_space
from transforms.server_metrics.row_silver import (
    _RANGES,
    SERVER_TYPE_ALIASES,
    _canonical_location,
    _copy_rank,
    to_silver,
)
from transforms.server_metrics.rules import ServerMetricsRules

_SERVER_TYPES = frozenset(SERVER_METRIC.field("server_type").choices)


def floats(table: pa.Table, name: str) -> np.ndarray:
    """A float column as numpy, null as NaN (bronze never lets a NaN in)."""
    return table.column(name).to_numpy()


def _map_distinct(column: pa.ChunkedArray, fn) -> pa.Array:
    """``fn`` applied once per distinct value (names are few; records are many)."""
    distinct = pc.unique(column)
    mapped = pa.array([fn(v) for v in distinct.to_pylist()], pa.string())
    return mapped.take(pc.index_in(column, distinct)).combine_chunks() \
        if isinstance(column, pa.ChunkedArray) else mapped.take(pc.index_in(column, distinct))


def _strip(column) -> pa.Array:
    """Python's ``str.strip`` on the values that need it (few)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    edges = edge_space(column)
    if not edges.any():
        return column
    values = column.to_pylist()
    for j in np.flatnonzero(edges):
        values[j] = values[j].strip()
    return pa.array(values, pa.string())


def _server_type(value):
    if value is None:
        return None
    value = value.strip().lower()
    return SERVER_TYPE_ALIASES.get(value, value)


class SilverBatch:
    __slots__ = ("records", "dead_letters")

    def __init__(self, records: pa.Table, dead_letters: list[dict]):
        self.records = records
        self.dead_letters = dead_letters


def with_inventory(bronze: pa.Table, inventory) -> pa.Table:
    """Bronze rows with what the inventory says of their servers: a missing name, type or
    location filled in, and a regional record's location (its region, by default)
    replaced by the inventory's. The checks that follow apply to these values."""
    ids = pa.array([s.server_id for s in inventory.servers], pa.string())
    index = pc.index_in(pc.utf8_trim_whitespace(bronze.column("server_id")), value_set=ids)
    listed = pc.is_valid(index)
    if not pc.any(listed).as_py():
        return bronze
    for name in ("server_name", "server_type", "location"):
        known = pa.array([getattr(s, name) for s in inventory.servers], pa.string())
        given = known.take(index)
        current = bronze.column(name)
        replace = pc.and_(pc.is_valid(given), pc.is_null(current))
        if name == "location":  # a region stands in for a location only until one is known
            defaulted = pc.fill_null(pc.equal(current, bronze.column("region")), False)
            replace = pc.or_(replace, pc.and_(pc.is_valid(given), defaulted))
        bronze = bronze.set_column(bronze.schema.get_field_index(name), name,
                                   pc.if_else(replace, given, current))
    return bronze


def silver_batch(bronze: pa.Table, rules: ServerMetricsRules) -> SilverBatch:
    """Range-checked, canonical rows of :data:`SERVER_METRICS_SILVER` (not yet
    deduplicated) and the rejections."""
    n = bronze.num_rows
    if not n:
        return SilverBatch(SERVER_METRICS_SILVER.arrow_schema().empty_table(), [])
    if rules.inventory:
        bronze = with_inventory(bronze, rules.inventory)
    flagged = np.zeros(n, dtype=bool)
    for name, lo, hi, _ in _RANGES:
        v = floats(bronze, name)
        if lo is not None:
            flagged |= v < lo
        if hi is not None:
            flagged |= v > hi
    server_type = _map_distinct(bronze.column("server_type"), _server_type)
    known = pc.is_in(server_type, pa.array(sorted(_SERVER_TYPES))).to_numpy(
        zero_copy_only=False)
    flagged |= ~known & server_type.is_valid().to_numpy(zero_copy_only=False)
    location = _map_distinct(bronze.column("location"), _canonical_location)
    if rules.location_names:
        listed = pc.is_in(location, pa.array(sorted(rules.location_names))).to_numpy(
            zero_copy_only=False)
        flagged |= ~listed & location.is_valid().to_numpy(zero_copy_only=False)
    cpu, memory = floats(bronze, "cpu_usage"), floats(bronze, "memory_usage")
    ts = bronze.column("timestamp")
    ts_us = ts.cast(pa.int64()).to_numpy()
    ingest_us = bronze.column("ingest_timestamp").cast(pa.int64()).to_numpy()
    cols = {name: bronze.column(name) for name in SERVER_METRICS_SILVER.names
            if name in bronze.schema.names}
    cols.update(
        server_id=_strip(bronze.column("server_id")),
        server_name=_strip(bronze.column("server_name")),
        server_type=server_type,
        location=location,
        is_high_utilization=pa.array((cpu > rules.high_cpu_threshold)
                                     | (memory > rules.high_memory_threshold)),
        metric_date=ts.cast(pa.date32()),
        hour_of_day=pc.hour(ts),
        processing_delay_ms=pa.array(np.floor_divide(ingest_us - ts_us, 1000)),
    )
    table = conform(pa.table(cols), SERVER_METRICS_SILVER)
    if not flagged.any():
        return SilverBatch(table, [])
    accepted, dead = [], []
    for row in rows_of(bronze.filter(pa.array(flagged))):
        try:
            accepted.append(to_silver(row, rules))
        except Exception as exc:  # noqa: BLE001 - one bad record must never stop the pipeline
            reason, message, _ = rejection_of(exc)
            dead.append(dead_letter(
                layer="silver", step="CheckServerMetric",
                reason=reason, message=message, payload=row,
                source=row.get("source"), event_timestamp=row.get("timestamp")))
    kept = table.filter(pa.array(~flagged))
    if accepted:
        kept = concat([kept, from_rows(accepted, SERVER_METRICS_SILVER)], SERVER_METRICS_SILVER)
    return SilverBatch(kept, dead)


def deduplicate(records: pa.Table, known: set[int] | None = None) -> SilverBatch:
    """One server's silver records (all of them for the span they cover) → one record per
    event time, sorted by event time; the other copies become ``duplicate_event`` dead
    letters. Which copy survives is decided by the row-level ``_copy_rank``, so it does
    not depend on arrival order. Streaming passes the event times (µs) ``known`` from
    earlier panes: a record at one of those is a copy too."""
    times = records.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.argsort(times, kind="stable")
    micros = times[order]
    repeated = np.flatnonzero(micros[1:] == micros[:-1]) + 1
    seen = (np.flatnonzero(np.isin(micros, np.fromiter(known, np.int64, len(known))))
            if known else np.zeros(0, np.int64))
    if not len(repeated) and not len(seen):
        return SilverBatch(records.take(order), [])
    first = np.unique(np.concatenate([repeated - 1, repeated, seen]))
    by_time: dict[int, list[tuple[int, dict]]] = {}  # event time → (row, record) copies
    for m, j, row in zip(micros[first].tolist(), order[first].tolist(),
                         rows_of(records.take(order[first])), strict=True):
        by_time.setdefault(m, []).append((j, row))
    dead, winners = [], []
    now = datetime.now(timezone.utc)
    for m, rows in by_time.items():
        rows.sort(key=lambda copy: _copy_rank(copy[1]))
        if known and m in known:
            kept = rows[0][1]  # only for the wording: the kept one came in an earlier pane
        else:
            j, kept = rows.pop(0)
            winners.append(j)
        for _, dup in rows:
            dead.append(dead_letter(
                layer="silver", step="DeduplicateEvents",
                reason="duplicate_event",
                message=f"another record of server {kept['server_id']} at "
                        f"{kept['timestamp'].isoformat()} was kept",
                payload=dup, source=dup.get("source"), event_timestamp=dup["timestamp"],
                now=now))
    unique = np.ones(len(order), dtype=bool)
    unique[first] = False
    # The surviving rows, each copy's winner among them, taken once in event-time order
    # (after the deduplication no two share a time).
    keep = np.concatenate([order[unique], np.asarray(winners, dtype=np.int64)])
    return SilverBatch(records.take(keep[np.argsort(times[keep], kind="stable")]), dead)
