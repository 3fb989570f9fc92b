"""Bronze for web access logs: Combined and Common Log Format lines → typed requests (and
nginx's ``main`` format, whose X-Forwarded-For field is kept, with ``LogFormat``).

Accepted, as servers really write them: Combined (``... "referrer" "user agent"``) and
Common Log Format; ``-`` for bytes, user, referrer or agent; IPv4 and IPv6 clients (with or
without brackets, IPv4-mapped, with a zone); Apache's escapes inside quoted fields (``\\"``,
``\\\\``, ``\\xhh``); request lines that are not requests (``-``, TLS bytes sent to a
plain-HTTP port, HTTP/0.9 without a protocol), kept verbatim with null method and path;
extra fields after the user agent (e.g. a response time), ignored. ``\\xhh`` escapes are
read as bytes and decoded as UTF-8 when they are, else kept as written; a byte that is not
UTF-8 is read as the ``\\xhh`` escape Apache itself would log, so the request is not lost.

What cannot be read is a dead letter with a reason: the line does not have the format's
shape, the client is not an IP address, the time or status is not what the format says.
Ranges (status 100–599) are silver's business.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from schemas.web_logs import ACCESS_LOG_FIELDS
from transforms.bronze import (
    EPOCH,
    LATEST,
    MAX_PAYLOAD_BYTES,
    Bronze,
    ParseRawFn,
    RawRecord,
    json_object,
)
from transforms.dead_letters import RecordRejected
from transforms.geo import is_host_name
from transforms.web_logs.formats import (
    EPOCH_SCALES,
    PRESETS,
    REQUEST_PARTS,
    CompiledFormat,
    compile_format,
    extra_json,
    json_kind,
    json_names,
    parse_iso_time,
    parse_msec,
    read_directives,
    seconds_to_micros,
    upstream_micros,
)

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    + _QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\S+) (?P<bytes>\S+)"
    + r"(?: " + _QUOTED.replace("(", "(?P<referrer>", 1)
    + r"(?: " + _QUOTED.replace("(", "(?P<agent>", 1) + r")?)?"
    + r"(?P<rest>(?: .*)?)$")
#: What may follow the user agent (a response time, nginx's "$http_x_forwarded_for"):
#: whole tokens, quoted ones closed. A quote left open means the line was cut (or a quote
#: in a field was not escaped), and its fields cannot be trusted.
_REST = re.compile(r'(?: +(?:"(?:[^"\\]|\\.)*"|[^ "]+))* *')
MAX_INT64 = 2 ** 63 - 1
#: Access logs go back further than telemetry: archives from the 1990s (NASA's 1995 logs)
#: are read as they are.
LOG_EARLIEST = datetime(1990, 1, 1, tzinfo=timezone.utc)
#: The formats a log may be declared in (``--log-format``): ``combined`` reads Combined
#: and Common Log Format lines, told apart per line (extra fields after the user agent
#: ignored); ``nginx_main`` is nginx's ``main``: Combined and ``"$http_x_forwarded_for"``;
#: the presets of :mod:`transforms.web_logs.formats` (``common``, ``vhost_combined``,
#: ``nginx_iso8601``); or an Apache ``LogFormat`` or nginx ``log_format`` string itself.
LOG_FORMATS = ("combined", "nginx_main", "json") + tuple(PRESETS)
#: The formats read by parsers of their own, not by a compiled format string.
OWN_PARSERS = ("combined", "nginx_main")
#: Every field of a parsed line.
ACCESS_COLUMNS = tuple(f.name for f in ACCESS_LOG_FIELDS)
#: The bronze columns only some formats fill (null in the others).
DIRECTIVE_COLUMNS = ("vhost", "server_port", "request_bytes", "request_time_us",
                     "upstream_time_us", "tls_protocol", "tls_cipher", "extra_fields")
#: ``nginx_main``'s last field, after the user agent.
_FORWARDED = re.compile(r' +"((?:[^"\\]|\\.)*)" *')


@dataclass(frozen=True)
class LogFormat:
    """How the lines were written, and the oldest time accepted (``--earliest-event``).

    ``name``: a preset (:data:`LOG_FORMATS`) or a format string (``%h %l %u %t "%r" %>s
    %b``, ``$remote_addr - ...``); every format but ``combined`` and ``nginx_main`` is
    read through its :class:`~transforms.web_logs.formats.CompiledFormat`."""

    name: str = "combined"
    earliest: datetime = LOG_EARLIEST

    def __post_init__(self):
        if self.is_json:
            json_names(self.name)  # raises FormatError
            return
        if self.name not in LOG_FORMATS and not is_format_string(self.name):
            raise ValueError(f"log format {self.name!r} is not one of "
                             f"{', '.join(LOG_FORMATS)}, nor an Apache or nginx format "
                             "string")
        self.compiled  # noqa: B018 - a format string it cannot read: FormatError now

    @property
    def compiled(self) -> CompiledFormat | None:
        """The compiled format (None for ``combined``, ``nginx_main`` and ``json``, which
        have parsers of their own); raises FormatError for a format string it cannot
        read."""
        if self.name in OWN_PARSERS or self.is_json:
            return None
        return _compiled(self.name)

    def may_fill(self, column: str) -> bool:
        """Whether lines in this format can fill the bronze ``column`` (JSON: any key
        may)."""
        if self.compiled is not None:
            return column in self.compiled.columns
        if self.is_json:
            return True
        return column not in DIRECTIVE_COLUMNS + ("forwarded_for",) or (
            column == "forwarded_for" and self.name == "nginx_main")

    @property
    def is_json(self) -> bool:
        return self.name == "json" or self.name.startswith("json:")

    @property
    def json_names(self) -> dict[str, str]:
        return _json_names(self.name)

    @property
    def label(self) -> str:
        """What bronze's ``log_format`` says of a line read in this format."""
        if self.is_json:
            return "json"
        return self.name if self.name in LOG_FORMATS else "custom"


