"""Sending generated records when they are due: shared by every way a generator sends
(Pub/Sub, Kafka, TCP)."""
from __future__ import annotations

import threading
import time

#: A generator whose first record is within this of now is a live fleet: paced by the
#: wall clock itself (a record leaves at its time); otherwise replayed at the same speed
#: from its first record on.
LIVE_WITHIN_S = 60.0


def paced(records, pace: bool, stop: threading.Event, before_wait=None):
    """``(emit_ms, event_ms, line)`` of ``records``, each once it is due (``pace``) or at
    once; ends when ``stop`` is set. ``before_wait()`` runs before each wait (to send a
    partial envelope rather than hold it)."""
    wall0, first_ms = time.monotonic(), None
    for emit_ms, event_ms, line in records:
        if stop.is_set():
            return
        if first_ms is None:
            first_ms = emit_ms
            if pace and abs(time.time() - emit_ms / 1000.0) < LIVE_WITHIN_S:
                wall0 = time.monotonic() - (time.time() - emit_ms / 1000.0)
        if pace:
            delay = (emit_ms - first_ms) / 1000.0 - (time.monotonic() - wall0)
            if delay > 0:
                if before_wait is not None:
                    before_wait()
                if stop.wait(delay):
                    return
        yield emit_ms, event_ms, line
