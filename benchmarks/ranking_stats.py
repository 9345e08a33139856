"""Statistics of the ranking benchmark: tie-broken Kendall tau, paired tests, bootstraps, power.

Everything here is plain numpy/scipy on arrays of scores (higher = better),
so it can be checked against hand-computed values and scipy::

    >>> round(kendall_tau([1, 2, 3, 4], [10, 20, 40, 30]), 4)
    0.6667
    >>> holm([0.01, 0.04, 0.03, 0.005])
    [0.03, 0.06, 0.06, 0.02]

Conventions (docs/algorithms.md §8): a comparison of two methods is the
per-seed paired difference of their Kendall tau against the ground truth;
it is tested with the Wilcoxon signed-rank test, Holm-corrected over a family
of comparisons, and given a 95 % percentile-bootstrap interval. Two
bootstraps are offered: over seeds only (:func:`bootstrap_mean_ci`), and
two-level over seeds *and* architectures (:func:`paired_tau_ci`), which also
counts the architecture sample as a source of noise.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats

from gmgraph.search.rank_correlation import top_k_precision


def tiebroken(primary: Sequence[float], secondary: Sequence[float] | None = None) -> np.ndarray:
    """Scores whose order is ``primary`` (higher first), ties broken by ``secondary`` (lower first).

    ``secondary`` is a loss (the validation loss beside an accuracy); items
    equal in both keep equal scores. ``None`` or any NaN in ``secondary``
    leaves the ties as they are.

    Example:
        >>> tiebroken([0.5, 0.5, 0.9], [1.0, 2.0, 0.1]).tolist()
        [2.0, 1.0, 3.0]
        >>> tiebroken([0.5, 0.5, 0.9]).tolist()
        [1.5, 1.5, 3.0]
    """
    acc = np.asarray(primary, dtype=np.float64)
    if secondary is None or np.isnan(np.asarray(secondary, dtype=np.float64)).any():
        return stats.rankdata(acc)
    loss = np.asarray(secondary, dtype=np.float64)
    order = np.lexsort((-loss, acc))  # ascending: worst first; the last key sorts first
    ranks = np.empty(len(acc))
    keys = list(zip(acc[order], loss[order]))
    start = 0
    for end in range(1, len(order) + 1):  # equal keys share their average rank
        if end == len(order) or keys[end] != keys[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def kendall_tau_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each row of ``x`` against the matching row of ``y`` (or one shared ``y``).

    Vectorised over rows (seeds, bootstrap draws). NaN where a row is
    constant (tau is undefined).

    Example:
        >>> kendall_tau_rows(np.array([[1, 2, 3], [3, 2, 1], [1, 1, 1]]), np.array([1, 2, 3])).tolist()
        [1.0, -1.0, nan]
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape)
    dx = np.sign(x[:, :, None] - x[:, None, :])
    dy = np.sign(y[:, :, None] - y[:, None, :])
    concordance = (dx * dy).sum(axis=(1, 2))  # every pair twice: the factors of 2 cancel below
    untied_x = np.abs(dx).sum(axis=(1, 2))
    untied_y = np.abs(dy).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = concordance / np.sqrt(untied_x * untied_y)
    return np.where((untied_x > 0) & (untied_y > 0), tau, np.nan)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b of two score lists (NaN when either is constant).

    Example:
        >>> kendall_tau([1, 2, 3], [3, 2, 1]), math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
        (-1.0, True)
    """
    return float(kendall_tau_rows(np.asarray(x)[None, :], np.asarray(y)[None, :])[0])


def top_fraction_tau(estimate: Sequence[float], truth: Sequence[float], fraction: float = 0.2) -> float:
    """Kendall tau over the architectures in the top ``fraction`` of the truth (at least 2 of them).

    How well an estimate orders the architectures that matter, the good ones.

    Example:
        >>> top_fraction_tau([5, 4, 3, 2, 1], [1, 2, 3, 4, 5], fraction=0.4)   # the top 2 are reversed
        -1.0
    """
    truth = np.asarray(truth, dtype=np.float64)
    top = top_indices(truth, fraction)
    return kendall_tau(np.asarray(estimate, dtype=np.float64)[top], truth[top])


def top_indices(truth: Sequence[float], fraction: float) -> np.ndarray:
    """Indices of the top ``fraction`` of ``truth`` (at least 2), best first.

    Example:
        >>> top_indices([0.1, 0.9, 0.5, 0.7], 0.5).tolist()
        [1, 3]
    """
    count = max(2, math.ceil(fraction * len(truth) - 1e-9))
    return np.argsort(-np.asarray(truth, dtype=np.float64), kind="stable")[:count]


TOP_K = (5, 10)
"""The k of precision@k in the reports (issue 30: where the choice is made)."""