@functools.lru_cache(maxsize=32)
def _json_names(name: str) -> dict[str, str]:
    return json_names(name)


@functools.lru_cache(maxsize=32)
def _compiled(name: str) -> CompiledFormat:
    return compile_format(PRESETS.get(name, name), name if name in PRESETS else "custom")


def is_format_string(text: str) -> bool:
    return "%" in text or "$" in text


#: A run of ``\\xHH`` escapes (one UTF-8 character may take several), or one other escape.
_ESCAPE = re.compile(r"(?:\\x[0-9a-fA-F]{2})+|\\.")
_METHOD = re.compile(r"^[A-Z][A-Z_-]{0,19}$")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def _unescape(text: str) -> str:
    """Apache's escapes undone: ``\\"``, ``\\\\``, ``\\n`` …, and each run of ``\\xHH``
    read as bytes, decoded as UTF-8 when they are (nginx logs ``/café`` as
    ``/caf\\xC3\\xA9``: the same path as a raw UTF-8 line), kept verbatim otherwise (a
    byte of another encoding or TLS bytes stay visible, not mojibake)."""
    if "\\" not in text:
        return text

    def one(match):
        escape = match.group(0)
        if escape[1] == "x" and len(escape) >= 4:
            try:
                return bytes.fromhex(escape.replace("\\x", "")).decode("utf-8")
            except UnicodeDecodeError:
                return escape
        return {"n": "\n", "t": "\t", "r": "\r"}.get(escape[1], escape[1])

    return _ESCAPE.sub(one, text)


def _dash(text: str | None) -> str | None:
    return None if text is None or text in ("-", "") else text


def parse_log_time(text: str, earliest: datetime = LOG_EARLIEST) -> datetime:
    """``10/Oct/2000:13:55:36 -0700`` → aware UTC datetime (by hand: strptime is ~10×
    slower, and its month names follow the locale)."""
    try:
        day, month, year = int(text[0:2]), _MONTHS[text[3:6].capitalize()], int(text[7:11])
        hour, minute, second = int(text[12:14]), int(text[15:17]), int(text[18:20])
        if text[2] != "/" or text[6] != "/" or text[11] != ":":
            raise ValueError
        fraction = 0
        rest = text[20:]
        if rest.startswith("."):  # %{msec_frac} and similar: 13:55:36.123 -0700
            digits, _, rest = rest[1:].partition(" ")
            fraction = int((digits + "000000")[:6])
            rest = " " + rest
        sign, zh, zm = rest[1], int(rest[2:4]), int(rest[4:6])
        if rest[0] != " " or sign not in "+-" or len(rest) != 6 or zh > 23 or zm > 59:
            raise ValueError  # +0099 is no zone
        offset = timedelta(hours=zh, minutes=zm) * (1 if sign == "+" else -1)
        local = datetime(year, month, day, hour, minute, second, fraction,
                         tzinfo=timezone(offset))
    except (ValueError, KeyError, IndexError):
        raise RecordRejected("invalid_timestamp", f"time [{text}] is not "
                             "dd/Mon/yyyy:HH:MM:SS ±zzzz") from None
    return in_range(local.astimezone(timezone.utc), f"[{text}]", earliest)


