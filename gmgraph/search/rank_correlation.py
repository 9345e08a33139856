"""How well an estimated ranking of architectures matches the true one.

All functions take two equally long 1-D sequences of scores (lists, numpy
arrays or torch tensors) with at least two items, where *higher is better*::

    >>> r = summarize([0.1, 0.4, 0.3, 0.9], [1.0, 2.0, 3.0, 4.0], k=2)
    >>> round(r["kendall_tau"], 4), round(r["spearman"], 4), r["top_k_precision"], r["n"]
    (0.6667, 0.8, 0.5, 4)

Bad input (different lengths, NaN, fewer than two items, or a constant
sequence for which a rank correlation is undefined) raises
:class:`gmgraph.errors.GmGraphError`.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from gmgraph.arrays import as_float64
from gmgraph.errors import GmGraphError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def kendall_tau(a: ArrayLike, b: ArrayLike) -> float:
    """Kendall rank correlation (tau-b, which accounts for ties).

    Args:
        a: Scores of n items.
        b: Other scores of the same n items.

    Returns:
        tau in [-1, 1]: 1 for the same order, -1 for the reversed order.

    Raises:
        GmGraphError: Bad input, or a constant sequence (tau is undefined).

    Example:
        >>> round(kendall_tau([1, 2, 3, 4], [10, 20, 40, 30]), 4)
        0.6667
    """
    x, y = _check_pair(a, b, need_variation=True)
    from scipy import stats  # lazy: half a second of import that most commands never need

    return _correlation(stats.kendalltau(x, y).statistic)


def spearman(a: ArrayLike, b: ArrayLike) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks).

    Args:
        a: Scores of n items.
        b: Other scores of the same n items.

    Returns:
        rho in [-1, 1]: 1 for the same order, -1 for the reversed order.

    Raises:
        GmGraphError: Bad input, or a constant sequence (rho is undefined).

    Example:
        >>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 4)
        0.8
    """
    x, y = _check_pair(a, b, need_variation=True)
    from scipy import stats

    return _correlation(stats.spearmanr(x, y).statistic)


def _correlation(value: float) -> float:
    # scipy's quotient can round a few ulps past +-1 (1.0000000000000002 for identical orders on some CPUs)
    return float(np.clip(value, -1.0, 1.0))


def top_k_precision(est: ArrayLike, true: ArrayLike, k: float) -> float:
    """Fraction of the true top-k items that are also in the estimated top-k.

    Higher values rank first. Ties are broken by position: among equal
    scores the item with the smaller index ranks higher.

    Args:
        est: Estimated scores of n items.
        true: True scores of the same n items.
        k: Number of top items (an int, 1..n) or a fraction of n as a float in
            (0, 1): ``floor(k * n)``, at least 1 (0.1 = top 10%).

    Returns:
        A value in [0, 1].

    Raises:
        GmGraphError: Bad input or ``k`` out of range.

    Example:
        >>> top_k_precision([0.9, 0.8, 0.1, 0.2], [4, 1, 3, 2], k=2)
        0.5
        >>> top_k_precision(list(range(20)), list(range(20)), k=0.1)
        1.0
    """
    x, y = _check_pair(est, true, need_variation=False)
    count = _resolve_k(k, len(x))
    hits = np.intersect1d(_top_indices(x, count), _top_indices(y, count))
    return len(hits) / count


def summarize(est: ArrayLike, true: ArrayLike, k: float = 0.1) -> dict[str, float | int]:
    """All ranking measures of ``est`` against ``true`` in one dict.

    Args:
        est: Estimated scores of n items.
        true: True scores of the same n items.
        k: Passed to :func:`top_k_precision`.

    Returns:
        ``{"kendall_tau": ..., "spearman": ..., "top_k_precision": ..., "n": n}``.

    Raises:
        GmGraphError: As for the individual measures.

    Example:
        >>> summarize([3, 2, 1], [30, 20, 10], k=1)
        {'kendall_tau': 1.0, 'spearman': 1.0, 'top_k_precision': 1.0, 'n': 3}
    """
    x, _ = _check_pair(est, true, need_variation=True)
    return {
        "kendall_tau": kendall_tau(est, true),
        "spearman": spearman(est, true),
        "top_k_precision": top_k_precision(est, true, k),
        "n": len(x),
    }


# --------------------------------------------------------------------- helpers


def _as_vector(values: Any, name: str) -> np.ndarray:
    try:
        vector = as_float64(values)
    except (TypeError, ValueError) as exc:
        raise GmGraphError(f"{name} must be a 1-D sequence of numbers ({exc})") from None
    if vector.ndim != 1:
        raise GmGraphError(f"{name} must be 1-D, got shape {tuple(vector.shape)}")
    if np.isnan(vector).any():
        first = int(np.flatnonzero(np.isnan(vector))[0])
        raise GmGraphError(f"{name} contains NaN (first at index {first}); remove or impute it")
    return vector


def _check_pair(a: Any, b: Any, *, need_variation: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_vector(a, "first ranking"), _as_vector(b, "second ranking")
    if len(x) != len(y):
        raise GmGraphError(f"rankings must have the same length, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise GmGraphError(f"a ranking needs at least 2 items, got {len(x)}")
    if need_variation:
        for name, v in (("first", x), ("second", y)):
            if np.all(v == v[0]):
                raise GmGraphError(
                    f"rank correlation is undefined for constant input: all {len(v)} values "
                    f"of the {name} ranking equal {v[0]:g}"
                )
    return x, y


def _resolve_k(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise GmGraphError(f"k must be an int count or a float fraction in (0, 1), got {k!r}")
    if isinstance(k, numbers.Integral):
        if not 1 <= k <= n:
            raise GmGraphError(f"k must be between 1 and n={n}, got {k}")
        return int(k)
    if not 0.0 < k < 1.0:
        raise GmGraphError(
            f"a float k is a fraction of n and must be in (0, 1), got {k!r}; "
            "pass an int for a count"
        )
    return max(1, math.floor(float(k) * n + 1e-9))


def _top_indices(values: np.ndarray, count: int) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    return order[:count]
