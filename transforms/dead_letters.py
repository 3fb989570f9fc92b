"""Building dead-letter records: the one shape every rejecting step emits."""
from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timezone

import apache_beam as beam
import orjson
import pyarrow as pa

#: Output tag of every step's rejected records.
DEAD_LETTER = "dead_letter"


class RecordRejected(Exception):
    """A record a step cannot accept: carries the reason code and a human message."""

    def __init__(self, reason: str, message: str, event_timestamp: datetime | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.event_timestamp = event_timestamp


def _json_default(value):
    if isinstance(value, (datetime,)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


def encode_payload(payload) -> tuple[str, str]:
    """The payload as text, unmodified where it is text: (payload, encoding)."""
    if isinstance(payload, str):
        return payload, "utf-8"
    if isinstance(payload, (bytes, bytearray)):
        try:
            return bytes(payload).decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(payload).decode("ascii"), "base64"
    if isinstance(payload, Mapping):
        return orjson.dumps(dict(payload), default=_json_default,
                            option=orjson.OPT_NON_STR_KEYS).decode(), "utf-8"
    return repr(payload), "utf-8"


def dead_letter(*, layer: str, step: str, reason: str, message: str, payload,
                source: str | None = None, event_timestamp: datetime | None = None,
                now: datetime | None = None, pipeline: str | None = None) -> dict:
    """A dead letter of ``layer``/``step``. Its ``pipeline`` stays empty where a layer
    makes it: the pipeline's name is stamped once, where dead letters meet the sink
    (:class:`StampPipeline`)."""
    text, encoding = encode_payload(payload)
    return {
        "pipeline": pipeline,
        "layer": layer,
        "step": step,
        "reason": reason,
        "message": message,
        "payload": text,
        "payload_encoding": encoding,
        "source": source,
        "event_timestamp": event_timestamp,
        "processing_timestamp": now or datetime.now(timezone.utc),
    }


def internal_error(exc: BaseException) -> RecordRejected:
    return RecordRejected("internal_error", f"{type(exc).__name__}: {exc}")


def rejection_of(exc: BaseException) -> tuple[str, str, datetime | None]:
    """(reason, message, event time) of a record a step raised ``exc`` for; any error
    but a :class:`RecordRejected` is an ``internal_error``. Plain values, so that nothing
    in the caller's frame holds the exception after its ``except``: its traceback holds
    that frame, and the cycle would keep the frame's batch alive until a full collection."""
    rejection = exc if isinstance(exc, RecordRejected) else internal_error(exc)
    return rejection.reason, rejection.message, rejection.event_timestamp


def stamped(dead_letters, pipeline: str):
    """A dead-letter batch (an Arrow table) or row with its ``pipeline`` set."""
    if isinstance(dead_letters, dict):
        return {**dead_letters, "pipeline": pipeline}
    at = dead_letters.schema.get_field_index("pipeline")
    return dead_letters.set_column(at, dead_letters.schema.field(at),
                                   pa.repeat(pa.scalar(pipeline, pa.string()),
                                             dead_letters.num_rows))


class StampPipeline(beam.PTransform):
    """The one step that names the pipeline in its dead letters, applied where they meet
    the sink: no layer needs to know which pipeline it runs in."""

    def __init__(self, pipeline: str):
        super().__init__()
        self._pipeline = pipeline

    def expand(self, dead_letters):
        out = dead_letters | "Stamp" >> beam.Map(stamped, self._pipeline)
        out.element_type = dead_letters.element_type  # batches keep the Arrow coder
        return out
