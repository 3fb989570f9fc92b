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


def duration_arg(text: str) -> float:
    """argparse ``type=`` for durations."""
    import argparse

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration_arg(text: str) -> float:
    """argparse ``type=`` for durations that must be longer than zero (an interval, a
    span): 0 is refused, never taken for the default."""
    import argparse

    value = duration_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return value


def positive_int_arg(text: str) -> int:
    """argparse ``type=`` for counts of at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def positive_rate_arg(text: str) -> float:
    """argparse ``type=`` for rates: a finite number above zero (``nan``, ``inf`` and 0
    are refused, as Python's ``float`` would take them)."""
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number above zero")
    return value



def utc_midnight(text: str):
    """``YYYY-MM-DD`` → midnight UTC of that day (ValueError otherwise)."""
    import re
    from datetime import datetime, timezone

    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text or ""):
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD") from None


def date_arg(text: str) -> str:
    """argparse ``type=`` for a UTC date, ``YYYY-MM-DD``: checked, and kept as text (a
    pipeline option travels to the runner as JSON; :func:`utc_midnight` reads it)."""
    import argparse

    try:
        utc_midnight(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
