"""Applying the regional shapes of ``schemas/regional.py``: a decoded record in one of seed
001's regional shapes → the canonical server metric, before bronze coerces it.

Pure functions, called by bronze for every decoded record: a canonical record (it has
``server_id``) passes untouched after one dictionary lookup per shape. A value a
conversion cannot take (a temperature that is not a number, a time that is not a time)
raises :class:`RecordRejected` ``unmappable_record`` naming the region, the column and
the value, so the record becomes a dead letter with its original payload.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from schemas.regional import SHAPES, RegionalShape
from transforms.dead_letters import RecordRejected

IST = timezone(timedelta(hours=5, minutes=30))
_TENTH = Decimal("0.1")


def _number(value) -> float:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = float(value.strip()) if isinstance(value, str) else float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def round_half_up(value: float, places: Decimal = _TENTH) -> float:
    """Seed 001 rounded with Spark's ``round`` (half up), not Python's (half to even)."""
    return float(Decimal(repr(value)).quantize(places, rounding=ROUND_HALF_UP))


def _fahrenheit_to_celsius(value):
    return round_half_up((_number(value) - 32.0) * 5.0 / 9.0)


def _kelvin_to_celsius(value):
    return round_half_up(_number(value) - 273.15)


def _fraction_to_percent(value):
    fraction = _number(value)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("a load fraction lies within [0, 1]")
    return round(fraction * 100.0, 10)  # 0.57 · 100 is 56.99999999999999 in binary


def _local_time(value, zone) -> datetime:
    if isinstance(value, datetime):
        ts = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=zone)


def _ist_to_utc(value):
    return _local_time(value, IST).astimezone(timezone.utc)


def _utc(value):
    return _local_time(value, timezone.utc).astimezone(timezone.utc)


def _epoch_seconds(value):
    return datetime.fromtimestamp(_number(value), timezone.utc)


def _kilobits_to_kilobytes(value):
    return round(_number(value) / 8.0, 3)


CONVERT = {
    "as_is": lambda value: value,
    "number": _number,
    "fahrenheit_to_celsius": _fahrenheit_to_celsius,
    "kelvin_to_celsius": _kelvin_to_celsius,
    "fraction_to_percent": _fraction_to_percent,
    "ist_to_utc": _ist_to_utc,
    "utc": _utc,
    "epoch_seconds": _epoch_seconds,
    "kilobits_to_kilobytes": _kilobits_to_kilobytes,
}


def shape_of(obj: dict) -> RegionalShape | None:
    if "server_id" in obj:
        return None
    for shape in SHAPES:
        if shape.identity in obj:
            return shape
    return None


def to_canonical(obj: dict) -> dict:
    """The canonical record for ``obj`` (``obj`` itself when it is canonical already)."""
    shape = shape_of(obj)
    if shape is None:
        return obj
    # A regional server is located in its region unless it says otherwise: gold groups
    # by location, and a null location made every regional server one unnamed place.
    out = {"region": shape.region, "location": shape.region} if shape.region else {}
    mapped = set()
    for alias in shape.aliases:
        mapped.add(alias.column)
        value = obj.get(alias.column)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # a missing sensor stays null
        try:
            out[alias.field] = CONVERT[alias.conversion](value)
        except (TypeError, ValueError, OverflowError, OSError) as exc:
            raise RecordRejected("unmappable_record",
                                 f"{shape.label}: {alias.column} {value!r} cannot be "
                                 f"converted ({alias.conversion}): {exc}") from None
    # Columns the shape does not declare are unknown fields, as for any producer.
    out.update({k: v for k, v in obj.items() if k not in mapped})
    return out
