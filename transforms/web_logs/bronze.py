"""Bronze of the web logs on batches: a raw batch of log lines → (bronze table, dead letters).

One regular expression runs over the whole batch at once (``pyarrow.compute.extract_regex``,
RE2) and takes every line of the usual shape: printable-ASCII tokens, quoted fields without
escapes, a ``dd/Mon/yyyy:HH:MM:SS ±hhmm`` time, a 3-digit status and a byte count that fits
64 bits. The time becomes epoch microseconds with numpy, the request line is split by a
second expression, and each distinct client address is validated and normalised once.

A line that pattern does not vouch for (an escape, a host name, IPv6 in brackets, a date
that does not exist, a time out of range, bytes that are not UTF-8, anything malformed)
goes through the row-level :func:`transforms.access_log.to_web_log_bronze` itself, so each
accepted value and each dead letter's reason and message are the row-level ones.
"""
from __future__ import annotations

import functools
import ipaddress
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.web_logs import WEB_LOGS_BRONZE
from transforms.access_log import (
    DIRECTIVE_COLUMNS,
    LOG_EARLIEST,
    MAX_INT64,
    LogFormat,
    to_web_log_bronze,
)
from transforms.batches import concat, conform, from_rows, raw_records, raw_watermark
from transforms.bronze import (
    EPOCH,
    LATEST,
    MAX_PAYLOAD_BYTES,
    micros_of,
    parse_records,
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
#: ``transforms.access_log.split_request``: METHOD target [HTTP/x].
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


def web_bronze_batch(raw: pa.Table, now: datetime, pipeline: str = "web_logs",
                     step: str = STEP, allowed_lateness_s: int | None = None,
                     max_future_s: float | None = None,
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
    if log_format.compiled is not None:
        # A declared format (a preset or a format string): one tight loop of its
        # compiled expression over the batch, no Beam element per line.
        return row_level(raw, now, pipeline, step, allowed_lateness_s, max_future_s,
                         log_format)
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
    hosts = parts.field("host").dictionary_encode()
    clients = [normalised_ip(h) for h in hosts.dictionary.to_pylist()]
    client_of = pa.array(clients, pa.string()).take(hosts.indices)
    ok &= client_of.is_valid().to_numpy(zero_copy_only=False)
    if max_future_s is not None:  # as few: the row-level path says how far ahead
        ok &= micros <= micros_of(now) + round(max_future_s * _US)
    if watermark is not None:
        # Late lines are few by definition: the row-level path words their dead letters.
        closes = micros - micros % (60 * _US) + (60 + allowed_lateness_s) * _US
        ok &= closes > watermark

    fast = np.flatnonzero(ok)
    tables = []
    if len(fast):
        take = pa.array(fast)
        p = parts.take(take)
        request = p.field("request")
        split = pc.extract_regex(request, _REQUEST)
        is_request = split.is_valid()
        target = split.field("target")
        has_query = pc.match_substring(target, "?")
        path_query = pc.split_pattern(target, "?", max_splits=1)
        null = pa.scalar(None, pa.string())
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
            "method": pc.if_else(is_request, split.field("method"), null),
            "path": pc.if_else(is_request, pc.list_element(path_query, 0), null),
            "query": pc.if_else(pc.and_(is_request, has_query), _second(path_query), null),
            "protocol": pc.if_else(pc.and_(is_request, pc.greater(pc.utf8_length(
                split.field("protocol")), 0)), split.field("protocol"), null),
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
            **{column: pa.nulls(len(fast)) for column in DIRECTIVE_COLUMNS},
            "ingest_timestamp": pa.repeat(pa.scalar(now, _TS), len(fast)),
            "source": raw.column("source").take(take).combine_chunks(),
        }
        tables.append(conform(pa.table(cols), WEB_LOGS_BRONZE))
    slow = np.flatnonzero(~ok)
    if not len(slow):
        return WebBronzeBatch(tables[0], [])
    rest = row_level(raw.take(pa.array(slow)), now, pipeline, step,
                     allowed_lateness_s if watermark is not None else None, max_future_s,
                     log_format)
    tables.append(rest.records)
    return WebBronzeBatch(concat(tables, WEB_LOGS_BRONZE), rest.dead_letters)


def _second(parts: pa.Array) -> pa.Array:
    """The second element of each list of one or two strings (null when there is one)."""
    lengths = pc.list_value_length(parts)
    padded = pc.if_else(pc.greater(lengths, 1), parts,
                        pa.scalar(["", ""], pa.list_(pa.string())))
    return pc.list_element(padded, 1)


def _empty() -> pa.Table:
    return WEB_LOGS_BRONZE.arrow_schema().empty_table()


def row_level(raw: pa.Table, now: datetime, pipeline: str = "web_logs",
              step: str = STEP, allowed_lateness_s: int | None = None,
              max_future_s: float | None = None,
              log_format: LogFormat = LogFormat()) -> WebBronzeBatch:
    """The row-level bronze over a raw batch, exactly as the per-record DoFn (which, in
    streaming, also judges arrival: ``check_arrival``)."""
    parse = functools.partial(to_web_log_bronze, log_format=log_format)
    rows, dead = parse_records(raw_records(raw), parse, now, pipeline, step,
                               allowed_lateness_s, max_future_s)
    return WebBronzeBatch(from_rows(rows, WEB_LOGS_BRONZE) if rows else _empty(), dead)
