"""Paired timing ratios with a bootstrap interval (for ``bench_peers.py``).

Two implementations timed in the same rounds give pairs ``(a, b)``. Two summaries of ``a / b``:
the median of the per-pair ratios (robust to a slow outlier on either side) and the ratio of sums
(what a run of these steps costs). The 95 % interval is a percentile bootstrap that resamples
whole groups (the rounds of one path stay together: they share its cost), seeded, so a rerun on
the same timings gives the same interval.

    >>> r = paired([2.0, 4.0, 6.0], [4.0, 4.0, 8.0])
    >>> r.median, r.sums
    (0.75, 0.75)
    >>> format_ratio(r.median, r.median_ci)
    '0.75 [0.50, 1.00]'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ratios:
    median: float
    median_ci: tuple[float, float]
    sums: float
    sums_ci: tuple[float, float]
    pairs: int


def paired(a: Sequence[float], b: Sequence[float], groups: Sequence[int] | None = None, *,
           n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Ratios:
    """Median of ``a[i] / b[i]`` and ``sum(a) / sum(b)``, each with a bootstrap interval over ``groups``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need equally many timings on both sides, got {a.size} and {b.size}")
    groups = np.arange(a.size) if groups is None else np.asarray(groups)
    labels = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in labels]
    rng = np.random.default_rng(seed)
    medians, sums = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        take = np.concatenate([members[j] for j in rng.integers(len(labels), size=len(labels))])
        medians[i] = np.median(a[take] / b[take])
        sums[i] = a[take].sum() / b[take].sum()
    return Ratios(float(np.median(a / b)), _interval(medians, level), float(a.sum() / b.sum()),
                  _interval(sums, level), int(a.size))


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def format_ratio(value: float, interval: tuple[float, float]) -> str:
    """``value [low, high]`` to two decimals."""
    return f"{value:.2f} [{interval[0]:.2f}, {interval[1]:.2f}]"