def precision_at(scores: Sequence[float], truth: Sequence[float], k: int) -> float:
    """Share of the truth's top ``k`` that the scores also rank in their top ``k`` (ties: the earlier index);
    with fewer than ``k`` architectures, ``k`` is all of them. :func:`gmgraph.search.rank_correlation.top_k_precision`
    does the counting.

    Example:
        >>> precision_at([4, 3, 2, 1], [1, 4, 3, 2], 2)
        0.5
        >>> precision_at([1, 2, 3], [1, 2, 3], 5)
        1.0
    """
    return top_k_precision(scores, truth, min(int(k), len(scores)))


def top_measures(matrix: np.ndarray, truth: Sequence[float], accuracy: Sequence[float] | None = None) -> dict:
    """Means over the rows (seeds) of precision@k against ``truth`` (scores: higher is better) for each k of
    :data:`TOP_K`, and, given the true ``accuracy``, of the accuracy of each row's top-ranked architecture
    (``"top1"``: what a search that trusts the scores would pick).

    Example:
        >>> top_measures(np.array([[3., 2, 1], [1, 2, 3]]), [3, 2, 1], [0.9, 0.5, 0.1])
        {'p@5': 1.0, 'p@10': 1.0, 'top1': 0.5}
    """
    truth = np.asarray(truth, dtype=np.float64)
    out = {f"p@{k}": float(np.mean([precision_at(row, truth, k) for row in matrix])) for k in TOP_K}
    if accuracy is not None:
        out["top1"] = float(np.mean([accuracy[int(np.argmax(row))] for row in matrix]))
    return out


def self_consistency(estimates: np.ndarray) -> float:
    """Mean Kendall tau between the estimates of every pair of seeds (rows): agreement with itself.

    A method can agree with itself across supernet seeds and still disagree
    with the ground truth (a systematic bias); this measures the first part.

    Example:
        >>> self_consistency(np.array([[1, 2, 3], [1, 2, 3], [3, 2, 1]]))   # (1 - 1 - 1) / 3
        -0.3333333333333333
    """
    rows = np.asarray(estimates, dtype=np.float64)
    pairs = list(itertools.combinations(range(len(rows)), 2))
    if not pairs:
        return float("nan")
    taus = kendall_tau_rows(rows[[i for i, _ in pairs]], rows[[j for _, j in pairs]])
    return float(np.nanmean(taus)) if not np.isnan(taus).all() else float("nan")


def op_count_bias(archs: Sequence[Mapping[str, str]], scores: Sequence[float], ops: Sequence[str]) -> dict[str, float]:
    """Kendall tau of each op's count (edges holding it) against the scores: which ops a ranking favours.

    Compare an estimate's values with the ground truth's: a sign the truth
    does not share is a bias of the estimate.

    Example:
        >>> archs = [{"a": "conv", "b": "conv"}, {"a": "conv", "b": "pool"}, {"a": "pool", "b": "pool"}]
        >>> op_count_bias(archs, [3.0, 2.0, 1.0], ["conv", "pool"])
        {'conv': 1.0, 'pool': -1.0}
    """
    out = {}
    for op in ops:
        counts = [sum(v == op for v in arch.values()) for arch in archs]
        out[op] = kendall_tau(counts, scores)
    return out


# ------------------------------------------------------------------ tests and intervals


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences (1.0 when all are zero).

    Exact for small samples without ties (scipy's choice); zeros are dropped.

    Example:
        >>> wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5])   # all 5 positive: 2 / 2**5
        0.0625
        >>> wilcoxon_p([0.0, 0.0])
        1.0
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if len(d) == 0:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input's order.

    The i-th smallest of m p-values is multiplied by (m - i + 1), made
    non-decreasing along that order and capped at 1. NaN entries are left
    out of the family and stay NaN.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005])   # 0.005*4, 0.01*3, 0.03*2, max(0.04*1, 0.06)
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(pvalues, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(p))
    out = np.full(len(p), np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[index]))
        out[index] = running
    return [round(float(v), 12) for v in out]


def bootstrap_mean_ci(values: Sequence[float], *, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values: seed level).

    Example:
        >>> lo, hi = bootstrap_mean_ci([0.1, 0.2, 0.3, 0.4])
        >>> 0.1 <= lo < 0.25 < hi <= 0.4
        True
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    return _percentiles(means, level)


