"""Pareto geometry: dominance, non-dominated sorting, crowding distance and exact hypervolume.

Points are rows of an ``(n, m)`` array, one column per objective. Each
objective has a *sense*, ``"max"`` (larger is better, e.g. accuracy) or
``"min"`` (smaller is better, e.g. latency, params, FLOPs), given as one
string per column; nothing here assumes either by default. Internally every
maximised column is negated, so all the work is done on minimisation::

    >>> points = [(94.0, 80.0), (93.0, 20.0), (90.0, 30.0), (93.0, 20.0)]  # (accuracy, FLOPs)
    >>> non_dominated_sort(points, ("max", "min"))  # (90, 30) is beaten by (93, 20)
    [[0, 1, 3], [2]]
    >>> hypervolume(points, reference=(80.0, 100.0), senses=("max", "min"))  # 14*20 + 13*60
    1060.0

A point is dominated when another one is at least as good in every objective
and strictly better in one; equal points never dominate each other, so
duplicates share a front. The hypervolume is the measure of the region that
the points dominate and that is bounded by the *reference point*: for a
maximised objective the reference is a value worse (lower) than every point of
interest, for a minimised one a value worse (higher). A point not strictly
better than the reference in every objective adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gmgraph.errors import ConfigError, DataError

SENSES = ("max", "min")
"""Accepted senses: ``"max"`` (larger is better) and ``"min"`` (smaller is better)."""


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and strictly better in one.

    Example:
        >>> dominates((94.0, 20.0), (93.0, 20.0), ("max", "min"))
        True
        >>> dominates((94.0, 30.0), (93.0, 20.0), ("max", "min")), dominates((1.0,), (1.0,), ("min",))
        (False, False)
    """
    pair = to_minimisation(np.array([a, b], dtype=np.float64), senses)
    return bool(np.all(pair[0] <= pair[1]) and np.any(pair[0] < pair[1]))


def non_dominated_sort(points: Sequence[Sequence[float]] | np.ndarray, senses: Sequence[str]) -> list[list[int]]:
    """Fronts of ``points``: front 0 is the Pareto front, front k is the front once 0..k-1 are removed.

    The fast non-dominated sort of NSGA-II (Deb et al., 2002): O(M N²) time and
    an N x N dominance matrix, so meant for populations (up to a few thousand
    points); :func:`non_dominated` finds the first front of a large set.

    Args:
        points: ``(n, m)`` objective values.
        senses: ``"max"`` or ``"min"`` per column.

    Returns:
        Lists of row indices, each in increasing order; every row is in exactly one.

    Example:
        >>> non_dominated_sort([(1, 5), (2, 2), (3, 3), (2, 2)], ("min", "min"))
        [[0, 1, 3], [2]]
    """
    values = to_minimisation(_as_points(points, width=len(senses)), senses)
    if len(values) == 0:
        return []
    beats = _dominance_matrix(values)
    beaten_by = beats.sum(axis=0)  # for each point, how many points dominate it
    placed = np.zeros(len(values), dtype=bool)
    fronts = []
    current = np.flatnonzero(beaten_by == 0)
    while current.size:
        fronts.append(current.tolist())
        placed[current] = True
        beaten_by = beaten_by - beats[current].sum(axis=0)
        current = np.flatnonzero((beaten_by == 0) & ~placed)
    return fronts


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """A boolean mask of the Pareto-optimal rows of ``points`` (front 0), fast for large sets.

    Rows are visited in lexicographic order, so a point's dominators all come
    before it; a point is kept unless a kept point dominates it. Time is
    O(N log N + N·F·M) for a front of F points: all 15,625 NAS-Bench-201
    architectures take milliseconds.

    Example:
        >>> non_dominated([(1, 5), (2, 2), (3, 3), (2, 2)], ("min", "min")).tolist()
        [True, True, False, True]
    """
    values = to_minimisation(_as_points(points, width=len(senses)), senses)
    mask = np.zeros(len(values), dtype=bool)
    if len(values) == 0:
        return mask
    order = np.lexsort(values.T[::-1])  # first column first
    front = np.empty((0, values.shape[1]))
    for row in order:
        p = values[row]
        if not np.any(np.all(front <= p, axis=1) & np.any(front < p, axis=1)):
            mask[row] = True
            front = np.vstack([front, p])
    return mask


