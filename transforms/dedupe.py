"""Streaming dedupe by key in Beam state: the first element of a key passes, later ones
become dead letters. Used for redelivered messages (bronze) and copied log lines (silver).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from transforms.dead_letters import DEAD_LETTER, dead_letter


class FirstSeenFn(beam.DoFn):
    """``(key, element)`` → the element if its key is new, else a dead letter ``reason``.

    A key is remembered for ``remember_s`` of event time after the element's timestamp,
    then forgotten by a watermark timer: state stays bounded, and a drain fires every timer
    at once. The dead letter keeps the element (a RawRecord's payload, or the row)."""

    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, *, layer: str, step: str, reason: str, what: str,
                 remember_s: int = 600, redact=None):
        self._remember = Duration(seconds=remember_s)
        self._where = dict(layer=layer, step=step, reason=reason)
        self._what = what
        self._redact = redact  # element → what the dead letter may keep

    def setup(self):
        self._rejected = Metrics.counter(self._where["layer"], f"{self._where['reason']}"
                                                               "_rejected")

    def process(self, keyed, timestamp=beam.DoFn.TimestampParam,
                seen=beam.DoFn.StateParam(SEEN), forget=beam.DoFn.TimerParam(FORGET)):
        key, element = keyed
        if seen.read():
            self._rejected.inc()
            payload = getattr(element, "payload", element)
            if self._redact is not None:
                payload = self._redact(payload)
            source = (element.get("source") if isinstance(element, dict)
                      else getattr(element, "source", None))
            yield TaggedOutput(DEAD_LETTER, dead_letter(
                **self._where, message=f"this {self._what} was already received" if
                self._redact else f"{self._what} {key!r} was already received",
                payload=payload, source=source,
                event_timestamp=timestamp.to_utc_datetime(has_tz=True)))
            return
        seen.write(True)
        forget.set(timestamp + self._remember)
        yield element

    @on_timer(FORGET)
    def forget(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()
