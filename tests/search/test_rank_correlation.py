"""Tests of gmgraph.search.rank_correlation (ranking-quality measures)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gmgraph.errors import GmGraphError
from gmgraph.search.rank_correlation import kendall_tau, spearman, summarize, top_k_precision

# ------------------------------------------------------------------ correlations


@pytest.mark.parametrize("measure", [kendall_tau, spearman])
def test_perfect_and_reversed_rankings(measure):
    true = [0.1, 0.5, 0.2, 0.9, 0.7]
    est = [1.0, 5.0, 2.0, 9.0, 7.0]  # same order, different scale
    assert measure(est, true) == pytest.approx(1.0)
    assert measure([-x for x in est], true) == pytest.approx(-1.0)
    assert isinstance(measure(est, true), float)


def test_kendall_tau_by_hand():
    # pairs: 5 concordant, 1 discordant (items 2 and 3) -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(2 / 3)


def test_kendall_tau_b_handles_ties():
    # 6 pairs, one tied in a: tau_b = (5 - 0) / sqrt((6 - 1) * (6 - 0))
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_spearman_by_hand():
    # ranks [1, 2, 3, 4] vs [1, 2, 4, 3]: sum d^2 = 2 -> 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)


@pytest.mark.parametrize(
    "convert",
    [list, np.asarray, torch.tensor, lambda v: torch.tensor(v, requires_grad=True)],
    ids=["list", "numpy", "tensor", "tensor-grad"],
)
def test_accepts_sequences_arrays_and_tensors(convert):
    a = convert([1.0, 2.0, 3.0, 4.0])
    b = convert([10.0, 20.0, 40.0, 30.0])
    assert kendall_tau(a, b) == pytest.approx(2 / 3)
    assert spearman(a, b) == pytest.approx(0.8)
    assert top_k_precision(a, b, 1) == 0.0  # item 3 vs item 2
    assert top_k_precision(a, b, 2) == 1.0


# ------------------------------------------------------------------ top-k


def test_top_k_precision_examples():
    est = [0.9, 0.8, 0.1, 0.2]
    true = [4, 1, 3, 2]
    assert top_k_precision(est, true, 1) == 1.0  # item 0 is top in both
    assert top_k_precision(est, true, 2) == 0.5  # {0, 1} vs {0, 2}
    assert top_k_precision(est, true, 3) == pytest.approx(2 / 3)  # {0,1,3} vs {0,2,3}
    assert top_k_precision(est, true, 4) == 1.0
    assert top_k_precision([4, 3, 2, 1], [1, 2, 3, 4], 2) == 0.0


def test_top_k_precision_fraction():
    n = 20
    true = list(range(n))
    est = [*true[:-1], -1]  # the best item is ranked last by the estimate
    # 0.1 of 20 = top 2: items 19 and 18; the estimate's top 2 are 18 and 17
    assert top_k_precision(est, true, 0.1) == 0.5
    # 0.1 of 5 rounds down to 0 -> at least 1 item
    assert top_k_precision([5, 4, 3, 2, 1], [5, 4, 3, 2, 1], 0.1) == 1.0
    # floor(0.29 * 100) must be 29 despite 0.29 * 100 = 28.999999999999996
    values = np.arange(100.0)
    est = values.copy()
    est[70] = 1000.0  # 70 is the 29th best: precision 28/29 if k=29, 27/28 if k=28
    assert top_k_precision(est, values, 0.29) == pytest.approx(28 / 29)


def test_top_k_ties_broken_by_index():
    # est ties everything: its top-2 are items 0 and 1
    assert top_k_precision([1, 1, 1, 1], [4, 3, 2, 1], 2) == 1.0
    assert top_k_precision([1, 1, 1, 1], [1, 2, 3, 4], 2) == 0.0


# ------------------------------------------------------------------ summarize


def test_summarize():
    result = summarize([0.1, 0.4, 0.3, 0.9], [1.0, 2.0, 3.0, 4.0], k=2)
    assert set(result) == {"kendall_tau", "spearman", "top_k_precision", "n"}
    assert result["kendall_tau"] == pytest.approx(2 / 3)
    assert result["spearman"] == pytest.approx(0.8)
    assert result["top_k_precision"] == 0.5
    assert result["n"] == 4


def test_summarize_default_k_is_ten_percent():
    rng = np.random.default_rng(0)
    true = rng.normal(size=50)
    assert summarize(true, true)["top_k_precision"] == 1.0
    est = true.copy()
    est[np.argmax(true)] = true.min() - 1  # lose the best of the top 5
    assert summarize(est, true)["top_k_precision"] == pytest.approx(4 / 5)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("measure", [kendall_tau, spearman, top_k_precision, summarize])
@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([1, 2, 3], [1, 2], "same length, got 3 and 2"),
        ([1, float("nan"), 3], [1, 2, 3], "contains NaN (first at index 1)"),
        ([1, 2, 3], [1, 2, float("nan")], "second ranking contains NaN"),
        ([1], [2], "at least 2 items, got 1"),
        ([], [], "at least 2 items, got 0"),
        ([[1, 2], [3, 4]], [1, 2, 3, 4], "must be 1-D, got shape (2, 2)"),
        (["a", "b"], [1, 2], "sequence of numbers"),
    ],
)
def test_bad_input_raises(measure, a, b, message):
    args = (a, b, 1) if measure is top_k_precision else (a, b)
    with pytest.raises(GmGraphError) as info:
        measure(*args)
    assert message in str(info.value)


@pytest.mark.parametrize("measure", [kendall_tau, spearman, summarize])
def test_constant_input_is_undefined(measure):
    with pytest.raises(GmGraphError, match="undefined for constant input"):
        measure([1, 2, 3], [5, 5, 5])
    with pytest.raises(GmGraphError, match="first ranking equal 2"):
        measure([2, 2, 2], [1, 2, 3])


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (0, "between 1 and n=4, got 0"),
        (5, "between 1 and n=4, got 5"),
        (1.0, "must be in (0, 1), got 1.0"),
        (0.0, "must be in (0, 1), got 0.0"),
        (-0.5, "must be in (0, 1)"),
        (True, "int count or a float fraction"),
        ("2", "int count or a float fraction"),
        (None, "int count or a float fraction"),
    ],
)
def test_bad_k_raises(k, message):
    with pytest.raises(GmGraphError) as info:
        top_k_precision([1, 2, 3, 4], [1, 2, 3, 4], k)
    assert message in str(info.value)


def test_numpy_integer_k_accepted():
    assert top_k_precision([1, 2, 3, 4], [1, 2, 3, 4], np.int64(2)) == 1.0
