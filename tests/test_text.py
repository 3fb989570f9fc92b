"""Column-wise message text: the same characters as Python's formatting, value by value."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from transforms.text import fixed, join, name_or_id, utc_seconds

#: Values where scaling in floating point and rounding could part from Python's exact
#: rounding: exact halves (odd eighths), decimal halves that binary cannot hold, signs,
#: zeros, the tiniest and huge values, and what is not finite.
EDGES = [0.0, -0.0, -0.001, 0.004999999, 0.005, 0.015, 0.025, 0.125, 0.375, -0.625, 1.005,
         2.675, -344.05, -437.365, 123456789.125, 1e15, -1e15, 1e16, 1.5e300, 5e-324,
         -5e-324, float("inf"), float("-inf"), float("nan")]


def _values() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.concatenate([
        np.array(EDGES), rng.uniform(-1000, 1000, 50_000),
        np.round(rng.uniform(0, 100, 50_000), 3),  # two- and three-decimal readings
        rng.integers(-10_000, 10_000, 20_000) / 8,  # exact halves at one and two digits
        rng.integers(-100_000, 100_000, 20_000) / 200,  # decimal halves at two digits
        rng.integers(-100_000, 100_000, 20_000) / 20,  # decimal halves at one digit
        np.exp(rng.uniform(-30, 40, 20_000))])


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_fixed_is_pythons_text_for_every_value(digits):
    values = _values()
    got = fixed(pa.array(values), digits).to_pylist()
    want = [f"{v:.{digits}f}" for v in values.tolist()]
    wrong = [(v, g, w) for v, g, w in zip(values.tolist(), got, want, strict=True) if g != w]
    assert not wrong, wrong[:5]


def test_fixed_writes_the_null_text_where_there_is_no_value():
    column = pa.chunked_array([[1.0, None], [None, -2.555]], pa.float64())
    assert fixed(column, 2, "n/a").to_pylist() == ["1.00", "n/a", "n/a", "-2.56"]
    assert fixed(pa.array([None], pa.float64()), 1).to_pylist() == ["None"]


def test_utc_seconds_floors_to_the_second_in_utc():
    times = [datetime(2026, 1, 5, 23, 59, 59, 999_999, tzinfo=timezone.utc),
             datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=timezone.utc),
             datetime(2026, 1, 5, 23, 59, 59, 999_999, tzinfo=timezone.utc),
             datetime(2026, 1, 6, 0, 0, 0, tzinfo=timezone.utc) - timedelta(microseconds=1)]
    column = pa.array(times, pa.timestamp("us", tz="UTC"))
    assert utc_seconds(column).to_pylist() == [f"{t:%Y-%m-%d %H:%M:%S}" for t in times]
    assert utc_seconds(column, time_only=True).to_pylist() == [f"{t:%H:%M:%S}" for t in times]


def test_name_or_id_takes_the_id_where_the_name_is_empty_or_missing():
    names = pa.array(["web-1", "", None], pa.string())
    ids = pa.array(["a", "b", "c"], pa.string())
    assert name_or_id(names, ids).to_pylist() == ["web-1", "b", "c"]


def test_join_concatenates_columns_and_literals_row_by_row():
    assert join(pa.array(["a", "b"]), " on ", pa.array(["x", "y"])).to_pylist() == [
        "a on x", "b on y"]
