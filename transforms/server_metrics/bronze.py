"""Bronze on batches: a raw batch → (bronze table, dead letters).

The columns of the records a batch's JSON decodes cleanly are coerced all at once with
Arrow: numbers, strings and ISO 8601 timestamps with a zone. A record is taken off that
fast path whenever the vectorised check cannot prove it would give exactly what the
row-level :func:`.row_bronze.to_bronze` gives (a number sent as a string, a boolean,
an epoch timestamp, a regional shape, an empty or oversized payload, anything invalid):
those few go through ``to_bronze`` itself, so every dead letter has the reason and the
message it always had, and every accepted value is the same.

A payload of exactly the record's fields is decoded straight into typed values
(msgspec: strict about types in C, so a number sent as text or a boolean is refused
there, not coerced); any other JSON (unknown fields, a regional shape) is decoded to a
dict (orjson) and screened as before.
"""
from __future__ import annotations

from datetime import datetime

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from schemas.core import FieldType
from schemas.families import MISSING_PARTS
from schemas.server_metrics import SERVER_METRIC, SERVER_METRICS_BRONZE
from transforms.batches import (
    JSON,
    UNREADABLE,
    concat,
    conform,
    from_rows,
    raw_kind,
    raw_records,
    raw_watermark,
    unreadable_message,
)
from transforms.bronze import (
    EARLIEST,
    EPOCH,
    LATEST,
    MAX_PAYLOAD_BYTES,
    RawRecord,
    micros_of,
    parse_records,
)
from transforms.dead_letters import dead_letter
from transforms.server_metrics.row_bronze import to_bronze

_STRINGS = tuple(f.name for f in SERVER_METRIC.fields if f.type is FieldType.STRING)
_FLOATS = tuple(f.name for f in SERVER_METRIC.fields if f.type is FieldType.FLOAT64)
_REQUIRED = frozenset(f.name for f in SERVER_METRIC.fields if f.required)
_KNOWN = frozenset(SERVER_METRIC.names)
assert {f.type for f in SERVER_METRIC.fields} <= {FieldType.STRING, FieldType.FLOAT64,
                                                    FieldType.TIMESTAMP}

