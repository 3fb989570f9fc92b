"""Column-wise text for messages, the same characters as Python's formatting of each value:
alert messages are built for hundreds of thousands of rows, where a Python format per row
costs more than the rest of the table."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_US = 1_000_000
#: Above this many units of the last digit, a float's spacing nears a unit: Python decides.
_EXACT_BELOW = float(2 ** 50)


def fixed(values: pa.Array | pa.ChunkedArray, digits: int, null: str = "None") -> pa.Array:
    """``f"{v:.{digits}f}"`` of every value (``null`` where there is none; ``digits`` ≥ 1),
    the same text.

    Python rounds the exact binary value half to even. Scaled by 10**digits in floating
    point, a value rounds the same way unless it lies within a few units in the last place
    of a half, or is not finite, or is huge: those few are formatted by Python itself."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    x = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 10.0 ** digits
        near_half = np.abs(scaled - (np.floor(scaled) + 0.5)) <= 4 * np.spacing(np.abs(scaled))
        python = valid & (~np.isfinite(scaled) | (np.abs(scaled) >= _EXACT_BELOW) | near_half)
        units = np.where(valid & ~python, np.abs(np.rint(scaled)), 0).astype(np.int64)
    scale = 10 ** digits
    whole = pa.array(units // scale).cast(pa.string())
    part = pc.utf8_lpad(pa.array(units % scale).cast(pa.string()), digits, "0")
    negative = np.signbit(x) & valid & ~python
    if negative.any():
        whole = pc.if_else(pa.array(negative), pc.binary_join_element_wise("-", whole, ""),
                           whole)
    text = pc.binary_join_element_wise(whole, part, ".")
    if python.any():
        at = np.flatnonzero(python)
        text = pc.replace_with_mask(text, pa.array(python), pa.array(
            [f"{v:.{digits}f}" for v in x[at].tolist()], pa.string()))
    return pc.if_else(pa.array(valid), text, pa.scalar(null, pa.string()))


def utc_seconds(column: pa.Array | pa.ChunkedArray, time_only: bool = False) -> pa.Array:
    """UTC timestamps as ``YYYY-MM-DD HH:MM:SS`` (or ``HH:MM:SS``), whole seconds, floored.
    Each distinct second is written once (numpy's ISO text) and taken for its rows: window
    bounds repeat across servers, and numpy's text costs ~0.8 µs a value (Arrow's
    strftime three times that)."""
    seconds = column.cast(pa.int64()).to_numpy(zero_copy_only=False) // _US
    distinct, at = np.unique(seconds, return_inverse=True)
    text = pa.array(np.datetime_as_string(distinct.astype("datetime64[s]")))
    text = (pc.utf8_slice_codeunits(text, 11) if time_only
            else pc.replace_substring(text, "T", " "))
    return text.take(pa.array(at.reshape(-1)))


def name_or_id(names: pa.Array | pa.ChunkedArray, ids: pa.Array | pa.ChunkedArray
               ) -> pa.Array:
    """``name or server_id`` per row: an empty or missing name gives the id."""
    named = pc.and_kleene(names.is_valid(), pc.not_equal(names, "")).fill_null(False)
    return pc.if_else(named, names, ids.fill_null("None"))


def join(*parts) -> pa.Array:
    """The parts (columns of text, or literal strings) concatenated row by row."""
    return pc.binary_join_element_wise(*parts, "")
