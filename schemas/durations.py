"""Human durations for options: ``15ms``, ``10s``, ``5m``, ``6h``, ``2d`` or plain seconds."""
from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError with the accepted forms."""
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (use e.g. 15ms, 10s, 5m, 6h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
