"""Injected faults, shared by every generator: malformed, duplicate and late records.

Each clean event draws once: malformed (rendered broken, by one of the renderer's kinds),
duplicate (sent again a moment later, as a redelivering producer would) or late (held back
and emitted ``late_by_s`` of event time later, out of order). Draws come from their own
random stream, so the fault rates never change the clean values.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar

import numpy as np


@dataclass(kw_only=True)
class StreamConfig:
    """What every generator's config has: where the stream starts, how long it runs, the
    seed, and the fault rates. Subclasses name their own fractions in ``fractions``."""

    start: datetime = datetime(2026, 1, 5, tzinfo=timezone.utc)
    count: int | None = None  # records; None with duration None means endless
    duration_s: float | None = 60.0
    seed: int = 42
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_by_s: float = 120.0

    fractions: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for name in self.fractions + ("malformed_rate", "duplicate_rate", "late_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name.replace('_', '-')} must be within [0, 1], not "
                                 f"{value}")
        if self.malformed_rate + self.duplicate_rate + self.late_rate > 1:
            raise ValueError("malformed, duplicate and late rates add up to more than 1")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=timezone.utc)


def with_faults(events, render, malformed, kinds, config, stats, redelivery_ms: int):
    """``events`` yields ``(event_ms, event)``; yields ``(emit_ms, event_ms, record)``.

    ``config`` has ``seed``, ``malformed_rate``, ``duplicate_rate``, ``late_rate`` and
    ``late_by_s``; ``stats`` counts events, written records and each fault."""
    rng = np.random.default_rng([config.seed, 1])  # faults must not perturb the values
    p_bad, p_dup, p_late = config.malformed_rate, config.duplicate_rate, config.late_rate
    any_faults = p_bad + p_dup + p_late > 0
    late_ms = int(config.late_by_s * 1000)
    held: list[tuple[int, int, int, object]] = []  # (release ms, seq, event ms, record)
    seq = 0
    draws = iter(())
    for epoch_ms, event in events:
        stats.events += 1
        while held and held[0][0] <= epoch_ms:
            stats.written += 1
            _, _, event_ms, record = heapq.heappop(held)
            yield epoch_ms, event_ms, record
        if not any_faults:
            stats.written += 1
            yield epoch_ms, epoch_ms, render(event)
            continue
        try:
            u, pick = next(draws)
        except StopIteration:
            draws = iter(zip(rng.random(4096).tolist(), rng.random(4096).tolist(),
                             strict=True))
            u, pick = next(draws)
        if u < p_bad:
            stats.malformed += 1
            stats.written += 1
            yield epoch_ms, epoch_ms, malformed(kinds[int(pick * len(kinds))], event)
            continue
        record = render(event)
        if u < p_bad + p_dup:
            stats.duplicates += 1
            seq += 1
            # A redelivery: the copy arrives a moment later.
            heapq.heappush(held, (epoch_ms + int(pick * redelivery_ms) + 1, seq, epoch_ms,
                                  record))
        elif u < p_bad + p_dup + p_late:
            stats.late += 1
            seq += 1
            heapq.heappush(held, (epoch_ms + late_ms, seq, epoch_ms, record))
            continue
        stats.written += 1
        yield epoch_ms, epoch_ms, record
    while held:
        stats.written += 1
        release_ms, _, event_ms, record = heapq.heappop(held)
        yield release_ms, event_ms, record
