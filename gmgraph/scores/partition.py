"""Gradient-matching split of one decision's candidate ops (GM-NAS, ICLR 2022).

Few-shot NAS splits the supernet on the decision (label) whose candidate ops
disagree most. Given a K x K matrix of distances between the K ops of one
decision (for example ``1 - cosine similarity`` of their supernet gradients),
every way of dividing the ops into ``groups`` non-empty groups is enumerated;
the partition with the smallest *within-group* distance wins, and the label's
score is the distance that the split cuts::

    score = total - within(best)

where ``total`` is the sum of ``D[i, j]`` over all pairs ``i < j`` and
``within(p)`` the same sum restricted to pairs that share a group of ``p``.
Enumeration is brute force, so at most 8 candidates are supported.

Which partitions are candidates is an option: balanced sizes (NAS-Bench-201's
2|3 splits of 5 ops) or a smallest group size (``min_size=2``: GM-NAS on the
DARTS space, 2|5 or 3|4 of 7 ops, see :func:`partitions`).

    >>> part, score = best_partition([[0, 2, 0], [2, 0, 2], [0, 2, 0]])
    >>> part, score
    (((0, 2), (1,)), 4.0)
    >>> name_groups(part, ["conv3x3", "skip", "conv5x5"])
    [('conv3x3', 'conv5x5'), ('skip',)]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from gmgraph.arrays import as_float64
from gmgraph.errors import SpaceError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

Partition = tuple[tuple[int, ...], ...]

MAX_CANDIDATES = 8
"""Largest K that :func:`partitions` / :func:`best_partition` enumerate."""

SUPPORTED_GROUPS = (2, 3)
SYMMETRY_RTOL = 1e-6
"""Accepted asymmetry: ``max|D - D.T| <= SYMMETRY_RTOL * max|D|``."""


def partitions(k: int, groups: int = 2, balanced: bool = True, min_size: int = 1) -> list[Partition]:
    """Enumerate every partition of ``range(k)`` into ``groups`` non-empty groups.

    Each unordered partition appears once. Every group is a sorted tuple of
    indices and the groups are ordered by their smallest index. With
    ``balanced=True`` only partitions whose group sizes differ by at most one
    are kept; with ``min_size=m`` only those whose every group holds at least
    ``m`` ops (both conditions apply when both are given).

    Order: op ``i`` gets the label of its group, groups being numbered in the
    order they first appear (op 0 is always in group 0). Partitions are listed
    in lexicographic order of that label vector; :func:`best_partition`
    breaks ties by taking the first one in this order.

    Args:
        k: Number of candidate ops, 2..8.
        groups: Number of groups, 2 or 3 (and at most ``k``).
        balanced: Keep only partitions with group sizes differing by <= 1.
        min_size: Keep only partitions whose groups all hold at least this many ops.

    Returns:
        A new list of partitions.

    Raises:
        SpaceError: ``k``, ``groups`` or ``min_size`` out of range (``groups x min_size`` more than ``k``).

    Example:
        >>> partitions(4)
        [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
        >>> len(partitions(5, 2)), len(partitions(5, 2, balanced=False))
        (10, 15)
        >>> sorted({tuple(len(g) for g in p) for p in partitions(7, 2, balanced=False, min_size=2)})
        [(2, 5), (3, 4), (4, 3), (5, 2)]
    """
    k = _check_count(k, "k")
    groups = _check_count(groups, "groups")
    min_size = _check_min_size(min_size, k, groups)
    return list(_cached_partitions(k, groups, bool(balanced), min_size))


def within_distance(distances: ArrayLike, partition: Sequence[Sequence[int]]) -> float:
    """Sum of ``distances[i, j]`` over pairs ``i < j`` that share a group.

    The diagonal is ignored. The sum is computed with :func:`math.fsum`, so it
    does not depend on the order of the pairs.

    Args:
        distances: Symmetric K x K matrix (list, numpy array or torch tensor).
        partition: Groups of indices that together cover ``range(K)`` once.

    Returns:
        The within-group distance.

    Raises:
        SpaceError: Bad matrix or a partition that does not cover ``range(K)``.

    Example:
        >>> within_distance([[0, 1, 5], [1, 0, 2], [5, 2, 0]], [(0, 1), (2,)])
        1.0
    """
    matrix = _as_matrix(distances, "distance")
    _check_matrix_size(matrix.shape[0])
    part = _check_partition(partition, matrix.shape[0])
    return _within(matrix, part)


def best_partition(
    distances: ArrayLike,
    groups: int = 2,
    balanced: bool = True,
    *,
    similarity: bool = False,
    min_size: int = 1,
) -> tuple[Partition, float]:
    """Find the split of K ops with the smallest within-group distance.

    Every partition from :func:`partitions` is scored independently; the one
    with the strictly smallest within-group distance wins, ties going to the
    first in enumeration order.

    With ``similarity=True`` the matrix holds similarities ``S`` (larger is
    closer) and is converted to distances ``D = max(S_off) - S`` where
    ``S_off`` are the off-diagonal entries; the diagonal is ignored either way.
    For balanced splits every candidate has the same number of within-group
    pairs, so this is the same as maximising within-group similarity.

    Args:
        distances: Symmetric K x K matrix (list, numpy array or torch tensor),
            2 <= K <= 8.
        groups: Number of groups, 2 or 3.
        balanced: Only consider splits whose group sizes differ by <= 1.
        similarity: The matrix holds similarities instead of distances.
        min_size: Only consider splits whose groups all hold at least this many ops.

    Returns:
        ``(partition, score)`` where ``score = total - within(partition)`` is
        the distance cut by the split (in distance units).

    Raises:
        SpaceError: Non-square, asymmetric or non-finite matrix; K outside
            2..8; ``groups`` not 2 or 3 or larger than K; ``groups x min_size`` more than K.

    Example:
        >>> d = [[0, 1, 4, 4], [1, 0, 4, 4], [4, 4, 0, 1], [4, 4, 1, 0]]
        >>> best_partition(d)
        (((0, 1), (2, 3)), 16.0)
        >>> best_partition([[1, .9, 0], [.9, 1, 0], [0, 0, 1]], similarity=True)
        (((0, 1), (2,)), 1.8)
    """
    kind = "similarity" if similarity else "distance"
    matrix = _as_matrix(distances, kind)
    k = matrix.shape[0]
    _check_matrix_size(k)
    groups = _check_count(groups, "groups")
    min_size = _check_min_size(min_size, k, groups)
    if similarity:
        matrix = _similarity_to_distance(matrix)
    best: Partition | None = None
    best_within = math.inf
    for part in _cached_partitions(k, groups, bool(balanced), min_size):
        within = _within(matrix, part)  # fresh value for every partition
        if within < best_within:
            best, best_within = part, within
    assert best is not None  # _check_sizes guarantees at least one partition
    return best, _total(matrix) - best_within


def name_groups(partition: Sequence[Sequence[int]], ops: Sequence[str]) -> list[tuple[str, ...]]:
    """Replace the indices of a partition by the names of the ops.

    Args:
        partition: Groups of indices covering ``range(len(ops))`` once.
        ops: Op names, index ``i`` naming candidate ``i``.

    Returns:
        One tuple of op names per group, in the order of ``partition``.

    Raises:
        SpaceError: ``ops`` is a string or the partition does not cover its indices.

    Example:
        >>> name_groups(((0, 2), (1,)), ["conv", "pool", "skip"])
        [('conv', 'skip'), ('pool',)]
    """
    if isinstance(ops, str):
        raise SpaceError(f"ops must be a sequence of op names, not the string {ops!r}")
    names = list(ops)
    part = _check_partition(partition, len(names))
    return [tuple(names[i] for i in group) for group in part]


# --------------------------------------------------------------------- helpers


@cache
def _cached_partitions(k: int, groups: int, balanced: bool, min_size: int = 1) -> tuple[Partition, ...]:
    found = []
    for labels in _label_vectors(k, groups):
        part = tuple(tuple(i for i in range(k) if labels[i] == g) for g in range(groups))
        sizes = [len(group) for group in part]
        if (not balanced or max(sizes) - min(sizes) <= 1) and min(sizes) >= min_size:
            found.append(part)
    return tuple(found)


def _label_vectors(k: int, groups: int) -> Iterator[tuple[int, ...]]:
    """Restricted-growth label vectors using exactly ``groups`` labels, lexicographically."""

    def extend(prefix: tuple[int, ...], used: int) -> Iterator[tuple[int, ...]]:
        if k - len(prefix) < groups - used:
            return  # not enough ops left to open the remaining groups
        if len(prefix) == k:
            yield prefix
            return
        for label in range(min(used + 1, groups)):
            yield from extend((*prefix, label), max(used, label + 1))

    yield from extend((0,), 1)


def _within(matrix: np.ndarray, partition: Partition) -> float:
    return math.fsum(
        float(matrix[i, j])
        for group in partition
        for a, i in enumerate(group)
        for j in group[a + 1 :]
    )


def _total(matrix: np.ndarray) -> float:
    rows, cols = np.triu_indices(matrix.shape[0], k=1)
    return math.fsum(matrix[rows, cols].tolist())


def _similarity_to_distance(matrix: np.ndarray) -> np.ndarray:
    off_diagonal = ~np.eye(matrix.shape[0], dtype=bool)
    distance = matrix[off_diagonal].max() - matrix
    np.fill_diagonal(distance, 0.0)
    return distance


def _as_matrix(values: Any, kind: str) -> np.ndarray:
    """Convert to a float64 numpy matrix and check it is square, finite and symmetric."""
    try:
        matrix = as_float64(values)
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"{kind} matrix must be a K x K array of numbers ({exc})") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise SpaceError(f"{kind} matrix must be square (K x K), got shape {tuple(matrix.shape)}")
    if not np.isfinite(matrix).all():
        raise SpaceError(f"{kind} matrix contains NaN or inf; every entry must be finite")
    asymmetry = float(np.abs(matrix - matrix.T).max(initial=0.0))
    scale = float(np.abs(matrix).max(initial=0.0))
    if asymmetry > SYMMETRY_RTOL * scale:
        raise SpaceError(
            f"{kind} matrix must be symmetric: max |M - M.T| = {asymmetry:.3g} exceeds "
            f"{SYMMETRY_RTOL:g} x max |M| = {SYMMETRY_RTOL * scale:.3g}"
        )
    return matrix


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise SpaceError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise SpaceError(f"{name} must be an integer, got {value!r}") from None


def _check_matrix_size(k: int) -> None:
    if k < 2:
        raise SpaceError(f"a decision needs at least 2 candidate ops to split (got K={k})")
    if k > MAX_CANDIDATES:
        raise SpaceError(
            f"brute force enumeration supports at most {MAX_CANDIDATES} candidates "
            f"(got K={k}); reduce the op set of this decision or split it in stages"
        )


def _check_sizes(k: int, groups: int) -> None:
    _check_matrix_size(k)
    if groups not in SUPPORTED_GROUPS:
        raise SpaceError(f"groups must be 2 or 3, got {groups}")
    if groups > k:
        raise SpaceError(f"cannot split K={k} candidate ops into {groups} non-empty groups")


def _check_min_size(min_size: Any, k: int, groups: int) -> int:
    """Check K and ``groups`` (:func:`_check_sizes`) and that ``groups`` groups of ``min_size`` ops fit in K."""
    _check_sizes(k, groups)
    min_size = _check_count(min_size, "min_size")
    if min_size < 1:
        raise SpaceError(f"min_size must be 1 or more, got {min_size}")
    if groups * min_size > k:
        raise SpaceError(f"cannot split K={k} candidate ops into {groups} groups of at least {min_size} ops")
    return min_size


def _check_partition(partition: Sequence[Sequence[int]], k: int) -> Partition:
    try:
        part = tuple(tuple(operator.index(i) for i in group) for group in partition)
    except TypeError:
        raise SpaceError(
            f"partition must be a sequence of groups of integer indices, got {partition!r}"
        ) from None
    if any(len(group) == 0 for group in part):
        raise SpaceError(f"partition {part} has an empty group; every group must be non-empty")
    flat = sorted(i for group in part for i in group)
    if flat != list(range(k)):
        raise SpaceError(f"partition {part} must contain each index 0..{k - 1} exactly once")
    return part
