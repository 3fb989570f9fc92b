"""Log formats as servers declare them: Apache ``LogFormat`` strings and nginx
``log_format`` strings compiled into one regular expression, and the named presets.

A format is literal text and directives (``%h``, ``%{User-Agent}i``, ``$remote_addr``).
Each directive that carries data is a named group of the expression and lands in a bronze
column through the reader of its kind: the client, the time, the request line, the
status, sizes, durations in microseconds, the virtual host, TLS. A directive without a
column of its own (``%{Cookie}i``, ``$upstream_addr``) is kept in ``extra_fields``, a JSON
object by the directive's name, so nothing a line says is thrown away.

A directive between double quotes in the format reads a quoted field (Apache's and
nginx's escapes, ``\\"`` included); elsewhere a field is one token. The expression is
plain enough for both Python's ``re`` and RE2 (``pyarrow.compute.extract_regex``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from transforms.dead_letters import RecordRejected

#: The named presets (``--log-format NAME``); ``combined`` and ``nginx_main`` have
#: parsers of their own (:mod:`transforms.web_logs.access_log`): Combined and Common told apart
#: per line, and trailing fields after the user agent tolerated.
PRESETS = {
    "common": '%h %l %u %t "%r" %>s %b',
    # Debian's and Ubuntu's other_vhosts_access.log
    "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    # nginx's main with the ISO 8601 time nginx logs as $time_iso8601
    "nginx_iso8601": ('$remote_addr - $remote_user [$time_iso8601] "$request" $status '
                      '$body_bytes_sent "$http_referer" "$http_user_agent"'),
}

_QUOTED = r'(?:[^"\\]|\\.)*'
_TOKEN = r"[^ ]+"


@dataclass(frozen=True)
class Kind:
    """How a directive's text is read: the pattern of its field (unquoted) and the bronze
    column it fills (None: ``extra_fields``)."""

    name: str
    column: str | None
    pattern: str = _TOKEN


_HOST = Kind("host", "client")
_IDENT = Kind("ident", "ident")
_USER = Kind("user", "auth_user")
_TIME_CLF_BRACKETED = Kind("time_clf", "timestamp", r"\[[^\]]+\]")
_TIME_CLF = Kind("time_clf", "timestamp", r"[0-9]{2}/[A-Za-z]{3}/[0-9]{4}:[^ \]]+ [+-][0-9]{4}")
_TIME_ISO = Kind("time_iso", "timestamp", r"[0-9]{4}-[^ \]]+")
_TIME_MSEC = Kind("time_msec", "timestamp", r"[0-9]+(?:\.[0-9]+)?")
#: Apache's %{sec}t, %{msec}t, %{usec}t: whole seconds, milliseconds or microseconds since
#: the epoch.
_EPOCH_TIMES = {"sec": Kind("time_sec", "timestamp", r"[0-9]{1,12}"),
                "msec": Kind("time_ms", "timestamp", r"[0-9]{1,15}"),
                "usec": Kind("time_us", "timestamp", r"[0-9]{1,18}")}
EPOCH_SCALES = {"time_sec": 1_000_000, "time_ms": 1_000, "time_us": 1}
#: strftime codes of Apache's %{FORMAT}t → what each matches, and how Python's strptime
#: spells it (%T and %F are shorthands it does not read).
_STRFTIME = {
    "Y": (r"[0-9]{4}", "%Y"), "y": (r"[0-9]{2}", "%y"), "m": (r"[0-9]{2}", "%m"),
    "d": (r"[0-9]{2}", "%d"), "H": (r"[0-9]{2}", "%H"), "M": (r"[0-9]{2}", "%M"),
    "S": (r"[0-9]{2}", "%S"), "j": (r"[0-9]{3}", "%j"), "b": (r"[A-Za-z]{3}", "%b"),
    "h": (r"[A-Za-z]{3}", "%b"), "B": (r"[A-Za-z]+", "%B"), "a": (r"[A-Za-z]{3}", "%a"),
    "A": (r"[A-Za-z]+", "%A"), "z": (r"[+-][0-9]{4}", "%z"),
    "T": (r"[0-9]{2}:[0-9]{2}:[0-9]{2}", "%H:%M:%S"),
    "F": (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "%Y-%m-%d"), "%": ("%", "%%"),
}
_REQUEST = Kind("request", "request")
_STATUS = Kind("status", "status")
_BYTES = Kind("bytes", "bytes")
_REFERRER = Kind("text", "referrer")
_AGENT = Kind("text", "user_agent")
_FORWARDED = Kind("text", "forwarded_for")
_VHOST = Kind("text", "vhost")
_PORT = Kind("count", "server_port")
_REQUEST_BYTES = Kind("count", "request_bytes")
_MICROS = Kind("micros", "request_time_us")
_MILLIS = Kind("millis", "request_time_us")
_SECONDS = Kind("seconds", "request_time_us")
_UPSTREAM = Kind("upstream_seconds", "upstream_time_us", r"[^ ]+(?:, [^ ]+)*")
_TLS_PROTOCOL = Kind("text", "tls_protocol")
_TLS_CIPHER = Kind("text", "tls_cipher")
_EXTRA = Kind("text", None)

#: Apache directives (after ``%``, modifiers removed), by their letter and ``{argument}``.
_APACHE = {
    "h": _HOST, "a": _HOST, "{c}a": _HOST, "l": _IDENT, "u": _USER,
    "t": _TIME_CLF_BRACKETED, "r": _REQUEST, "s": _STATUS, "b": _BYTES, "B": _BYTES,
    # %O counts the headers too: Debian's combined and vhost_combined log it for %b
    "O": _BYTES, "{referer}i": _REFERRER, "{user-agent}i": _AGENT,
    "{x-forwarded-for}i": _FORWARDED, "v": _VHOST, "V": _VHOST, "p": _PORT,
    "{canonical}p": _PORT, "{local}p": _PORT, "I": _REQUEST_BYTES, "D": _MICROS,
    "{us}T": _MICROS, "{ms}T": _MILLIS, "T": _SECONDS, "{s}T": _SECONDS,
    "{ssl_protocol}x": _TLS_PROTOCOL, "{ssl_cipher}x": _TLS_CIPHER,
}
#: Apache directives that carry data without a column: kept in extra_fields.
_APACHE_EXTRA = set("ABCefHikLmnoPqRUX") | {"{remote}p"}
#: nginx variables, by name.
_NGINX = {
    "remote_addr": _HOST, "realip_remote_addr": _HOST, "remote_user": _USER,
    "time_local": _TIME_CLF, "time_iso8601": _TIME_ISO, "msec": _TIME_MSEC,
    "request": _REQUEST, "status": _STATUS, "body_bytes_sent": _BYTES,
    "http_referer": _REFERRER, "http_user_agent": _AGENT,
    "http_x_forwarded_for": _FORWARDED, "host": _VHOST, "server_name": _VHOST,
    "server_port": _PORT, "request_length": _REQUEST_BYTES, "request_time": _SECONDS,
    "upstream_response_time": _UPSTREAM, "ssl_protocol": _TLS_PROTOCOL,
    "ssl_cipher": _TLS_CIPHER,
}
_APACHE_DIRECTIVE = re.compile(r"%(?:!?[0-9,]+)?([<>]?)(\{[^}]*\})?([a-zA-Z%])")
_NGINX_VARIABLE = re.compile(r"\$\{?([a-z_][a-z0-9_]*)\}?")


class FormatError(ValueError):
    """A format string that cannot be read (said in one line to the user)."""


@dataclass(frozen=True)
class Directive:
    spelling: str  # as written in the format: %>s, %{User-Agent}i, $status
    kind: Kind
    group: str     # the expression's group name
    quoted: bool
    time_format: str | None = None  # %{FORMAT}t: how Python's strptime reads it


@dataclass(frozen=True)
class CompiledFormat:
    """A format string compiled: ``pattern`` matches a whole line, one group per
    directive."""

    name: str
    source: str
    directives: tuple[Directive, ...]
    pattern: str
    _regex: re.Pattern = field(repr=False, compare=False, default=None)

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(d.kind.column for d in self.directives if d.kind.column)

    def match(self, line: str):
        return self._regex.match(line)


def compile_format(source: str, name: str = "custom") -> CompiledFormat:
    """An Apache ``LogFormat`` string (``%`` directives) or an nginx ``log_format``
    string (``$`` variables) → its :class:`CompiledFormat`; raises FormatError."""
    if not source.strip():
        raise FormatError("the format is empty")
    apache = "%" in source and not _NGINX_VARIABLE.search(source)
    finder = _APACHE_DIRECTIVE if apache else _NGINX_VARIABLE
    directives: list[Directive] = []
    parts: list[str] = ["^"]
    at = 0
    for match in finder.finditer(source):
        literal = source[at:match.start()]
        at = match.end()
        if apache and match.group(3) == "%":
            parts.append(re.escape(literal + "%"))
            continue
        time_format = None
        if apache and match.group(3) == "t" and match.group(2):
            kind, time_format = _apache_time(match.group(2)[1:-1], match.group(0))
        else:
            kind = _apache_kind(match) if apache else _NGINX.get(match.group(1), _EXTRA)
        if kind is None:
            raise FormatError(f"{match.group(0)} is not a directive this reader knows")
        quoted = literal.endswith('"') and source[at:at + 1] == '"'
        group = f"d{len(directives)}"
        parts.append(re.escape(literal))
        parts.append(f"(?P<{group}>{_QUOTED if quoted else kind.pattern})")
        directives.append(Directive(match.group(0), kind, group, quoted, time_format))
    parts.append(re.escape(source[at:]) + "$")
    if not directives:
        raise FormatError("the format has no directive (%h, $remote_addr, ...)")
    taken = [d.kind.column for d in directives if d.kind.column]
    twice = sorted({c for c in taken if taken.count(c) > 1})
    if twice:
        raise FormatError(f"more than one directive fills {', '.join(twice)}")
    if "timestamp" not in taken:
        raise FormatError("the format has no time (%t, $time_local, $time_iso8601, $msec)")
    if "request" not in taken:
        raise FormatError("the format has no request line (%r, $request)")
    if "client" not in taken:
        raise FormatError("the format has no client address (%h, %a, $remote_addr)")
    pattern = "".join(parts).replace("\\ ", " ")
    return CompiledFormat(name, source, tuple(directives), pattern, re.compile(pattern))


def _apache_time(argument: str, spelling: str) -> tuple[Kind, str | None]:
    """``%{sec}t`` and its kin, or ``%{FORMAT}t`` (strftime, with its zone: the server
    writes local time, whose offset only %z tells)."""
    for prefix in ("begin:", "end:"):
        argument = argument.removeprefix(prefix)
    if argument in _EPOCH_TIMES:
        return _EPOCH_TIMES[argument], None
    if argument.endswith("_frac"):
        raise FormatError(f"{spelling} is only a fraction of a second: give the time whole "
                          "(%t, %{sec}t, %{msec}t or %{FORMAT}t)")
    pattern, python, at = [], [], 0
    for match in re.finditer(r"%(.)", argument):
        literal = argument[at:match.start()]
        at = match.end()
        if match.group(1) not in _STRFTIME:
            raise FormatError(f"{spelling}: %{match.group(1)} is not a time code this "
                              "reader knows")
        regex, code = _STRFTIME[match.group(1)]
        pattern += [re.escape(literal), regex]
        python += [literal.replace("%", "%%"), code]
    pattern.append(re.escape(argument[at:]))
    python.append(argument[at:].replace("%", "%%"))
    if "%z" not in "".join(python):
        raise FormatError(f"{spelling} has no %z: the server logs local time, and without "
                          "its offset the time cannot be placed")
    return Kind("time_strftime", "timestamp", "".join(pattern)), "".join(python)


def _apache_kind(match) -> Kind | None:
    _, argument, letter = match.groups()
    key = (argument or "").lower() + letter if argument else letter
    if key in _APACHE:
        return _APACHE[key]
    if letter in _APACHE_EXTRA or (argument and letter in "iaopCeonxT"):
        return _EXTRA
    return None


def read_directives(compiled: CompiledFormat, match) -> tuple[dict, dict]:
    """The groups of a matched line → (the raw text of each column, extra fields by
    directive), escapes and quotes not yet undone."""
    columns, extra = {}, {}
    for d in compiled.directives:
        text = match.group(d.group)
        if d.kind.column is None:
            extra[d.spelling] = text
        else:
            columns[d.kind.column] = (d, text)
    return columns, extra


def seconds_to_micros(text: str, scale: int, what: str) -> int:
    """``0.123`` seconds (scale 1e6), milliseconds (1e3) or microseconds (1) → µs."""
    if not re.fullmatch(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", text):
        raise RecordRejected("wrong_type", f"{what} {text!r} is not a duration")
    whole, _, fraction = text.partition(".")
    micros = int(whole) * scale
    if fraction:
        micros += round(int(fraction) * scale / 10 ** len(fraction))
    return micros


def upstream_micros(text: str) -> int | None:
    """nginx's ``$upstream_response_time``: one time per upstream tried (``0.012, 0.100``,
    or ``:`` between internal redirects); ``-`` where none answered. The total, or None
    when no upstream answered."""
    times = [t for t in re.split(r"[,:] ?", text) if t and t != "-"]
    if not times:
        return None
    return sum(seconds_to_micros(t, 1_000_000, "upstream time") for t in times)


def parse_iso_time(text: str) -> datetime:
    """``2026-12-06T10:00:00+01:00`` (nginx's ``$time_iso8601``) → aware UTC."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None or len(text) < 20:
        raise RecordRejected("invalid_timestamp", f"time {text!r} is not "
                             "yyyy-mm-ddTHH:MM:SS±hh:mm")
    return value.astimezone(timezone.utc)


def parse_msec(text: str) -> datetime:
    """nginx's ``$msec``: seconds since the epoch, with milliseconds."""
    try:
        return datetime.fromtimestamp(float(text), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise RecordRejected("invalid_timestamp", f"time {text!r} is not seconds since "
                             "the epoch") from None


def extra_json(extra: dict) -> str | None:
    return json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else None


# ---- JSON access logs -----------------------------------------------------------------------
#: ``--log-format json``: one JSON object a line whose keys are nginx's variable names
#: (what ``log_format ... escape=json '{"remote_addr":"$remote_addr",...}'`` writes) or
#: these common spellings; ``json:KEY=VARIABLE,...`` names the others.
JSON_ALIASES = {
    "@timestamp": "time_iso8601", "time": "time_iso8601", "timestamp": "time_iso8601",
    "client_ip": "remote_addr", "remote_ip": "remote_addr", "ip": "remote_addr",
    "method": "request_method", "uri": "request_uri", "protocol": "server_protocol",
    "referer": "http_referer", "referrer": "http_referer", "user_agent": "http_user_agent",
    "bytes": "body_bytes_sent", "size": "body_bytes_sent", "duration": "request_time",
}
#: A request line split into parts, as JSON logs often write it.
REQUEST_PARTS = ("request_method", "request_uri", "server_protocol")


def json_names(spec: str) -> dict[str, str]:
    """``json`` or ``json:KEY=VARIABLE,...`` → the variable each key stands for."""
    names = dict(JSON_ALIASES)
    _, _, pairs = spec.partition(":")
    for pair in filter(None, (p.strip() for p in pairs.split(","))):
        key, sep, variable = pair.partition("=")
        variable = variable.strip().lstrip("$")
        if not sep or not key.strip():
            raise FormatError(f"{pair!r} is not KEY=VARIABLE (e.g. ts=time_iso8601)")
        if variable not in _NGINX and variable not in REQUEST_PARTS:
            raise FormatError(f"{variable!r} is not a variable this reader knows (one of "
                              f"{', '.join(sorted(set(_NGINX) | set(REQUEST_PARTS)))})")
        names[key.strip()] = variable
    return names


def json_kind(variable: str) -> Kind | None:
    """The kind of a JSON key's variable; None when it has no column (extra_fields)."""
    kind = _NGINX.get(variable)
    return kind if kind is not None and kind.column else None