def crowding_distance(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front (larger: lonelier, kept first).

    Per objective, points are sorted (stable, so ties keep row order); the two
    extremes get ``inf`` and each other point adds the gap between its
    neighbours divided by the objective's range (nothing when the range is 0).
    Senses do not matter: the distance is the same for ``x`` and ``-x`` (up to
    which of two tied extremes gets ``inf``).
    Fronts of one or two points are all ``inf``.

    Example:
        >>> crowding_distance([(0.0, 4.0), (1.0, 2.0), (2.0, 1.0), (4.0, 0.0)]).tolist()  # 2/4 + 3/4 each
        [inf, 1.25, 1.25, inf]
    """
    values = _as_points(points)
    n = len(values)
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for column in values.T:
        order = np.argsort(column, kind="stable")
        ranked = column[order]
        span = ranked[-1] - ranked[0]
        if span > 0:
            distance[order[1:-1]] += (ranked[2:] - ranked[:-2]) / span
        distance[order[[0, -1]]] = np.inf
    return distance


def hypervolume(
    points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float], senses: Sequence[str]
) -> float:
    """Exact measure of the region the points dominate, bounded by ``reference``.

    Exact in any dimension: a sweep in 2-D (O(N log N)) and slicing along the
    last objective above (O(N^(M-1) log N): fine for 3-D fronts of hundreds of points).

    Args:
        points: ``(n, m)`` objective values (may be empty, dominated, duplicated).
        reference: one value per objective, worse than the region of interest
            (below it for ``"max"``, above it for ``"min"``).
        senses: ``"max"`` or ``"min"`` per column.

    Raises:
        ConfigError: ``reference`` or ``senses`` does not have one finite entry per objective.
        DataError: ``points`` is not an ``(n, m)`` array of finite numbers.

    Example:
        >>> hypervolume([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)], reference=(4.0, 4.0), senses=("min", "min"))
        6.0
        >>> hypervolume([(1.0, 1.0, 1.0)], reference=(0.0, 0.0, 0.0), senses=("max", "max", "max"))
        1.0
    """
    values = _as_points(points, width=len(senses))
    ref = _reference(reference, len(senses))
    values = to_minimisation(values, senses)
    ref = to_minimisation(ref[None, :], senses)[0]
    inside = values[np.all(values < ref, axis=1)]
    return float(_volume(inside, ref))


def to_minimisation(points: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """A copy of ``(n, m)`` ``points`` with every ``"max"`` column negated.

    Raises:
        ConfigError: a sense other than ``"max"``/``"min"``, or not one per column.

    Example:
        >>> to_minimisation(np.array([[2.0, 3.0]]), ("max", "min")).tolist()
        [[-2.0, 3.0]]
    """
    signs = _signs(senses)
    if points.ndim != 2 or points.shape[1] != len(signs):
        raise ConfigError(f"give one sense per objective: {len(signs)} senses for points of shape "
                          f"{tuple(points.shape)}")
    return points * signs


# ----------------------------------------------------------------- helpers


def _signs(senses: Sequence[str]) -> np.ndarray:
    if isinstance(senses, str) or not isinstance(senses, Sequence) or len(senses) == 0:
        raise ConfigError(f"senses must be a non-empty sequence of 'max'/'min', one per objective, got {senses!r}")
    bad = [s for s in senses if s not in SENSES]
    if bad:
        raise ConfigError(f"an objective's sense is 'max' or 'min', got {bad[0]!r}")
    return np.array([-1.0 if s == "max" else 1.0 for s in senses])


def _as_points(points: object, width: int | None = None) -> np.ndarray:
    try:
        values = np.array(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"points must be an (n, m) array of numbers ({exc})") from None
    if values.size == 0:
        return values.reshape(0, values.shape[-1] if values.ndim == 2 else (width or 0))
    if values.ndim != 2:
        raise DataError(f"points must be 2-D (n points x m objectives), got shape {tuple(values.shape)}")
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise DataError(f"points must be finite; row {row} is {values[row].tolist()}")
    return values


def _reference(reference: object, width: int) -> np.ndarray:
    try:
        ref = np.array(reference, dtype=np.float64)
    except (TypeError, ValueError):
        ref = np.array([])
    if ref.shape != (width,) or not np.isfinite(ref).all():
        raise ConfigError(f"the reference point needs {width} finite values (one per objective), got {reference!r}")
    return ref


def _dominance_matrix(values: np.ndarray) -> np.ndarray:
    """``beats[i, j]``: row i dominates row j (minimisation); built row by row to stay O(N²) in memory."""
    beats = np.empty((len(values), len(values)), dtype=bool)
    for i, p in enumerate(values):
        beats[i] = np.all(p <= values, axis=1) & np.any(p < values, axis=1)
    return beats


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of minimisation ``points``, all strictly below ``ref``."""
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:
        return _area(points, ref)
    # slice along the last objective: between consecutive levels the dominated region's
    # cross-section is the (m-1)-D hypervolume of the points at or below the slab
    order = np.argsort(points[:, -1], kind="stable")
    levels = np.append(points[order, -1], ref[-1])
    volume = 0.0
    for i in range(len(order)):
        depth = levels[i + 1] - levels[i]
        if depth > 0:
            volume += depth * _volume(points[order[: i + 1], :-1], ref[:-1])
    return volume


def _area(points: np.ndarray, ref: np.ndarray) -> float:
    """2-D sweep: by x ascending, each point that lowers the best y adds a horizontal strip."""
    area, best_y = 0.0, ref[1]
    for x, y in points[np.lexsort((points[:, 1], points[:, 0]))]:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)
