"""Bronze machinery every record kind shares: is each payload a structurally valid record?

Decodes the payload (JSON object, CSV line or an already-decoded row), checks required
fields, coerces every declared field to its type (``RecordValidator``, from a kind's
schema) and parses the event time; judges arrival and future dates; the per-record DoFn
and composite (``ParseRawFn``, ``Bronze``) a kind subclasses. Accepted
records carry ingest metadata and their event time as the element timestamp; everything
else becomes a dead letter with a reason code. No range checks here: that is silver.
"""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

import apache_beam as beam
import orjson
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import Timestamp

from schemas.core import FieldType, RecordSchema
from transforms.dead_letters import DEAD_LETTER, RecordRejected, dead_letter, rejection_of
from transforms.dedupe import FirstSeenFn

MAX_PAYLOAD_BYTES = 1 << 20
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
_ONE_MICRO = timedelta(microseconds=1)


class RawRecord(NamedTuple):
    """What a source hands to bronze.

    ``payload`` is the record as received: JSON text or bytes, one CSV line (then
    ``header`` holds that file's column names), or a mapping already decoded by the source
    (a Parquet row).
    """

    payload: object
    source: str | None = None
    header: tuple[str, ...] | None = None
    #: Live sources: their watermark (epoch µs) when the record arrived, against which
    #: streaming judges whether it came too late.
    watermark: int | None = None
    #: Live sources: the attributes of the message that carried it (the raw archive
    #: keeps them).
    attributes: dict | None = None