def in_range(ts: datetime, text: str, earliest: datetime = LOG_EARLIEST) -> datetime:
    if not earliest <= ts < LATEST:
        raise RecordRejected("timestamp_out_of_range", f"time {text} is outside "
                             f"[{earliest:%Y-%m-%d}, {LATEST:%Y-%m-%d})", ts)
    return ts


def _client(host: str) -> tuple[str | None, str | None]:
    """``%h`` → (address, None), or (None, host name) when the server resolved it (never
    resolved back here)."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(text)), None
    except ValueError:
        if text is host and is_host_name(host):
            return None, host
        raise RecordRejected("invalid_ip", f"client {host!r} is neither an IPv4 or IPv6 "
                             "address nor a host name") from None


def split_request(request: str) -> tuple[str | None, str | None, str | None, str | None]:
    """``GET /a?b=1 HTTP/1.1`` → (method, path, query, protocol); (None, …) when the line is
    not a request at all."""
    parts = request.split(" ")
    if len(parts) == 3 and parts[2].startswith("HTTP/"):
        method, target, protocol = parts
    elif len(parts) == 2:
        (method, target), protocol = parts, None
    else:
        return None, None, None, None
    if not _METHOD.match(method) or not target:
        return None, None, None, None
    path, sep, query = target.partition("?")
    return method, path, (query if sep else None), protocol


def _json_text(value, what: str) -> str:
    """A JSON value where the log format would have text: strings as they are, integers
    in digits, null as '-'; anything else is the wrong type."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RecordRejected("wrong_type", f"{what} {value!r} is not text or a whole number")


def _json_float(kind, value: float, what: str, out: dict, earliest: datetime) -> None:
    """A JSON number with a fraction: a duration (in the kind's unit) or nginx's
    ``msec``; anywhere else the wrong type."""
    if value != value or value in (float("inf"), float("-inf")):
        raise RecordRejected("non_finite_number", f"{what} is {value}")
    if kind.name == "time_msec":
        out["timestamp"] = in_range(parse_msec(repr(value)), repr(value), earliest)
    elif kind.name in _SCALES or kind.name == "upstream_seconds":
        if not 0 <= value < 1e12:
            raise RecordRejected("wrong_type", f"{what} {value!r} is not a duration")
        out[kind.column] = round(value * _SCALES.get(kind.name, 1_000_000))
    else:
        raise RecordRejected("wrong_type", f"{what} {value!r} is not text or a whole "
                             "number")


def parse_json_log(line: str, log_format: LogFormat) -> dict:
    """One JSON access-log line → the bronze fields: each key read as the nginx variable
    it is (or stands for, :data:`~transforms.web_logs.formats.JSON_ALIASES` and
    ``json:KEY=VARIABLE``); keys without a column in ``extra_fields``."""
    record = json_object(line)
    names = log_format.json_names
    out = dict.fromkeys(ACCESS_COLUMNS)
    extra, parts = {}, {}
    for key, value in record.items():
        variable = names.get(key, key)
        if variable in REQUEST_PARTS:
            parts[variable] = _json_text(value, key)
            continue
        kind = json_kind(variable)
        column = kind.column if kind is not None else None
        filled = (None if column is None else out["client_ip"] or out["client_host"]
                  if column == "client" else out[column])
        if column is None or filled is not None:
            extra[key] = value  # no column, or its column is filled already
            continue
        if isinstance(value, float):
            _json_float(kind, value, key, out, log_format.earliest)
        else:
            _read_field(kind, _json_text(value, key), out, log_format.earliest)
    if out["request"] is None and "request_uri" in parts:
        out["request"] = " ".join(parts[p] for p in REQUEST_PARTS if _dash(parts.get(p)))
    elif parts:
        extra.update(parts)
    for column, what in (("timestamp", "a time (time_iso8601, time_local, msec, @timestamp)"),
                         ("request", "a request (request, or request_method and "
                                     "request_uri)")):
        if out[column] is None:
            raise RecordRejected("missing_required_field", f"the object has no {what}")
    if out["client_ip"] is None and out["client_host"] is None:
        raise RecordRejected("missing_required_field", "the object has no client address "
                             "(remote_addr, client_ip)")
    out["method"], out["path"], out["query"], out["protocol"] = split_request(out["request"])
    out["extra_fields"] = extra_json(extra)
    out["log_format"] = "json"
    return out