#: Timestamps the fast path takes: ISO 8601 with a zone, at most microseconds. Anything
#: else (epoch numbers, no zone, other spellings) is parsed by the row-level function.
_ISO_WITH_ZONE = (r"^\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
                  r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
#: Python's str.isspace() characters: a string starting or ending with one may be blank.
_SPACE = r"[\t-\r\x1c-\x20\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}" \
         r"\x{205f}\x{3000}]"
EDGE_SPACE = f"^{_SPACE}|{_SPACE}$"
#: The bytes a string starting (ending) with one of those characters starts (ends) with
#: in UTF-8: the ASCII ones, and the lead (last) bytes of the others.
_FIRST_BYTE = np.zeros(256, dtype=bool)
_LAST_BYTE = np.zeros(256, dtype=bool)
for _b in (*range(0x09, 0x0E), *range(0x1C, 0x21)):
    _FIRST_BYTE[_b] = _LAST_BYTE[_b] = True
_FIRST_BYTE[[0xC2, 0xE1, 0xE2, 0xE3]] = True
_LAST_BYTE[0x80:0xC0] = True
#: Payloads whose text shows a declared field holding a value of another JSON type (a
#: number as text, a boolean, which Arrow would take as 1 or 0, an object): the row-level
#: path gives them their exact outcome. Arrow's conversion refusing a value is the
#: safety net for whatever this misses (see ``_as_struct``).
_SUSPECT = ('"(' + "|".join(_FLOATS) + r')"\s*:\s*[^-0-9\sn]|"('
            + "|".join(_STRINGS + ("timestamp",)) + r')"\s*:\s*[^"\sn]')
_EARLIEST_US = (EARLIEST - EPOCH).days * 86_400_000_000
_LATEST_US = (LATEST - EPOCH).days * 86_400_000_000
_TS = pa.timestamp("us", tz="UTC")
_MAX_EXACT_INT = 2 ** 53
_US = 1_000_000


def _fast_float(v) -> bool:
    t = type(v)
    return v is None or t is float or (t is int and -_MAX_EXACT_INT <= v <= _MAX_EXACT_INT)


_STRUCT = pa.struct([(f.name, pa.float64() if f.type is FieldType.FLOAT64 else pa.string())
                     for f in SERVER_METRIC.fields])

#: A record of exactly the declared fields, each of its JSON type or null: what nearly
#: every sender sends. Anything else fails to decode into it and takes the dict path.
_Typed = msgspec.defstruct(
    "TypedServerMetric",
    [(f.name, (float if f.type is FieldType.FLOAT64 else str) | None, None)
     for f in SERVER_METRIC.fields],
    forbid_unknown_fields=True, gc=False)
_DECODE_TYPED = msgspec.json.Decoder(_Typed).decode
_NOT_TYPED = (msgspec.MsgspecError, ValueError)  # invalid UTF-8 is a ValueError
_AS_TUPLE = msgspec.structs.astuple


def _typed_struct(typed: list) -> pa.StructArray:
    # Arrow takes a struct's values as tuples in field order (the order ``_Typed``
    # declares them): 40 % less than one attribute getter and one array per field.
    return pa.array(list(map(_AS_TUPLE, typed)), type=_STRUCT)


def _screen(objs: list[dict]) -> set[int]:
    """Positions whose values Arrow would refuse (a number as text, an object, a huge
    integer): found one value at a time, only when a batch's conversion failed."""
    slow: set[int] = set()
    for name in _STRINGS + ("timestamp",):
        slow.update(j for j, o in enumerate(objs)
                    if (v := o.get(name)) is not None and type(v) is not str)
    for name in _FLOATS:
        slow.update(j for j, o in enumerate(objs) if not _fast_float(o.get(name)))
    return slow


def _as_struct(objs: list[dict]) -> tuple[pa.StructArray | None, set[int]]:
    """The records as one Arrow struct array, less those Arrow refuses (found by halving
    the failing part, so a few bad records cost a few conversions, not a Python pass)."""
    chunks: list[pa.Array] = []
    refused: set[int] = set()

    def convert(lo: int, hi: int) -> None:
        try:
            chunks.append(pa.array(objs[lo:hi], type=_STRUCT))
            return
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        if hi - lo <= 16:
            bad = {lo + j for j in _screen(objs[lo:hi])}
            refused.update(bad)
            good = [objs[j] for j in range(lo, hi) if j not in bad]
            if good:
                try:
                    chunks.append(pa.array(good, type=_STRUCT))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    refused.update(range(lo, hi))  # the screen missed it
            return
        mid = (lo + hi) // 2
        convert(lo, mid)
        convert(mid, hi)

    convert(0, len(objs))
    if not chunks:
        return None, refused
    return (pa.concat_arrays(chunks) if len(chunks) > 1 else chunks[0]), refused


def edge_space(arr: pa.Array) -> np.ndarray:
    """Which strings start or end with a space (``EDGE_SPACE``): their first and last
    bytes screened with numpy, and only the few that may (a non-ASCII character at an
    edge) matched with the regular expression, which costs ~20 ns a string."""
    n = len(arr)
    data = arr.buffers()[2]
    if not n or data is None or not data.size:
        return np.zeros(n, dtype=bool)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + n + 1]
    start, end = offsets[:-1], offsets[1:]
    filled = end > start
    data = np.frombuffer(data, np.uint8)
    maybe = filled & (_FIRST_BYTE[data[np.where(filled, start, 0)]]
                      | _LAST_BYTE[data[np.where(filled, end - 1, 0)]])
    if arr.null_count:
        maybe &= arr.is_valid().to_numpy(zero_copy_only=False)
    at = np.flatnonzero(maybe)
    if len(at):
        matched = pc.match_substring_regex(arr.take(pa.array(at)), EDGE_SPACE)
        maybe[at] = matched.fill_null(False).to_numpy(zero_copy_only=False)
    return maybe


