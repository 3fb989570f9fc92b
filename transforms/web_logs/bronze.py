"""Bronze of the web logs on batches: a raw batch of log lines → (bronze table, dead letters).

One regular expression runs over the whole batch at once (``pyarrow.compute.extract_regex``,
RE2) and takes every line of the usual shape: printable-ASCII tokens, quoted fields without
escapes, a ``dd/Mon/yyyy:HH:MM:SS ±hhmm`` time, a 3-digit status and a byte count that fits
64 bits. The time becomes epoch microseconds with numpy, the request line is split by a
second expression, and each distinct client address is validated and normalised once.

A line that pattern does not vouch for (an escape, a host name, IPv6 in brackets, a date
that does not exist, a time out of range, bytes that are not UTF-8, anything malformed)
goes through the row-level :func:`transforms.web_logs.access_log.to_web_log_bronze` itself, so each
accepted value and each dead letter's reason and message are the row-level ones.
"""
from __future__ import annotations

import functools
import ipaddress
import json
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.web_logs import WEB_LOGS_BRONZE
from transforms.batches import concat, conform, from_rows, raw_records, raw_watermark
from transforms.bronze import (
    EPOCH,
    LATEST,
    MAX_PAYLOAD_BYTES,
    micros_of,
    parse_records,
)
from transforms.web_logs.access_log import (
    LOG_EARLIEST,
    MAX_INT64,
    LogFormat,
    to_web_log_bronze,
)