def parse_access_log(line: str, log_format: LogFormat = LogFormat()) -> dict:
    """One log line → the bronze fields (without ingest metadata); raises RecordRejected."""
    if log_format.compiled is not None:
        return parse_compiled(line, log_format)
    if log_format.is_json:
        return parse_json_log(line, log_format)
    match = _LINE.match(line)
    if match is None:
        raise RecordRejected("unparseable_log_line", "not a Combined or Common Log Format "
                             "line: expected 'ip ident user [time] \"request\" status bytes' "
                             "and optionally '\"referrer\" \"user agent\"'")
    g = match.groupdict()
    if g["rest"] and not _REST.fullmatch(g["rest"]):  # most lines end at the agent
        field = ("the user agent" if g["referrer"] is not None and g["agent"] is None
                 else "the referrer" if g["referrer"] is None else "a field after the agent")
        raise RecordRejected("unclosed_quote", f"a quote opened in {field} never closes: the "
                             "line is cut, or a quote inside a field is not escaped")
    forwarded = None
    if log_format.name == "nginx_main":
        last = _FORWARDED.fullmatch(g["rest"]) if g["agent"] is not None else None
        if last is None:
            raise RecordRejected("unparseable_log_line", "not nginx's main format: expected "
                                 "'... \"referrer\" \"user agent\" \"x-forwarded-for\"'")
        forwarded = _dash(_unescape(last.group(1)))
    status, size = _status(g["status"]), _count(g["bytes"], "bytes")
    request = _unescape(g["request"])
    method, path, query, protocol = split_request(request)
    combined = g["referrer"] is not None
    ip, host = _client(g["host"])
    return {
        "client_ip": ip,
        "client_host": host,
        "ident": _dash(g["ident"]),
        "auth_user": _dash(_unescape(g["user"])),
        "timestamp": parse_log_time(g["time"], log_format.earliest),
        "method": method,
        "path": path,
        "query": query,
        "protocol": protocol,
        "request": request,
        "status": status,
        "bytes": size,
        "referrer": _dash(_unescape(g["referrer"])) if combined else None,
        "user_agent": _dash(_unescape(g["agent"])) if g["agent"] is not None else None,
        "forwarded_for": forwarded,
        "log_format": (log_format.name if log_format.name != "combined"
                       else "combined" if combined else "common"),
        **dict.fromkeys(DIRECTIVE_COLUMNS),
    }


def _status(text: str) -> int | None:
    if text == "-":
        return None  # Apache logs '-' when no response was sent (the client went away)
    if text.isascii() and text.isdigit() and len(text) == 3:
        return int(text)
    raise RecordRejected("wrong_type", f"status {text!r} is not a 3-digit code or '-'")


def _count(text: str, what: str) -> int | None:
    """A size or a port: digits, or '-' (null)."""
    if text == "-":
        return None
    if text.isascii() and text.isdigit():  # not "²" or Arabic-Indic digits
        value = int(text)
        if value > MAX_INT64:
            raise RecordRejected("wrong_type", f"{what} {text} does not fit the column's "
                                 "64-bit integer")
        return value
    raise RecordRejected("wrong_type", f"{what} {text!r} is not a number or '-'")


_UNESCAPED_QUOTE = re.compile(r'(?<!\\)"')
_SCALES = {"micros": 1, "millis": 1_000, "seconds": 1_000_000}


def _read_field(kind, text: str, out: dict, earliest: datetime, directive=None) -> None:
    """One field's text (escapes undone) into its bronze column by its ``kind``
    (:class:`~transforms.web_logs.formats.Kind`): the reading every declared format and
    JSON share. Raises RecordRejected."""
    name, column = kind.name, kind.column
    if name == "host":
        out["client_ip"], out["client_host"] = _client(text)
    elif name.startswith("time"):
        out["timestamp"] = in_range(_read_time(name, text, earliest, directive), text,
                                    earliest)
    elif name == "request":
        out["request"] = text
    elif name == "status":
        out["status"] = _status(text)
    elif name in ("bytes", "count"):
        out[column] = _count(text, column.replace("_", " "))
    elif name in _SCALES:
        out[column] = (None if text == "-"
                       else seconds_to_micros(text, _SCALES[name], column.replace("_", " ")))
    elif name == "upstream_seconds":
        out[column] = upstream_micros(text)
    else:  # ident, user and text
        out[column] = _dash(text)