# ---- decoding -----------------------------------------------------------------------------
def decode_payload(raw: RawRecord) -> dict:
    payload = raw.payload
    if isinstance(payload, Mapping):
        return dict(payload)
    if isinstance(payload, (bytes, bytearray)):
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise RecordRejected("payload_too_large", f"payload of {len(payload)} bytes exceeds "
                                 f"the {MAX_PAYLOAD_BYTES}-byte limit")
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordRejected("undecodable_payload", f"not UTF-8: {exc.reason} at byte "
                                 f"{exc.start}") from None
    elif not isinstance(payload, str):
        raise RecordRejected("wrong_type", f"payload of type {type(payload).__name__} is "
                             "neither text nor a mapping")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RecordRejected("payload_too_large", f"payload of {len(payload)} characters "
                             f"exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    if not payload.strip():
        raise RecordRejected("empty_payload", "the payload is empty")
    if raw.header is not None:
        return _decode_csv_line(payload, raw.header)
    return json_object(payload)


def json_object(text: str) -> dict:
    """One JSON object (a record's fields), or the dead letter of what the text is."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise RecordRejected("invalid_json", f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RecordRejected("not_an_object", f"expected a JSON object, got "
                             f"{_json_kind(obj)}")
    return obj


def _json_kind(obj) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(obj), type(obj).__name__)


def _decode_csv_line(line: str, header: tuple[str, ...]) -> dict:
    try:
        values = next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise RecordRejected("csv_column_mismatch", f"unparseable CSV row: {exc}") from None
    if len(values) != len(header):
        raise RecordRejected("csv_column_mismatch", f"row has {len(values)} columns, the header "
                             f"has {len(header)}")
    return dict(zip(header, values, strict=True))


# ---- coercion -------------------------------------------------------------------------------
def _as_string(name, value):
    if isinstance(value, str):
        return value if value.strip() else None
    raise RecordRejected("wrong_type", f"{name} must be a string, got {type(value).__name__} "
                         f"{value!r}")


#: A number as text: ASCII digits, an optional sign, fraction and exponent.
_NUMERAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = frozenset({"nan", "inf", "infinity"})


def _as_float(name, value):
    if isinstance(value, bool):
        raise RecordRejected("wrong_type", f"{name} must be a number, got a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        # JSON's numerals (and the spellings of NaN and infinity, refused below as such):
        # Python's float() also takes "5_0" and digits of other scripts, which no sender
        # means as a number.
        if not _NUMERAL.fullmatch(text) and text.lower().lstrip("+-") not in _NON_FINITE:
            raise RecordRejected("wrong_type", f"{name} must be a number, got {value!r}")
        number = float(text)
    else:
        raise RecordRejected("wrong_type", f"{name} must be a number, got "
                             f"{type(value).__name__}")
    if not math.isfinite(number):
        raise RecordRejected("non_finite_number", f"{name} is {number}")
    return number


def _as_int(name, value):
    number = _as_float(name, value)
    if number is None:
        return None
    if not number.is_integer():
        raise RecordRejected("wrong_type", f"{name} must be a whole number, got {value!r}")
    return int(number)


def _as_bool(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise RecordRejected("wrong_type", f"{name} must be true or false, got {value!r}")


def parse_timestamp(name: str, value) -> datetime:
    """ISO 8601 text (a missing zone means UTC), epoch seconds, or epoch milli/microseconds
    (told apart by magnitude), or a datetime. Always returns an aware UTC datetime."""
    if isinstance(value, datetime):
        ts = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    elif isinstance(value, bool):
        raise RecordRejected("wrong_type", f"{name} must be a timestamp, got a boolean")
    elif isinstance(value, (int, float)) or (isinstance(value, str) and _looks_numeric(value)):
        ts = _from_epoch(name, float(value))
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RecordRejected("invalid_timestamp", f"{name} {value!r} is not an ISO 8601 "
                                 "timestamp or epoch number") from None
        ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts
    else:
        raise RecordRejected("wrong_type", f"{name} must be a timestamp, got "
                             f"{type(value).__name__}")
    try:
        ts = ts.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-12:00 is in year 10000 in UTC
        raise RecordRejected("timestamp_out_of_range", f"{name} {value!r} is outside "
                             "[2000-01-01, 2100-01-01)") from None
    if not EARLIEST <= ts < LATEST:
        raise RecordRejected("timestamp_out_of_range", f"{name} {ts.isoformat()} is outside "
                             "[2000-01-01, 2100-01-01)")
    return ts


def _looks_numeric(text: str) -> bool:
    return bool(_NUMERAL.fullmatch(text.strip()))


def _from_epoch(name, seconds: float) -> datetime:
    if not math.isfinite(seconds):
        raise RecordRejected("non_finite_number", f"{name} is {seconds}")
    magnitude = abs(seconds)
    if magnitude >= 1e14:
        seconds /= 1e6
    elif magnitude >= 1e11:
        seconds /= 1e3
    try:
        return EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise RecordRejected("timestamp_out_of_range", f"{name} {seconds} is out of range") \
            from None


_COERCERS = {
    FieldType.STRING: _as_string,
    FieldType.FLOAT64: _as_float,
    FieldType.INT64: _as_int,
    FieldType.BOOL: _as_bool,
    FieldType.TIMESTAMP: parse_timestamp,
}


class RecordValidator:
    """Coerces a decoded mapping to a schema. Built once; cheap to call per record."""

    def __init__(self, schema: RecordSchema, time_field: str, measurements: tuple[str, ...]):
        self.schema = schema
        self.time_field = time_field
        self.measurements = measurements
        self._plan = tuple((f.name, _COERCERS[f.type], f.required) for f in schema.fields)
        self._known = frozenset(schema.names)

    def coerce(self, obj: dict) -> tuple[dict, dict | None]:
        out = {}
        try:
            for name, coerce, required in self._plan:
                value = obj.get(name)
                if value is not None:
                    value = coerce(name, value)
                if value is None and required:
                    raise RecordRejected("missing_required_field", f"required field {name} is "
                                         f"{'absent' if name not in obj else 'null or empty'}")
                out[name] = value
        except RecordRejected as exc:
            exc.event_timestamp = out.get(self.time_field) or self._try_time(obj)
            raise
        if all(out[m] is None for m in self.measurements):
            raise RecordRejected("no_measurements", "the record has no measurement fields",
                                 out[self.time_field])
        extra = None
        if not self._known.issuperset(obj):
            extra = {k: v for k, v in obj.items() if k not in self._known}
        return out, extra or None

    def _try_time(self, obj):
        try:
            return parse_timestamp(self.time_field, obj[self.time_field])
        except Exception:  # noqa: BLE001 - best effort for the dead letter only
            return None


def encode_extra_fields(extra: dict) -> str:
    """Unknown fields as the JSON text bronze keeps; a value nested deeper than JSON text can
    be written back (orjson's 254 levels: no telemetry does that) is a dead letter."""
    try:
        return orjson.dumps(extra, default=str).decode()
    except TypeError as exc:  # orjson's "Recursion limit reached"
        raise RecordRejected("nested_too_deep", f"unknown field(s) {', '.join(sorted(extra))} "
                             f"cannot be kept: {exc} (more than 254 levels)") from None


def event_time(ts: datetime) -> Timestamp:
    """A Beam timestamp from a UTC datetime, in exact integer microseconds."""
    return Timestamp(micros=(ts - EPOCH) // _ONE_MICRO)


def micros_of(ts: datetime) -> int:
    """An aware datetime as epoch microseconds, exactly."""
    return (ts - EPOCH) // _ONE_MICRO


def utc_of(micros: int) -> datetime:
    """Epoch microseconds as an aware UTC datetime, exactly (``micros_of``'s inverse)."""
    return EPOCH + timedelta(microseconds=int(micros))


def check_arrival(record: dict, watermark_micros: int, allowed_lateness_s: int) -> None:
    """Streaming: reject a record whose minute window had closed (its end plus the allowed
    lateness behind the source's watermark) when it arrived. Judged here, at arrival,
    because Beam would drop it silently further on."""
    micros = micros_of(record["timestamp"])
    closes = micros - micros % 60_000_000 + 60_000_000 + allowed_lateness_s * 1_000_000
    if closes <= watermark_micros:
        watermark = EPOCH + timedelta(microseconds=watermark_micros)
        raise RecordRejected(
            "late", f"event time {record['timestamp']:%Y-%m-%d %H:%M:%S} arrived when the "
            f"watermark was {watermark:%H:%M:%S}: its minute closed "
            f"{allowed_lateness_s}s after its end", record["timestamp"])


def check_future(record: dict, now: datetime, max_future_s: float | None) -> None:
    """Reject a record dated further ahead of the processing time than ``max_future_s``
    (a clock gone wrong, a typo'd year): it would be a gold row of its own, and in
    streaming it would carry the watermark with it."""
    if max_future_s is None:
        return
    ahead = (record["timestamp"] - now).total_seconds()
    if ahead > max_future_s:
        raise RecordRejected(
            "future_event", f"event time {record['timestamp']:%Y-%m-%d %H:%M:%S} is "
            f"{ahead:,.0f}s ahead of the processing time {now:%Y-%m-%d %H:%M:%S} (at most "
            f"{max_future_s:g}s: --max-future)", record["timestamp"])


def parse_records(raws, parse, now: datetime, step: str,
                  allowed_lateness_s: int | None = None,
                  max_future_s: float | None = None) -> tuple[list[dict], list[dict]]:
    """The row-level bronze of every record kind: ``parse(raw, now)`` each record, judge
    how far ahead it is dated and (streaming, with the watermark it arrived under) how late;
    (rows, dead letters with the payload as received). The per-record DoFn and the batch
    engines' fallback both run this."""
    rows, dead = [], []
    for raw in raws:
        try:
            row = parse(raw, now)
            check_future(row, now, max_future_s)
            if allowed_lateness_s is not None and raw.watermark is not None:
                check_arrival(row, raw.watermark, allowed_lateness_s)
            rows.append(row)
        except Exception as exc:  # noqa: BLE001 - one bad record must never stop the pipeline
            reason, message, event_time = rejection_of(exc)
            dead.append(dead_letter(
                layer="bronze", step=step, reason=reason, message=message,
                payload=raw.payload, source=raw.source, event_timestamp=event_time, now=now))
    return rows, dead


class ParseRawFn(beam.DoFn):
    """RawRecord → bronze row stamped with its event time, or a dead letter. Subclasses
    say how a payload becomes a row (``parse``); lateness at arrival (streaming) is judged
    here for every kind of record."""

    counters = ("records_accepted", "records_rejected")

    def __init__(self, step: str, clock=None,
                 allowed_lateness_s: int | None = None, max_future_s: float | None = None):
        self._step = step
        self._clock = clock
        self._lateness = allowed_lateness_s
        self._max_future = max_future_s

    def parse(self, raw: RawRecord, now: datetime) -> dict:
        raise NotImplementedError

    def accepted(self, record: dict) -> None:
        """Hook for extra counters."""

    def setup(self):
        self._now = self._clock or (lambda: datetime.now(timezone.utc))
        self._accepted, self._rejected = (Metrics.counter("bronze", c) for c in self.counters)

    def process(self, raw):
        now = self._now()
        if not isinstance(raw, RawRecord):
            raw = RawRecord(raw)
        rows, dead = parse_records([raw], self.parse, now, self._step, self._lateness,
                                   self._max_future)
        if dead:
            self._rejected.inc()
            yield TaggedOutput(DEAD_LETTER, dead[0])
            return
        (record,) = rows
        self._accepted.inc()
        self.accepted(record)
        yield beam.window.TimestampedValue(record, event_time(record["timestamp"]))


class DropRedeliveries(beam.PTransform):
    """Portable dedupe of a source's redeliveries by their delivery id (the RawRecord's
    ``source``): the DirectRunner rejects Pub/Sub's ``id_label``. Pub/Sub redelivers
    within the ack deadline, far shorter than the ten minutes an id is remembered."""

    def __init__(self, remember_s: int = 600):
        super().__init__()
        self._remember_s = remember_s

    def expand(self, raw):
        out = (raw
               | "KeyByDeliveryId" >> beam.Map(lambda r: (r.source or "", r)).with_output_types(
                   tuple[str, RawRecord])
               | "FirstDelivery" >> beam.ParDo(FirstSeenFn(
                   layer="bronze", step="DropRedeliveries",
                   reason="redelivered", what="delivery", remember_s=self._remember_s,
               )).with_outputs(DEAD_LETTER, main="records"))
        return {"records": out.records, "dead_letters": out[DEAD_LETTER]}


class Bronze(beam.PTransform):
    """A bronze layer: ``{'records': bronze rows, 'dead_letters': rejections}`` from a
    :class:`ParseRawFn` subclass.

    With ``drop_redeliveries`` (streaming sources that may deliver twice), a record whose
    delivery id was already seen is dead-lettered ``redelivered`` before parsing. With
    ``allowed_lateness_s`` (streaming), a record that arrived after its minute closed is
    dead-lettered ``late``."""

    fn_class: type[ParseRawFn]
    step: str

    def __init__(self, clock=None, drop_redeliveries: bool = False,
                 allowed_lateness_s: int | None = None, max_future_s: float | None = None):
        super().__init__()
        self._clock = clock
        self._drop_redeliveries = drop_redeliveries
        self._lateness = allowed_lateness_s
        self._max_future = max_future_s

    def parser_options(self) -> dict:
        """What the kind's parse function takes besides the common options."""
        return {}

    def expand(self, raw):
        rejected = []
        if self._drop_redeliveries:
            first = raw | "DropRedeliveries" >> DropRedeliveries()
            raw, rejected = first["records"], [first["dead_letters"]]
        out = raw | self.step >> beam.ParDo(self.fn_class(
            clock=self._clock, allowed_lateness_s=self._lateness,
            max_future_s=self._max_future, **self.parser_options())
        ).with_outputs(DEAD_LETTER, main="records")
        if not rejected:
            return {"records": out.records, "dead_letters": out[DEAD_LETTER]}
        dead = [*rejected, out[DEAD_LETTER]] | "BronzeDeadLetters" >> beam.Flatten()
        return {"records": out.records, "dead_letters": dead}
