"""The series' digests: fixed log-scale buckets read back as quantiles (qsup.series)."""

from __future__ import annotations

import math

import pytest

from qsup import series


def test_bucket_bounds_double_every_two_buckets():
    assert series.upper_bound(0) == 0.001
    assert series.upper_bound(2) == pytest.approx(0.002)
    assert series.upper_bound(20) == pytest.approx(1.024)
    assert series.upper_bound(series.BUCKETS - 1) == math.inf


def test_quantile_reads_within_the_bucket():
    digest = [0] * series.BUCKETS
    digest[20] = 100  # 100 runs between 0.724 s and 1.024 s
    for q in (0.01, 0.5, 0.95, 1.0):
        value = series.quantile(digest, q)
        assert value is not None and 0.724 <= value <= 1.025
    assert series.quantile([0] * series.BUCKETS, 0.5) is None


def test_quantile_splits_by_rank():
    digest = [0] * series.BUCKETS
    digest[0], digest[30] = 90, 10  # 90 runs of at most 1 ms, 10 of about 30 s
    p50 = series.quantile(digest, 0.5)
    assert p50 is not None and p50 <= 0.001
    p95 = series.quantile(digest, 0.95)
    assert p95 is not None and 23 <= p95 <= 33
    digest[-1] = 1000  # the overflow reads as its floor, never infinity
    assert math.isfinite(series.quantile(digest, 0.99) or 0)


def test_dense_fills_the_buckets_sql_left_out():
    digest = series.dense([1, 5, 47], [3, 2, 1])
    assert len(digest) == series.BUCKETS
    assert (digest[0], digest[4], digest[46], sum(digest)) == (3, 2, 1, 6)
    assert series.dense(None, None) == [0] * series.BUCKETS