def _coerce(struct: pa.StructArray) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Bronze's columns from the decoded records, and which records the vectorised checks
    cannot vouch for (blank required strings, no measurement, a timestamp the fast path
    does not read or that is out of range)."""
    n = len(struct)
    slow = np.zeros(n, dtype=bool)
    cols: dict[str, pa.Array] = {}
    for name in _STRINGS:
        arr = struct.field(name)
        edges = edge_space(arr)
        if edges.any():
            values = arr.to_pylist()
            for j in np.flatnonzero(edges):
                if not values[j].strip():
                    values[j] = None  # blank means null, as a missing field
            arr = pa.array(values, pa.string())
        if name in _REQUIRED and arr.null_count:
            slow |= arr.is_null().to_numpy(zero_copy_only=False)
        cols[name] = arr
    measured = np.zeros(n, dtype=bool)
    for name in _FLOATS:
        arr = struct.field(name)
        measured |= arr.is_valid().to_numpy(zero_copy_only=False)
        cols[name] = arr
    slow |= ~measured  # no measurement at all: the row-level path says so
    text = struct.field("timestamp")
    shaped = pc.match_substring_regex(text, _ISO_WITH_ZONE).fill_null(False)
    slow |= ~shaped.to_numpy(zero_copy_only=False)
    text = pc.if_else(shaped, text, pa.scalar("2000-01-01T00:00:00Z"))
    try:
        ts = pc.cast(text, _TS)
    except pa.ArrowInvalid:
        # A date that does not exist (a 30th of February): let Python say which.
        values = text.to_pylist()
        for j in np.flatnonzero(~slow):
            try:
                datetime.fromisoformat(values[j])
            except ValueError:
                slow[j] = True
                values[j] = "2000-01-01T00:00:00Z"
        try:
            ts = pc.cast(pa.array(values, pa.string()), _TS)
        except pa.ArrowInvalid:
            return {}, np.ones(n, dtype=bool)
    micros = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    slow |= (micros < _EARLIEST_US) | (micros >= _LATEST_US)
    cols["timestamp"] = ts
    return cols, slow


def _extra_fields(objs: list[dict]) -> tuple[pa.Array, set[int]]:
    """The unknown fields of each record as JSON text, and the positions whose fields
    cannot be written back (the row-level path words their dead letters)."""
    known = _KNOWN
    values: list[str | None] = [None] * len(objs)
    refused = set()
    for j, o in enumerate(objs):
        if not known.issuperset(o):
            extra = {k: v for k, v in o.items() if k not in known}
            try:
                values[j] = orjson.dumps(extra, default=str).decode()
            except TypeError:  # nested past orjson's limit
                refused.add(j)
    return pa.array(values, pa.string()), refused


class BronzeBatch:
    """What bronze made of one raw batch."""

    __slots__ = ("records", "dead_letters", "with_extra_fields")

    def __init__(self, records: pa.Table, dead_letters: list[dict], with_extra_fields: int):
        self.records = records
        self.dead_letters = dead_letters
        self.with_extra_fields = with_extra_fields


def bronze_batch(raw: pa.Table, now: datetime, step: str = "ParseServerMetric",
                 allowed_lateness_s: int | None = None,
                 max_future_s: float | None = None) -> BronzeBatch:
    """A raw batch → bronze rows of :data:`SERVER_METRICS_BRONZE` and dead letters.

    With ``allowed_lateness_s`` (streaming), a record whose minute had closed under the
    watermark its batch arrived with is dead-lettered ``late``, as
    :func:`transforms.bronze.check_arrival` says."""
    watermark = raw_watermark(raw) if allowed_lateness_s is not None else None
    if raw_kind(raw) == UNREADABLE:
        message = unreadable_message(raw)
        return BronzeBatch(_empty(), [dead_letter(
            layer="bronze", step=step, reason="unreadable_input",
            message=message, payload=b"", source=source, now=now)
            for source in raw.column("source").to_pylist()], 0)
    if raw_kind(raw) != JSON:
        return _row_level(list(raw_records(raw)), now, step,
                          allowed_lateness_s if watermark is not None else None,
                          max_future_s)
    column = raw.column("payload")
    payloads = column.to_pylist()
    oversized = pc.greater(pc.binary_length(column), MAX_PAYLOAD_BYTES).fill_null(True)
    big = oversized.to_numpy(zero_copy_only=False) if pc.any(oversized).as_py() else None
    typed, typed_at, untyped = _decode_typed(payloads, big)
    objs, fast, slow = [], [], []
    if untyped:
        suspect = pc.match_substring_regex(column.take(pa.array(untyped, pa.int64())),
                                           _SUSPECT).fill_null(True).to_pylist()
        loads = orjson.loads
        for i, flagged in zip(untyped, suspect, strict=True):
            if flagged or (big is not None and big[i]):
                slow.append(i)
                continue
            try:
                o = loads(payloads[i])
            except orjson.JSONDecodeError:
                slow.append(i)
                continue
            # canonical (not a regional shape, nor an incomplete join of family parts)
            if type(o) is dict and "server_id" in o and MISSING_PARTS not in o:
                objs.append(o)
                fast.append(i)
            else:
                slow.append(i)
    struct, extra_fields = None, None

    def without(refused: set[int]):
        """The dict path less ``refused``, which the row-level path words."""
        nonlocal objs, fast, extra_fields
        slow.extend(fast[j] for j in refused)
        keep = [j for j in range(len(objs)) if j not in refused]
        objs, fast = [objs[j] for j in keep], [fast[j] for j in keep]
        extra_fields = extra_fields.take(pa.array(keep, pa.int64()))

    if objs:
        extra_fields, unwritable = _extra_fields(objs)
        if unwritable:
            without(unwritable)
    if objs:
        struct, refused = _as_struct(objs)  # of the records Arrow takes
        if refused:
            without(refused)
    fast = np.asarray(fast, dtype=np.int64)
    if typed:
        struct, extra_fields, fast = _with_typed(_typed_struct(typed), typed_at, struct,
                                                 extra_fields, fast)
    tables, extra = [], 0
    if struct is not None:
        cols, flagged = _coerce(struct)

        micros = None  # the event times, for the checks against the clock and watermark

        def leave_fast_path(mask: np.ndarray):
            """The records of ``mask`` to the row-level path, which words their outcome."""
            nonlocal cols, extra_fields, fast, micros
            slow.extend(fast[mask].tolist())
            keep = pa.array(np.flatnonzero(~mask))
            cols = {k: v.take(keep) for k, v in cols.items()}
            extra_fields, fast = extra_fields.take(keep), fast[~mask]
            if micros is not None:
                micros = micros[~mask]

        if flagged.any():
            leave_fast_path(flagged)
        if (max_future_s is not None or watermark is not None) and len(fast):
            micros = cols["timestamp"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        if max_future_s is not None and len(fast):
            ahead = micros > micros_of(now) + round(max_future_s * _US)
            if ahead.any():  # a few, by definition
                leave_fast_path(ahead)
        if watermark is not None and len(fast):
            closes = micros - micros % 60_000_000 + 60_000_000 + allowed_lateness_s * _US
            late = closes <= watermark
            if late.any():  # a few, by definition
                leave_fast_path(late)
        if len(fast):
            n = len(fast)
            cols["ingest_timestamp"] = pa.repeat(pa.scalar(now, _TS), n)
            cols["source"] = raw.column("source").take(pa.array(fast)).combine_chunks()
            cols["extra_fields"] = extra_fields
            extra = n - extra_fields.null_count
            tables.append(conform(pa.table(cols), SERVER_METRICS_BRONZE))
    if not slow:
        return BronzeBatch(tables[0] if tables else _empty(), [], extra)
    slow.sort()
    sources = raw.column("source").take(pa.array(slow, pa.int64())).to_pylist()
    rest = _row_level([RawRecord(payloads[i], s, watermark=watermark)
                       for i, s in zip(slow, sources, strict=True)],
                      now, step, allowed_lateness_s if watermark is not None else None,
                      max_future_s)
    tables.append(rest.records)
    return BronzeBatch(concat(tables, SERVER_METRICS_BRONZE), rest.dead_letters,
                       extra + rest.with_extra_fields)


def _decode_typed(payloads: list[bytes], big: np.ndarray | None):
    """The payloads that decode into a record of exactly the declared fields (and their
    positions), and the positions of the rest (``big``: those over the size limit)."""
    decode, typed, typed_at, untyped = _DECODE_TYPED, [], [], []
    for i, p in enumerate(payloads):
        if big is not None and big[i]:
            untyped.append(i)
            continue
        try:
            typed.append(decode(p))
        except _NOT_TYPED:
            untyped.append(i)
        else:
            typed_at.append(i)
    return typed, typed_at, untyped


def _with_typed(typed: pa.StructArray, typed_at: list[int], struct, extra_fields,
                fast: np.ndarray):
    """The typed records (no unknown fields) joined with the dict path's, back in arrival
    order: (struct, extra fields, positions)."""
    none = pa.nulls(len(typed_at), pa.string())
    if struct is None:
        return typed, none, np.asarray(typed_at, dtype=np.int64)
    positions = np.concatenate([np.asarray(typed_at, dtype=np.int64), fast])
    order = pa.array(np.argsort(positions, kind="stable"))
    return (pa.concat_arrays([typed, struct]).take(order),
            pa.concat_arrays([none, extra_fields]).take(order),
            positions[order.to_numpy()])


def _empty() -> pa.Table:
    return SERVER_METRICS_BRONZE.arrow_schema().empty_table()


def _row_level(raws: list[RawRecord], now, step,
               allowed_lateness_s: int | None = None,
               max_future_s: float | None = None) -> BronzeBatch:
    """The row-level bronze (``to_bronze``, then ``check_arrival`` in streaming) over
    records, exactly as the per-record DoFn."""
    rows, dead = parse_records(raws, to_bronze, now, step, allowed_lateness_s, max_future_s)
    extra = sum(1 for r in rows if r["extra_fields"] is not None)
    return BronzeBatch(from_rows(rows, SERVER_METRICS_BRONZE) if rows else _empty(), dead,
                       extra)

