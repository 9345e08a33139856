"""Tests of gmgraph.search.pareto against brute force: dominance, fronts, crowding, hypervolume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmgraph.errors import ConfigError, DataError
from gmgraph.search.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated,
    non_dominated_sort,
)

# small integer coordinates: ties and duplicate points are common
COORD = st.integers(min_value=0, max_value=5)


def point_sets(dims: int, max_size: int = 12):
    return st.lists(st.tuples(*[COORD] * dims), min_size=0, max_size=max_size)


def senses_for(dims: int):
    return st.lists(st.sampled_from(["max", "min"]), min_size=dims, max_size=dims)


def brute_dominates(a, b, senses) -> bool:
    """Spelled out: never worse anywhere, better somewhere."""
    better = worse = False
    for x, y, sense in zip(a, b, senses):
        if (x > y) if sense == "max" else (x < y):
            better = True
        elif x != y:
            worse = True
    return better and not worse


def brute_fronts(points, senses) -> list[list[int]]:
    """Peel: the rows no remaining row dominates, again and again."""
    left = list(range(len(points)))
    fronts = []
    while left:
        front = [i for i in left if not any(brute_dominates(points[j], points[i], senses) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def brute_volume(points, reference, senses) -> float:
    """Count unit cells: with integer points and reference, a cell is dominated iff its worst corner is."""
    ranges = [range(min(r, 0), max(r, 6)) for r in reference]
    count = 0
    for cell in itertools.product(*ranges):
        # the cell [c, c+1]^d lies in p's box iff p is at least as good as the cell's best corner
        corners = [c + 1 if sense == "max" else c for c, sense in zip(cell, senses)]
        inside = all((c >= r) if s == "max" else (c + 1 <= r) for c, r, s in zip(cell, reference, senses))
        if inside and any(all((p >= k) if s == "max" else (p <= k) for p, k, s in zip(point, corners, senses))
                          for point in points):
            count += 1
    return float(count)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_dominates_matches_brute_force(data):
    dims = data.draw(st.integers(1, 4))
    a, b = data.draw(st.tuples(*[COORD] * dims)), data.draw(st.tuples(*[COORD] * dims))
    senses = data.draw(senses_for(dims))
    assert dominates(a, b, senses) == brute_dominates(a, b, senses)
    assert not (dominates(a, b, senses) and dominates(b, a, senses))
    assert not dominates(a, a, senses)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_non_dominated_sort_matches_peeling(data):
    dims = data.draw(st.integers(1, 3))
    points = data.draw(point_sets(dims, 20))
    senses = data.draw(senses_for(dims))
    fronts = non_dominated_sort(points, senses)
    assert fronts == brute_fronts(points, senses)
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))
    mask = non_dominated(points, senses)
    assert np.flatnonzero(mask).tolist() == (fronts[0] if fronts else [])


def test_duplicates_and_ties_share_a_front():
    points = [(1, 1), (1, 1), (0, 2), (1, 2), (1, 2)]
    assert non_dominated_sort(points, ("min", "min")) == [[0, 1, 2], [3, 4]]
    assert non_dominated_sort(points, ("max", "max")) == [[3, 4], [0, 1, 2]]
    assert non_dominated(points, ("max", "min")).tolist() == [True, True, False, False, False]


def test_non_dominated_handles_a_large_set_like_the_table():
    rng = np.random.default_rng(0)
    points = np.c_[rng.integers(0, 50, 4000), rng.integers(0, 50, 4000)]
    mask = non_dominated(points, ("max", "min"))
    # 2-D reference: sort by cost, then accuracy best first; a point is optimal iff it beats all cheaper ones
    best = {}
    for acc, cost in points.tolist():
        best[cost] = max(best.get(cost, -1), acc)
    optimal, record = set(), -1
    for cost in sorted(best):
        if best[cost] > record:
            optimal.add((best[cost], cost))
            record = best[cost]
    assert {tuple(p) for p in points[mask].tolist()} == optimal
    assert mask.sum() == sum(tuple(p) in optimal for p in points.tolist())  # every copy of an optimum kept


def test_crowding_distance_by_hand():
    # x: 0,1,2,4 (span 4); y: 4,2,1,0 (span 4): the inner points get (2-0)/4 + (4-1)/4 and (4-1)/4 + (2-0)/4
    d = crowding_distance([(0, 4), (1, 2), (2, 1), (4, 0)])
    assert d.tolist() == [np.inf, 1.25, 1.25, np.inf]
    assert crowding_distance([(1, 1), (2, 2)]).tolist() == [np.inf, np.inf]
    assert crowding_distance(np.empty((0, 2))).tolist() == []
    # a constant objective adds nothing; the other one decides
    assert crowding_distance([(0, 7), (1, 7), (3, 7)]).tolist() == [np.inf, 1.0, np.inf]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-1000, 1000), st.integers(-1000, 1000)), min_size=3, max_size=12,
                unique_by=(lambda p: p[0], lambda p: p[1])))
def test_crowding_distance_matches_loop_and_ignores_scale_and_sense(points):
    values = np.array(points, dtype=float)
    expected = np.zeros(len(points))
    for j in range(2):
        order = sorted(range(len(points)), key=lambda i: values[i, j])
        span = values[order[-1], j] - values[order[0], j]
        for rank, i in enumerate(order):
            if rank in (0, len(order) - 1):
                expected[i] = np.inf
            elif span > 0 and np.isfinite(expected[i]):
                expected[i] += (values[order[rank + 1], j] - values[order[rank - 1], j]) / span
    got = crowding_distance(values)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(crowding_distance(values * [-3.0, 0.5] + [7.0, -2.0]), got)


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_hypervolume_counts_dominated_cells(data):
    dims = data.draw(st.sampled_from([2, 3]))
    points = data.draw(point_sets(dims, 8 if dims == 2 else 6))
    senses = data.draw(senses_for(dims))
    reference = [data.draw(st.integers(-1, 2)) if s == "max" else data.draw(st.integers(3, 6)) for s in senses]
    assert hypervolume(points, reference, senses) == brute_volume(points, reference, senses)


@settings(max_examples=80, deadline=None)
@given(point_sets(2, 10), st.tuples(COORD, COORD))
def test_hypervolume_never_shrinks_when_a_point_is_added(points, extra):
    ref, senses = (6, 6), ("min", "min")
    before = hypervolume(points, ref, senses)
    after = hypervolume(points + [extra], ref, senses)
    assert after >= before
    if points and any(dominates(p, extra, senses) or tuple(p) == extra for p in points):
        assert after == before  # a dominated or repeated point adds nothing


def test_hypervolume_by_hand_and_in_four_dimensions():
    assert hypervolume([(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)], (4.0, 4.0), ("min", "min")) == 6.0
    assert hypervolume([(94.0, 80.0), (93.0, 20.0)], (80.0, 100.0), ("max", "min")) == 14 * 20 + 13 * 60
    assert hypervolume([], (1.0, 1.0), ("min", "min")) == 0.0
    assert hypervolume([(5.0, 0.0)], (4.0, 4.0), ("min", "min")) == 0.0  # beyond the reference: nothing
    # two boxes in 4-D by inclusion-exclusion: 16 + 12 - 8
    a, b = (0, 0, 0, 0), (1, -1, 0, 0)
    ref = (2, 2, 2, 2)
    box = lambda p: np.prod([r - x for r, x in zip(ref, p)])  # noqa: E731
    both = np.prod([r - max(x, y) for r, x, y in zip(ref, a, b)])
    assert hypervolume([a, b], ref, ("min",) * 4) == box(a) + box(b) - both


@pytest.mark.parametrize("call, error, message", [
    (lambda: dominates((1, 2), (1, 2), ("max",)), ConfigError, "one sense per objective"),
    (lambda: non_dominated_sort([(1, 2)], ("up", "min")), ConfigError, "'max' or 'min', got 'up'"),
    (lambda: non_dominated_sort([(1, 2)], "max"), ConfigError, "one per objective"),
    (lambda: hypervolume([(1, 2)], (3,), ("min", "min")), ConfigError, "needs 2 finite values"),
    (lambda: hypervolume([(1, 2)], (3, float("nan")), ("min", "min")), ConfigError, "needs 2 finite values"),
    (lambda: hypervolume([(1, float("nan"))], (3, 3), ("min", "min")), DataError, "row 0"),
    (lambda: non_dominated([1, 2, 3], ("min",)), DataError, "must be 2-D"),
])
def test_bad_input_is_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
