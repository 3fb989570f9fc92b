"""The row-level bronze of server metrics: ``to_bronze`` (a raw record → a bronze row or
a rejection), its DoFn and composite. The batch bronze (``bronze.py``) hands every record
its vectorised checks cannot vouch for to ``to_bronze``."""
from __future__ import annotations

from datetime import datetime

from apache_beam.metrics import Metrics

from schemas.families import MISSING_PARTS
from schemas.server_metrics import MEASUREMENTS, SERVER_METRIC
from transforms.bronze import (
    Bronze,
    ParseRawFn,
    RawRecord,
    RecordValidator,
    decode_payload,
    encode_extra_fields,
)
from transforms.dead_letters import RecordRejected
from transforms.server_metrics.regional import to_canonical

SERVER_METRIC_VALIDATOR = RecordValidator(SERVER_METRIC, "timestamp", MEASUREMENTS)


def to_bronze(raw: RawRecord, now: datetime) -> dict:
    """Pure function behind bronze: a valid bronze row or :class:`RecordRejected`."""
    # Seed 001's regional shapes become the canonical record first (schemas/regional.py).
    obj = decode_payload(raw)
    if MISSING_PARTS in obj:
        missing = obj[MISSING_PARTS]
        raise RecordRejected("incomplete_join", f"no part from {', '.join(map(str, missing))}"
                             " arrived within the join's wait (--kafka-join-wait)")
    record, extra = SERVER_METRIC_VALIDATOR.coerce(to_canonical(obj))
    record["ingest_timestamp"] = now
    record["source"] = raw.source
    record["extra_fields"] = encode_extra_fields(extra) if extra else None
    return record


class ParseServerMetricFn(ParseRawFn):
    """A server metric: JSON, a CSV line or a typed row (see :func:`to_bronze`)."""

    def __init__(self, step: str = "ParseServerMetric", clock=None,
                 allowed_lateness_s: int | None = None, max_future_s: float | None = None):
        super().__init__(step, clock, allowed_lateness_s, max_future_s)

    def setup(self):
        super().setup()
        self._with_extra = Metrics.counter("bronze", "records_with_unknown_fields")

    def parse(self, raw, now):
        return to_bronze(raw, now)

    def accepted(self, record):
        if record["extra_fields"] is not None:
            self._with_extra.inc()


class ValidateServerMetrics(Bronze):
    """Bronze of the server metrics."""

    fn_class = ParseServerMetricFn
    step = "ParseServerMetric"