def _read_time(name: str, text: str, earliest: datetime, directive=None) -> datetime:
    if name == "time_clf":
        return parse_log_time(text.strip("[]"), earliest)
    if name == "time_iso":
        return parse_iso_time(text)
    if name == "time_msec":
        return parse_msec(text)
    if name in EPOCH_SCALES:
        return EPOCH + timedelta(microseconds=int(text) * EPOCH_SCALES[name])
    try:  # time_strftime
        return datetime.strptime(text, directive.time_format).astimezone(timezone.utc)
    except ValueError:
        raise RecordRejected("invalid_timestamp", f"time {text!r} is not "
                             f"{directive.spelling}") from None


def parse_compiled(line: str, log_format: LogFormat) -> dict:
    """One line in a compiled format (a preset or a format string) → the bronze fields;
    raises RecordRejected."""
    compiled = log_format.compiled
    match = compiled.match(line)
    if match is None:
        if len(_UNESCAPED_QUOTE.findall(line)) % 2:
            raise RecordRejected("unclosed_quote", "a quote opened in the line never "
                                 "closes: the line is cut, or a quote inside a field is not "
                                 "escaped")
        raise RecordRejected("unparseable_log_line", f"not the {compiled.name} format "
                             f"'{compiled.source}'")
    columns, extra = read_directives(compiled, match)
    out = dict.fromkeys(ACCESS_COLUMNS)
    for directive, text in columns.values():
        escaped = directive.kind.name in ("request", "user", "text")  # quoted text
        _read_field(directive.kind, _unescape(text) if escaped else text, out,
                    log_format.earliest, directive)
    out["method"], out["path"], out["query"], out["protocol"] = split_request(out["request"])
    out["extra_fields"] = extra_json({k: _unescape(v) for k, v in extra.items()
                                      if _dash(v) is not None})  # '-': not there
    out["log_format"] = log_format.label
    return out


def decode_line(payload) -> str:
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RecordRejected("payload_too_large", f"line of {len(payload)} bytes exceeds "
                                 f"the {MAX_PAYLOAD_BYTES}-byte limit")
        payload = bytes(payload).decode("utf-8", errors="backslashreplace")
    elif not isinstance(payload, str):
        raise RecordRejected("wrong_type", f"payload of type {type(payload).__name__} is not "
                             "a log line")
    line = payload.rstrip("\r\n")
    if len(line) > MAX_PAYLOAD_BYTES:
        raise RecordRejected("payload_too_large", f"line of {len(line)} characters exceeds "
                             f"the {MAX_PAYLOAD_BYTES}-byte limit")
    if not line.strip():
        raise RecordRejected("empty_payload", "the line is empty")
    return line


def to_web_log_bronze(raw: RawRecord, now: datetime,
                      log_format: LogFormat = LogFormat()) -> dict:
    record = parse_access_log(decode_line(raw.payload), log_format)
    record["ingest_timestamp"] = now
    record["source"] = raw.source
    return record


class ParseAccessLogFn(ParseRawFn):
    """One log line → bronze row stamped with its event time, or a dead letter."""

    counters = ("log_lines_accepted", "log_lines_rejected")

    def __init__(self, clock=None, allowed_lateness_s: int | None = None,
                 max_future_s: float | None = None, log_format: LogFormat = LogFormat()):
        super().__init__("ParseAccessLog", clock, allowed_lateness_s, max_future_s)
        self._log_format = log_format

    def parse(self, raw, now):
        return to_web_log_bronze(raw, now, self._log_format)


class ParseAccessLogs(Bronze):
    """Bronze of the web logs."""

    fn_class = ParseAccessLogFn
    step = "ParseAccessLog"

    def __init__(self, log_format: LogFormat = LogFormat(), **kwargs):
        super().__init__(**kwargs)
        self._log_format = log_format

    def parser_options(self) -> dict:
        return {"log_format": self._log_format}