STEP = "ParseAccessLog"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: A token as the row-level ``\S+`` reads it, in printable ASCII without a backslash (a
#: line with an escape anywhere takes the row-level path, which unescapes).
_TOKEN = r"[!-\[\]-~]+"
_QUOTED = r'"[^"\\]*"'
_LINE = (
    rf"^(?P<host>{_TOKEN}) (?P<ident>{_TOKEN}) (?P<user>{_TOKEN}) "
    r"\[(?P<day>[0-9]{2})/(?P<month>" + "|".join(_MONTHS) + r")/(?P<year>[0-9]{4})"
    r":(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9]):(?P<second>[0-5][0-9])"
    r" (?P<sign>[+-])(?P<zh>[01][0-9]|2[0-3])(?P<zm>[0-5][0-9])\] "
    r'"(?P<request>[^"\\]*)" (?P<status>[0-9]{3}) (?P<bytes>-|[0-9]{1,19})'
    # Optional groups capture their leading space and quotes: an absent field is "" and a
    # present empty one ' ""', which the row-level parser tells apart too.
    # What follows: whole tokens, quoted ones closed (the row-level path words the dead
    # letter of a quote left open, or reads the escapes).
    rf'(?P<referrer>(?: {_QUOTED})?)(?P<agent>(?: {_QUOTED})?)(?: +(?:{_QUOTED}|[^ "\\\r]+))* *$'
)
#: nginx's ``main``: the same up to the user agent, which must be there, then the
#: X-Forwarded-For field and nothing else.
_NGINX_MAIN = (_LINE[:_LINE.index("(?P<referrer>")]
               + rf'(?P<referrer> {_QUOTED})(?P<agent> {_QUOTED})(?P<forwarded> {_QUOTED}) *$')
_PATTERNS = {"combined": _LINE, "nginx_main": _NGINX_MAIN}
#: ``transforms.web_logs.access_log.split_request``: METHOD target [HTTP/x].
_REQUEST = r"^(?P<method>[A-Z][A-Z_-]{0,19}) (?P<target>[^ ]+)(?: (?P<protocol>HTTP/[^ ]*))?$"
_EARLIEST_US = (LOG_EARLIEST - EPOCH).days * 86_400_000_000
_LATEST_US = (LATEST - EPOCH).days * 86_400_000_000
_TS = pa.timestamp("us", tz="UTC")
_US = 1_000_000


@functools.lru_cache(maxsize=100_000)
def normalised_ip(host: str) -> str | None:
    """The address as the row-level parser stores it; None when it is not one (that line
    takes the row-level path, which words the dead letter)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _ints(column: pa.Array) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)


def _epoch_micros(parts: pa.StructArray, ok: np.ndarray,
                  earliest_us: int = _EARLIEST_US) -> tuple[np.ndarray, np.ndarray]:
    """Epoch microseconds of the matched times, and which of them are real dates inside
    bronze's accepted range (the others take the row-level path)."""
    n = len(parts)
    matched = pa.array(ok)

    def field(name: str, default: str) -> pa.Array:  # a stand-in where the line failed
        return pc.if_else(matched, parts.field(name), pa.scalar(default))

    def safe(name: str, default: str) -> np.ndarray:
        return _ints(field(name, default))

    year, day = safe("year", "2000"), safe("day", "01")
    month = pc.index_in(field("month", "Jan"), value_set=pa.array(_MONTHS)).to_numpy(
        zero_copy_only=False)
    months = (year - 1970) * 12 + month
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    following = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    real = (day >= 1) & (day <= following - first) & (year >= 1)
    seconds = ((first + day - 1) * 86_400 + safe("hour", "00") * 3600
               + safe("minute", "00") * 60 + safe("second", "00"))
    offset = safe("zh", "00") * 3600 + safe("zm", "00") * 60
    west = pc.equal(parts.field("sign"), "-").fill_null(False).to_numpy(zero_copy_only=False)
    micros = (seconds - np.where(west, -offset, offset)) * _US
    inside = (micros >= earliest_us) & (micros < _LATEST_US)
    return micros, (ok & real & inside) if n else ok


class WebBronzeBatch:
    """What bronze made of one raw batch of log lines."""

    __slots__ = ("records", "dead_letters")

    def __init__(self, records: pa.Table, dead_letters: list[dict]):
        self.records = records
        self.dead_letters = dead_letters


def _utf8(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The payloads as text, and which are not UTF-8 (blanked here; the row-level path
    keeps them as Apache would log them)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    try:
        return column.cast(pa.string()), np.zeros(len(column), dtype=bool)
    except pa.ArrowInvalid:
        values = column.to_pylist()
        bad = np.zeros(len(values), dtype=bool)
        for i, value in enumerate(values):
            try:
                value.decode("utf-8")
            except (UnicodeDecodeError, AttributeError):
                bad[i] = True
                values[i] = b""
        return pa.array(values, pa.binary()).cast(pa.string()), bad


def _dash(column: pa.Array) -> pa.Array:
    """'-' and '' are absent, as ``access_log._dash`` says."""
    empty = pc.or_(pc.equal(column, "-"), pc.equal(column, ""))
    return pc.if_else(empty, pa.scalar(None, pa.string()), column)


def _quoted(column: pa.Array) -> pa.Array:
    """' "text"' → 'text' (present), '' → null (absent)."""
    present = pc.greater(pc.utf8_length(column), 0)
    inner = pc.utf8_slice_codeunits(column, 2, -1)
    return pc.if_else(present, inner, pa.scalar(None, pa.string()))


def web_bronze_batch(raw: pa.Table, now: datetime, step: str = STEP,
                     allowed_lateness_s: int | None = None, max_future_s: float | None = None,
                     log_format: LogFormat = LogFormat()) -> WebBronzeBatch:
    """A raw batch of log lines → bronze rows of :data:`WEB_LOGS_BRONZE` and dead letters,
    exactly what the row-level parser gives line by line.

    With ``allowed_lateness_s`` (streaming), a line whose minute had closed under the
    watermark its batch arrived with is dead-lettered ``late``, as
    :func:`transforms.bronze.check_arrival` says."""
    watermark = raw_watermark(raw) if allowed_lateness_s is not None else None
    n = raw.num_rows
    if not n:
        return WebBronzeBatch(_empty(), [])
    if log_format.is_json:  # a JSON decode a line: one tight loop, no element per line
        return row_level(raw, now, step, allowed_lateness_s, max_future_s, log_format)
    if log_format.compiled is not None:  # a preset or a format string
        return _declared_batch(raw, now, step, allowed_lateness_s, max_future_s, log_format)
    payload = raw.column("payload")
    text, not_utf8 = _utf8(payload)
    parts = pc.extract_regex(text, _PATTERNS[log_format.name])
    ok = parts.is_valid().to_numpy(zero_copy_only=False) & ~not_utf8
    too_long = pc.greater(pc.binary_length(payload), MAX_PAYLOAD_BYTES).to_numpy(
        zero_copy_only=False)
    ok &= ~too_long
    micros, ok = _epoch_micros(parts, ok, micros_of(log_format.earliest))
    bytes_text = parts.field("bytes")
    # Nineteen digits can exceed 2^63 - 1: those go the row-level way (a dead letter).
    huge = pc.and_(pc.equal(pc.utf8_length(bytes_text), 19),
                   pc.greater(bytes_text, str(MAX_INT64))).fill_null(False)
    ok &= ~huge.to_numpy(zero_copy_only=False)
    client_of = _clients(parts.field("host"))
    ok &= client_of.is_valid().to_numpy(zero_copy_only=False)
    ok &= _in_time(micros, now, max_future_s, watermark, allowed_lateness_s)

    fast = np.flatnonzero(ok)
    tables = []
    if len(fast):
        take = pa.array(fast)
        p = parts.take(take)
        request = p.field("request")
        referrer, agent = p.field("referrer"), p.field("agent")
        combined = pc.greater(pc.utf8_length(referrer), 0)
        size_text = p.field("bytes")
        size = pc.if_else(pc.equal(size_text, "-"), pa.scalar(None, pa.int64()),
                          pc.cast(pc.if_else(pc.equal(size_text, "-"), "0", size_text),
                                  pa.int64()))
        cols = {
            "client_ip": client_of.take(take),
            "client_host": pa.nulls(len(fast), pa.string()),  # host names: row-level path
            "ident": _dash(p.field("ident")),
            "auth_user": _dash(p.field("user")),
            "timestamp": pa.array(micros[fast], pa.int64()).cast(_TS),
            **_request_parts(request),
            "request": request,
            "status": pc.cast(p.field("status"), pa.int64()),
            "bytes": size,
            "referrer": _dash(_quoted(referrer)),
            "user_agent": _dash(_quoted(agent)),
            "forwarded_for": (_dash(_quoted(p.field("forwarded")))
                              if log_format.name == "nginx_main"
                              else pa.nulls(len(fast), pa.string())),
            "log_format": (pa.repeat(pa.scalar(log_format.name), len(fast))
                           if log_format.name != "combined"
                           else pc.if_else(combined, "combined", "common")),
            "ingest_timestamp": pa.repeat(pa.scalar(now, _TS), len(fast)),
            "source": raw.column("source").take(take).combine_chunks(),
        }
        tables.append(_bronze(cols, len(fast)))
    return _with_the_rest(tables, raw, ~ok, now, step,
                          allowed_lateness_s if watermark is not None else None,
                          max_future_s, log_format)


def _bronze(columns: dict, rows: int) -> pa.Table:
    """Bronze columns read → a bronze table; the columns the format has no field for
    (the directives of other formats) are null."""
    return conform(pa.table({f.name: columns.get(f.name, pa.nulls(rows))
                             for f in WEB_LOGS_BRONZE.fields}), WEB_LOGS_BRONZE)


def _with_the_rest(tables: list, raw: pa.Table, rest: np.ndarray, now: datetime,
                   step: str, allowed_lateness_s: int | None,
                   max_future_s: float | None, log_format: LogFormat) -> WebBronzeBatch:
    """The vectorised rows (``tables``) and the ``rest`` of the batch read by the
    row-level parser, which also words every dead letter."""
    slow = np.flatnonzero(rest)
    if not len(slow):
        return WebBronzeBatch(tables[0], [])
    other = row_level(raw.take(pa.array(slow)), now, step, allowed_lateness_s,
                      max_future_s, log_format)
    tables.append(other.records)
    return WebBronzeBatch(concat(tables, WEB_LOGS_BRONZE), other.dead_letters)


def _clients(hosts: pa.Array) -> pa.Array:
    """Each ``%h`` as the row-level parser stores it, validated once per distinct value;
    null where it is not an address (the row-level path reads host names)."""
    hosts = hosts.dictionary_encode()
    clients = [normalised_ip(h) for h in hosts.dictionary.to_pylist()]
    return pa.array(clients, pa.string()).take(hosts.indices)


def _in_time(micros: np.ndarray, now: datetime, max_future_s: float | None,
             watermark: int | None, allowed_lateness_s: int | None) -> np.ndarray:
    """The lines neither too far ahead nor late; the few others take the row-level path,
    which words their dead letters."""
    ok = np.ones(len(micros), dtype=bool)
    if max_future_s is not None:
        ok &= micros <= micros_of(now) + round(max_future_s * _US)
    if watermark is not None:
        closes = micros - micros % (60 * _US) + (60 + allowed_lateness_s) * _US
        ok &= closes > watermark
    return ok


def _request_parts(request: pa.Array) -> dict[str, pa.Array]:
    """The request line split as ``access_log.split_request`` does: method, path, query
    and protocol, null when the line is not a request."""
    split = pc.extract_regex(request, _REQUEST)
    is_request = split.is_valid()
    target = split.field("target")
    path_query = pc.split_pattern(target, "?", max_splits=1)
    null = pa.scalar(None, pa.string())
    protocol = split.field("protocol")
    return {
        "method": pc.if_else(is_request, split.field("method"), null),
        "path": pc.if_else(is_request, pc.list_element(path_query, 0), null),
        "query": pc.if_else(pc.and_(is_request, pc.match_substring(target, "?")),
                            _second(path_query), null),
        "protocol": pc.if_else(pc.and_(is_request, pc.greater(pc.utf8_length(protocol), 0)),
                               protocol, null)}


def _second(parts: pa.Array) -> pa.Array:
    """The second element of each list of one or two strings (null when there is one)."""
    lengths = pc.list_value_length(parts)
    padded = pc.if_else(pc.greater(lengths, 1), parts,
                        pa.scalar(["", ""], pa.list_(pa.string())))
    return pc.list_element(padded, 1)


def _empty() -> pa.Table:
    return WEB_LOGS_BRONZE.arrow_schema().empty_table()


def row_level(raw: pa.Table, now: datetime, step: str = STEP, allowed_lateness_s: int | None = None,
              max_future_s: float | None = None,
              log_format: LogFormat = LogFormat()) -> WebBronzeBatch:
    """The row-level bronze over a raw batch, exactly as the per-record DoFn (which, in
    streaming, also judges arrival: ``check_arrival``)."""
    parse = functools.partial(to_web_log_bronze, log_format=log_format)
    rows, dead = parse_records(raw_records(raw), parse, now, step, allowed_lateness_s,
                               max_future_s)
    return WebBronzeBatch(from_rows(rows, WEB_LOGS_BRONZE) if rows else _empty(), dead)


# ---- declared formats (presets and format strings) ------------------------------------------
_CLF_TIME = (
    r"^\[?(?P<day>[0-9]{2})/(?P<month>" + "|".join(_MONTHS) + r")/(?P<year>[0-9]{4})"
    r":(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9]):(?P<second>[0-5][0-9])"
    r" (?P<sign>[+-])(?P<zh>[01][0-9]|2[0-3])(?P<zm>[0-5][0-9])\]?$")
_ISO_TIME = (
    r"^(?P<year>[0-9]{4})-(?P<month>0[1-9]|1[0-2])-(?P<day>[0-9]{2})"
    r"T(?P<hour>[01][0-9]|2[0-3]):(?P<minute>[0-5][0-9]):(?P<second>[0-5][0-9])"
    r"(?P<sign>[+-])(?P<zh>[01][0-9]|2[0-3]):(?P<zm>[0-5][0-9])$")
_TIME_FIELDS = ("day", "month", "year", "hour", "minute", "second", "sign", "zh", "zm")
#: Durations read exactly as integers: whole units, and at most this many decimals.
_DECIMALS = {"micros": 0, "millis": 3, "seconds": 6}
_SCALE = {"micros": 1, "millis": 1_000, "seconds": 1_000_000}
_NO_ESCAPES = r"^[ !#-\[\]-~]*$"  # printable ASCII without '"' or '\': JSON as it is


def _mask(array) -> np.ndarray:
    return pc.fill_null(array, False).to_numpy(zero_copy_only=False)


def _matches(column: pa.Array, pattern: str) -> np.ndarray:
    return _mask(pc.match_substring_regex(column, pattern))


def _times(column: pa.Array, ok: np.ndarray, kind: str, earliest_us: int):
    """A time field → epoch µs and which rows the vectorised reading vouches for."""
    if kind not in ("time_clf", "time_iso"):  # rarer: the row-level path reads them
        return np.zeros(len(column), np.int64), np.zeros(len(column), bool)
    parts = pc.extract_regex(column, _CLF_TIME if kind == "time_clf" else _ISO_TIME)
    ok = ok & parts.is_valid().to_numpy(zero_copy_only=False)
    if kind == "time_iso":  # month numbers → names, as _epoch_micros reads them
        number = pc.cast(pc.if_else(pa.array(ok), parts.field("month"), "01"), pa.int64())
        names = pa.array(_MONTHS).take(pc.subtract(number, 1))
        parts = pa.StructArray.from_arrays(
            [names if f == "month" else parts.field(f) for f in _TIME_FIELDS], _TIME_FIELDS)
    return _epoch_micros(parts, ok, earliest_us)


def _integers(column: pa.Array, ok: np.ndarray, pattern: str):
    """'-' → null, digits → int64 where ``pattern`` vouches (else the row-level path)."""
    good = ok & _matches(column, pattern)
    dash = pc.equal(column, "-")
    digits = pc.if_else(pc.and_(pa.array(good), pc.invert(dash)), column, "0")
    return pc.if_else(dash, pa.scalar(None, pa.int64()), pc.cast(digits, pa.int64())), good


def _durations(column: pa.Array, ok: np.ndarray, kind: str):
    """A duration in its unit → µs, exactly (at most the unit's exact decimals)."""
    decimals = _DECIMALS.get(kind, 6)  # upstream times are seconds
    fraction = rf"(\.[0-9]{{1,{decimals}}})?" if decimals else ""
    good = ok & _matches(column, rf"^(-|[0-9]{{1,12}}{fraction})$")
    dash = pc.equal(column, "-")
    usable = pc.if_else(pc.and_(pa.array(good), pc.invert(dash)), column, "0")
    split = pc.split_pattern(usable, ".", max_splits=1)
    whole = pc.cast(pc.list_element(split, 0), pa.int64())
    scale = _SCALE.get(kind, 1_000_000)
    micros = pc.multiply(whole, scale)
    if decimals:
        tail = _second(split)
        padded = pc.utf8_rpad(pc.fill_null(tail, ""), width=decimals, padding="0")
        part = pc.cast(pc.utf8_slice_codeunits(padded, 0, decimals), pa.int64())
        micros = pc.add(micros, pc.multiply(part, scale // 10 ** decimals))
    return pc.if_else(dash, pa.scalar(None, pa.int64()), micros), good


def _extra_fields(parts: pa.StructArray, directives, ok: np.ndarray):
    """The directives without a column → their JSON object per row (sorted keys, '-'
    left out), where every value is JSON as it is."""
    if not directives:
        return pa.nulls(len(parts), pa.string()), ok
    good = ok.copy()
    body = pa.nulls(len(parts), pa.string())  # null: no entry yet
    for d in sorted(directives, key=lambda d: d.spelling):
        value = parts.field(d.group)
        good &= _matches(value, _NO_ESCAPES)
        entry = pc.binary_join_element_wise(pa.scalar(json.dumps(d.spelling) + ': "'),
                                            value, pa.scalar('"'), "")
        entry = pc.if_else(pc.is_null(_dash(value)), pa.scalar(None, pa.string()), entry)
        joined = pc.binary_join_element_wise(body, entry, ", ")
        body = pc.if_else(pc.is_null(body), entry,
                          pc.if_else(pc.is_null(entry), body, joined))
    return pc.binary_join_element_wise(pa.scalar("{"), body, pa.scalar("}"), ""), good


def _declared_batch(raw: pa.Table, now: datetime, step: str,
                    allowed_lateness_s: int | None, max_future_s: float | None,
                    log_format: LogFormat) -> WebBronzeBatch:
    """A declared format (a preset or a format string): its compiled expression over the
    whole batch (RE2), each directive's column read with Arrow and numpy; a line the
    vectorised readers do not vouch for (an escape, a host name, a time with a fraction,
    anything malformed) takes the row-level path, as in :func:`web_bronze_batch`."""
    compiled = log_format.compiled
    watermark = raw_watermark(raw) if allowed_lateness_s is not None else None
    payload = raw.column("payload")
    text, not_utf8 = _utf8(payload)
    parts = pc.extract_regex(text, compiled.pattern)
    ok = parts.is_valid().to_numpy(zero_copy_only=False) & ~not_utf8
    ok &= ~pc.greater(pc.binary_length(payload), MAX_PAYLOAD_BYTES).to_numpy(
        zero_copy_only=False)
    ok &= ~_mask(pc.match_substring(text, "\\"))  # escapes: the row-level path undoes them
    matched = pa.array(ok)
    cols: dict = {}
    micros = np.zeros(raw.num_rows, np.int64)
    extra = []
    for d in compiled.directives:
        kind, column = d.kind.name, d.kind.column
        value = pc.if_else(matched, parts.field(d.group), "-")
        if column is None:
            extra.append(d)
        elif kind == "host":
            cols["client_ip"] = _clients(value)
            ok &= cols["client_ip"].is_valid().to_numpy(zero_copy_only=False)
            cols["client_host"] = pa.nulls(len(value), pa.string())
        elif kind.startswith("time"):
            micros, ok = _times(value, ok, kind, micros_of(log_format.earliest))
        elif kind == "request":
            cols["request"] = value
        elif kind == "status":
            cols["status"], ok = _integers(value, ok, r"^(-|[0-9]{3})$")
        elif kind in ("bytes", "count"):
            cols[column], ok = _integers(value, ok, r"^(-|[0-9]{1,18})$")
        elif kind in _SCALE or kind == "upstream_seconds":
            cols[column], ok = _durations(value, ok, kind)
        else:  # ident, user and text (no escapes on this path)
            cols[column] = _dash(value)
    cols["extra_fields"], ok = _extra_fields(parts, extra, ok)
    ok &= _in_time(micros, now, max_future_s, watermark, allowed_lateness_s)

    fast = np.flatnonzero(ok)
    tables = []
    if len(fast):
        take = pa.array(fast)
        request = cols.pop("request").take(take)
        out = {name: array.take(take) for name, array in cols.items()}
        out.update(
            **_request_parts(request),
            timestamp=pa.array(micros[fast], pa.int64()).cast(_TS),
            request=request,
            log_format=pa.repeat(pa.scalar(log_format.label), len(fast)),
            ingest_timestamp=pa.repeat(pa.scalar(now, _TS), len(fast)),
            source=raw.column("source").take(take).combine_chunks())
        tables.append(_bronze(out, len(fast)))
    return _with_the_rest(tables, raw, ~ok, now, step,
                          allowed_lateness_s if watermark is not None else None,
                          max_future_s, log_format)
