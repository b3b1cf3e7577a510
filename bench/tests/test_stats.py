"""Unit tests of the benchmark's arithmetic (no servers, no timing)."""
import pytest

from bench.stats import percentile, ratio, summarize_ms


def test_percentile_interpolates_like_numpy():
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert percentile(values, 50) == 5.5
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 10
    assert percentile(values, 99) == pytest.approx(9.91)


def test_percentile_ignores_input_order_and_handles_one_value():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([7], 99) == 7


def test_percentile_of_nothing_is_none_and_bad_q_raises():
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_reports_milliseconds():
    summary = summarize_ms([0.010, 0.020, 0.030])
    assert summary["n"] == 3
    assert summary["p50_ms"] == 20.0
    assert summary["max_ms"] == 30.0
    assert summary["mean_ms"] == 20.0
    assert summarize_ms([])["p99_ms"] is None


def test_ratio_guards_missing_and_zero():
    assert ratio(3, 4) == 0.75
    assert ratio(None, 4) is None
    assert ratio(3, 0) is None