def tau_ci(estimates: np.ndarray, truth: Sequence[float], *, baseline: np.ndarray | None = None,
           n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Two-level bootstrap interval of the seed-mean tau (or of its paired difference to ``baseline``).

    Each draw resamples the seeds (rows, with replacement; the same rows of
    ``estimates`` and ``baseline``: the pairing is kept) and, independently,
    the architectures (columns, with replacement; one draw shared by every
    seed and by the truth), then recomputes every tau. It answers "another
    set of supernet seeds *and* another sample of architectures".

    Args:
        estimates: seeds x architectures.
        truth: the ground truth of the architectures.
        baseline: seeds x architectures of the method compared against (paired by row).

    Example:
        >>> truth = np.arange(6.0)
        >>> lo, hi = tau_ci(np.array([truth, truth[::-1]]), truth, n_boot=200)
        >>> lo, hi   # one seed agrees, one is reversed: the seed draw decides
        (-1.0, 1.0)
    """
    draws = bootstrap_taus(estimates, truth, baseline=baseline, n_boot=n_boot, seed=seed)
    return _percentiles(draws[~np.isnan(draws)], level)


def bootstrap_taus(estimates: np.ndarray, truth: Sequence[float], *, baseline: np.ndarray | None = None,
                   n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """The draws behind :func:`tau_ci`: the seed-mean tau (or paired difference) of each resample.

    A resample of the architectures only changes how often each one counts,
    so every tau is a ratio of quadratic forms ``w' M w`` in the architecture
    counts ``w`` (``M``: the pairwise sign products), computed for all draws
    at once instead of re-sorting each resample.

    Example:
        >>> truth = np.arange(5.0)
        >>> bootstrap_taus(np.array([truth, truth]), truth, n_boot=3).tolist()
        [1.0, 1.0, 1.0]
    """
    est = np.asarray(estimates, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    rows, cols = _resample_indices(np.random.default_rng(seed), n_boot, *est.shape)
    weights = _counts(cols, est.shape[1])
    taus = _weighted_taus(est, truth, weights)
    if baseline is not None:
        taus = taus - _weighted_taus(np.asarray(baseline, dtype=np.float64), truth, weights)
    seed_counts = _counts(rows, est.shape[0])  # draws x seeds: how often each seed was drawn
    valid = ~np.isnan(taus)
    total = np.where(valid, taus, 0.0) * seed_counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return total.sum(axis=1) / (seed_counts * valid).sum(axis=1)


def _resample_indices(rng: np.random.Generator, n_boot: int, seeds: int, archs: int) -> tuple[np.ndarray, np.ndarray]:
    """Resampled seed rows and architecture columns of each draw (the order is part of the seed's contract)."""
    return rng.integers(0, seeds, size=(n_boot, seeds)), rng.integers(0, archs, size=(n_boot, archs))


def _counts(indices: np.ndarray, size: int) -> np.ndarray:
    """Per row of ``indices``: how often each of ``size`` values occurs."""
    out = np.zeros((len(indices), size))
    np.add.at(out, (np.repeat(np.arange(len(indices)), indices.shape[1]), indices.ravel()), 1.0)
    return out


def _weighted_taus(est: np.ndarray, truth: np.ndarray, weights: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Kendall tau-b of each row of ``est`` vs ``truth`` with items counted ``weights`` times: draws x seeds."""
    sx = np.sign(est[:, :, None] - est[:, None, :])  # seeds x archs x archs
    sy = np.sign(truth[:, None] - truth[None, :])
    seeds, archs = est.shape
    concordance, untied_x = (sx * sy).reshape(seeds * archs, archs), np.abs(sx).reshape(seeds * archs, archs)
    out = np.empty((len(weights), seeds))
    for start in range(0, len(weights), chunk):
        w = weights[start:start + chunk]
        uy = np.einsum("ba,ac,bc->b", w, np.abs(sy), w)
        with np.errstate(invalid="ignore", divide="ignore"):
            tau = _forms(concordance, w, seeds) / np.sqrt(_forms(untied_x, w, seeds) * uy[:, None])
        out[start:start + chunk] = np.where(np.isfinite(tau), tau, np.nan)
    return out


def _forms(stacked: np.ndarray, w: np.ndarray, seeds: int) -> np.ndarray:
    """``w' M_s w`` for every draw (rows of ``w``) and every seed's matrix ``M_s`` (stacked by rows)."""
    archs = w.shape[1]
    return np.einsum("sab,ab->bs", (stacked @ w.T).reshape(seeds, archs, -1), w.T)


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    if len(draws) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def mde(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference a two-sided test detects with ``power``.

    ``MDE = (t[n-1, 1 - alpha/2] + t[n-1, power]) * sd / sqrt(n)``, the
    paired t-test's normal-shift approximation with Student quantiles (the
    Wilcoxon test is about as powerful on near-normal differences). For large
    n it tends to ``(1.96 + 0.84) * sd / sqrt(n) = 2.80 * sd / sqrt(n)``.

    Args:
        sd: standard deviation of the per-seed paired differences.
        n: number of seeds (pairs), at least 2.

    Example:
        >>> round(mde(1.0, 10), 4)              # (2.2622 + 0.8834) / sqrt(10)
        0.9947
        >>> round(mde(1.0, 10**6) * 10**3, 3)   # the normal limit 2.80 / sqrt(n)
        2.802
    """
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    quantiles = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    return float(quantiles * sd / math.sqrt(n))


def modal_share(items: Sequence[Hashable]) -> tuple[Hashable, int, int]:
    """The most frequent item, how often it occurs and out of how many (first seen wins ties).

    Example:
        >>> modal_share(["a", "b", "a"])
        ('a', 2, 3)
    """
    if not items:
        return None, 0, 0
    counts = Counter(items)
    best = max(counts.values())
    item = next(i for i in items if counts[i] == best)
    return item, best, len(items)
