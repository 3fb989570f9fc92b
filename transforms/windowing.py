"""The mode of a run, chosen once: :class:`Batch` or :class:`Streaming`, a strategy the
layers ask to window, re-globalise and judge lateness instead of branching on a flag.

In batch every record is present before aggregation, so the transforms group by explicit
time buckets in the global window (cheaper on the local runner). In streaming the same
transforms put each grouping step in event-time windows that fire:

* early, every ``early_firing_s`` of processing time, so live tables fill as data arrives;
* on time, when the watermark passes the end of the window;
* late, once per late record, until ``allowed_lateness_s`` after the window's end.

Records later than that are not dropped: silver routes them to dead letters (``late``).
Beam itself would drop data silently once a window's state expires, so every windowing
strategy keeps state ``safety_margin_s`` longer than the allowed lateness.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam
from apache_beam.transforms import trigger
from apache_beam.transforms.window import FixedWindows, GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

MINUTE, HOUR, DAY = 60, 3600, 86400


def bucket(micros: int, seconds: int) -> int:
    """Start (in epoch microseconds) of the fixed, epoch-aligned window holding ``micros``:
    the explicit form of ``FixedWindows(seconds)`` that batch runs group by."""
    return micros - micros % (seconds * 1_000_000)


class Unchanged(beam.PTransform):
    """What a batch run puts where streaming windows or re-globalises: nothing."""

    def expand(self, pcoll):
        return pcoll


class Batch:
    """The batch mode: every record is present before aggregation, so steps group by
    explicit time buckets in the global window (on the local runner a windowed GroupByKey
    costs about ten times a global one); nothing is late."""

    allowed_lateness_s = None  # bronze judges no arrival

    def windows(self, seconds: int, *, accumulate: bool, early_every_s: float | None = None,
                early_per_element: bool = False, window_fn=None) -> beam.PTransform:
        return Unchanged()

    def to_global(self) -> beam.PTransform:
        return Unchanged()

    def early_every(self, factor: float) -> float | None:
        return None

    def choose(self, *, batch, streaming):
        """Where the two modes need different algorithms: the batch one."""
        return batch

    def __repr__(self) -> str:
        return "Batch()"


@dataclass(frozen=True)
class Streaming:
    """The streaming mode: the same steps in event-time windows (see the module)."""

    allowed_lateness_s: int = 300
    early_firing_s: float = 10.0
    safety_margin_s: int = 3600

    def __post_init__(self):
        if self.allowed_lateness_s < 0:
            raise ValueError("allowed lateness must not be negative")
        if self.early_firing_s <= 0:
            raise ValueError("the early-firing delay must be positive")

    def windows(self, seconds: int, *, accumulate: bool, early_every_s: float | None = None,
                early_per_element: bool = False, window_fn=None) -> beam.WindowInto:
        """Fixed event-time windows of ``seconds`` (or ``window_fn``'s, e.g. sliding).
        ``accumulate`` makes every pane hold the whole window so far (for tables);
        otherwise panes carry only what is new (for feeding further aggregation without
        counting anything twice)."""
        if early_per_element:
            early = trigger.AfterCount(1)
        else:
            # Beam's runner API wants whole seconds here.
            early = trigger.AfterProcessingTime(max(1, round(early_every_s or
                                                             self.early_firing_s)))
        return beam.WindowInto(
            window_fn or FixedWindows(seconds),
            trigger=trigger.AfterWatermark(early=early, late=trigger.AfterCount(1)),
            accumulation_mode=(trigger.AccumulationMode.ACCUMULATING if accumulate
                               else trigger.AccumulationMode.DISCARDING),
            allowed_lateness=self.allowed_lateness_s + self.safety_margin_s,
        )

    def to_global(self) -> beam.PTransform:
        """Back to the global window: outputs of different windowings are flattened
        together, and the next step windows again as it needs."""
        return beam.WindowInto(GlobalWindows())

    def early_every(self, factor: float) -> float:
        """A slower early-firing delay (hours and days fire less often than minutes)."""
        return self.early_firing_s * factor

    def choose(self, *, batch, streaming):
        """Where the two modes need different algorithms: the streaming one."""
        return streaming


#: The mode of a run, chosen once (``beam_pipelines.runs``) and handed to the layers.
Mode = Batch | Streaming
BATCH = Batch()


def pane_columns(window, pane) -> tuple[int, str]:
    """(pane_index, pane_timing) of an output; batch outputs are the one on-time pane."""
    if isinstance(window, GlobalWindow) or pane is None:
        return 0, "ON_TIME"
    timing = {PaneInfoTiming.EARLY: "EARLY",
              PaneInfoTiming.LATE: "LATE"}.get(pane.timing, "ON_TIME")
    return pane.index, timing


def schedule_flush(micros: int, every_us: int, flush_at, flush) -> None:
    """Have the flush timer fire at the ``every_us`` boundary after ``micros``, unless it
    already fires sooner: the one rule of the stateful steps that buffer event time (the
    detectors, the incident tracker)."""
    target = Timestamp(micros=(micros // every_us + 1) * every_us)
    current = flush_at.read()
    if current is None or target < current:
        flush.set(target)
        flush_at.write(target)
