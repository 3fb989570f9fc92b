"""The mergeable summary behind gold: quantiles, moments, merging."""
from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from transforms.server_metrics.summary import Distribution, ServerMetricsSummary


def dist(values) -> Distribution:
    d = Distribution()
    for v in values:
        d.add(v)
    return d


def test_quantiles_by_hand():
    # 1..10: p50 = 5.5; p95 at rank 8.55 → 9 + 0.55 = 9.55; p99 at 8.91 → 9.91
    d = dist([float(v) for v in range(10, 0, -1)])
    assert d.quantiles((0.5, 0.95, 0.99)) == pytest.approx((5.5, 9.55, 9.91))
    assert (d.low, d.high, d.mean) == (1.0, 10.0, 5.5)
    assert d.stddev == pytest.approx(statistics.stdev(range(1, 11)))


def test_quantiles_match_numpy_for_two_decimal_data():
    rng = random.Random(7)
    values = [round(rng.uniform(0, 100), 2) for _ in range(5001)]
    d = dist(values)
    for q in (0.5, 0.95, 0.99):
        assert d.quantile(q) == pytest.approx(np.quantile(values, q), abs=1e-9)


def test_quantiles_of_unrounded_data_are_within_half_a_bucket():
    rng = random.Random(8)
    values = [rng.uniform(0, 100) for _ in range(2000)]
    assert abs(dist(values).quantile(0.95) - np.quantile(values, 0.95)) <= 0.005 + 1e-9


def test_merging_equals_adding_everything_to_one():
    rng = random.Random(9)
    values = [round(rng.uniform(0, 100), 2) for _ in range(1000)]
    merged = dist(values[:300])
    merged.merge(dist(values[300:]))
    whole = dist(values)
    assert merged.hist == whole.hist and merged.n == whole.n
    assert merged.quantiles() == whole.quantiles()
    assert merged.stddev == pytest.approx(whole.stddev)


def test_empty_and_single_value():
    assert dist([]).quantiles() == (None, None, None)
    assert dist([]).mean is None and dist([42.0]).stddev is None
    assert dist([42.0]).quantile(0.99) == 42.0


def test_constant_values_have_zero_spread():
    assert dist([33.33] * 1000).stddev == 0.0


def test_summary_ignores_nulls_per_metric():
    s = ServerMetricsSummary()
    base = dict(cpu_usage=None, memory_usage=50.0, disk_io=None, network_in=None,
                network_out=None, temperature_c=None, power_watts=None,
                is_high_utilization=False)
    s.add(base)
    s.add({**base, "cpu_usage": 20.0})
    cols = s.columns()
    assert cols["record_count"] == 2 and cols["avg_cpu_usage"] == 20.0
    assert cols["avg_memory_usage"] == 50.0 and cols["total_network_in"] is None


@pytest.mark.parametrize("scale", [100.0, 1e15])  # the one-key sort, and the lexsort
def test_vectorised_quantiles_per_segment_equal_the_distributions(scale):
    from transforms.server_metrics.aggregate import Segments

    rng = np.random.default_rng(11)
    sizes = rng.integers(1, 40, 300)
    codes = np.repeat(np.arange(len(sizes)), sizes)
    values = np.round(rng.uniform(-0.2, 1.0, len(codes)) * scale, 2)
    values[rng.random(len(codes)) < 0.1] = np.nan
    values[codes == 7] = np.nan  # a segment without a value
    seg = Segments(codes, np.zeros(len(codes), dtype=np.int64))
    got = seg.quantiles(values)
    for s in range(len(sizes)):
        part = values[codes == s]
        want = dist(part[~np.isnan(part)].tolist()).quantiles()
        assert tuple(None if np.isnan(q[s]) else q[s] for q in got) == want
