"""Latency buckets: two snapshots give the percentiles between them, never flattering."""

from __future__ import annotations

from logdist.core.latency import LatencyHistogram, diff, percentile


def test_percentiles_of_what_happened_between_two_snapshots() -> None:
    h = LatencyHistogram()
    h.observe(0.0005, 50)  # 0.5 ms
    before = h.to_json()
    h.observe(0.004, 90)  # 4 ms: the 5 ms bucket
    h.observe(0.120, 10)  # 120 ms: the 150 ms bucket
    between = diff(h.to_json(), before)
    assert sum(between.values()) == 100
    assert percentile(between, 0.5) == 5.0
    assert percentile(between, 0.99) == 150.0


def test_no_observations_have_no_percentile() -> None:
    assert percentile(LatencyHistogram().to_json(), 0.99) is None
