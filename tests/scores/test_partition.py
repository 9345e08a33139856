"""Tests of gmgraph.scores.partition (brute-force gradient-matching split)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gmgraph.errors import GmGraphError, SpaceError
from gmgraph.scores.partition import best_partition, name_groups, partitions, within_distance

# ------------------------------------------------------------------ reference


def brute_partitions(k: int, groups: int, balanced: bool) -> set:
    """Independent enumeration: every label assignment, canonicalised."""
    found = set()
    for labels in itertools.product(range(groups), repeat=k):
        part = [tuple(i for i in range(k) if labels[i] == g) for g in range(groups)]
        if any(not group for group in part):
            continue
        sizes = [len(group) for group in part]
        if balanced and max(sizes) - min(sizes) > 1:
            continue
        found.add(tuple(sorted(part)))
    return found


def brute_within(d, part) -> float:
    return sum(d[i][j] for group in part for i in group for j in group if i < j)


def brute_total(d) -> float:
    k = len(d)
    return sum(d[i][j] for i in range(k) for j in range(i + 1, k))


def planted(part, k: int, *, near: float = 0.1, far: float = 1.0, seed: int = 0) -> np.ndarray:
    """Symmetric matrix: small distances inside the groups of ``part``, large across."""
    rng = np.random.default_rng(seed)
    label = {i: g for g, group in enumerate(part) for i in group}
    d = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            base = near if label[i] == label[j] else far
            d[i, j] = d[j, i] = base + 0.05 * rng.random()
    return d


# ------------------------------------------------------------------ partitions


@pytest.mark.parametrize(
    ("k", "groups", "balanced", "count"),
    [
        (5, 2, True, 10),
        (5, 2, False, 15),
        (6, 3, True, 15),
        (4, 3, False, 6),
        (4, 2, True, 3),
        (2, 2, True, 1),
        (3, 3, True, 1),
        (8, 2, False, 127),
        (8, 3, False, 966),
        (8, 3, True, 280),
    ],
)
def test_partition_counts_match_independent_enumeration(k, groups, balanced, count):
    parts = partitions(k, groups, balanced)
    assert len(parts) == count
    assert len(set(parts)) == count
    assert set(parts) == brute_partitions(k, groups, balanced)


def test_partitions_of_five_into_two_cover_every_op_once():
    parts = partitions(5, 2)
    assert len(parts) == 10
    for part in parts:
        assert len(part) == 2
        assert sorted(i for group in part for i in group) == [0, 1, 2, 3, 4]
        assert sorted(len(group) for group in part) == [2, 3]


def test_partitions_are_canonical_and_in_documented_order():
    assert partitions(4) == [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))]
    for part in partitions(6, 3, balanced=False):
        assert all(list(group) == sorted(group) for group in part)
        assert [group[0] for group in part] == sorted(group[0] for group in part)
    # lexicographic order of the label vectors
    labels = [
        tuple(next(g for g, group in enumerate(p) if i in group) for i in range(6))
        for p in partitions(6, 3, balanced=False)
    ]
    assert labels == sorted(labels)


def test_partitions_returns_a_fresh_list():
    parts = partitions(4)
    parts.clear()
    assert len(partitions(4)) == 3


# ------------------------------------------------------------------ best_partition


def test_planted_two_clusters_recovered_with_hand_computed_cut():
    same = {(0, 2), (1, 3), (1, 4), (3, 4)}
    d = [
        [0.0 if i == j or (min(i, j), max(i, j)) in same else 2.0 for j in range(5)]
        for i in range(5)
    ]
    part, score = best_partition(d)
    assert part == ((0, 2), (1, 3, 4))
    # 2 x 3 = 6 pairs cross the split, each at distance 2
    assert score == 12.0
    assert within_distance(d, part) == 0.0


def test_planted_two_clusters_unbalanced():
    d = planted(((0,), (1, 2, 3, 4)), 5)
    assert best_partition(d, balanced=False)[0] == ((0,), (1, 2, 3, 4))
    # balanced split cannot isolate op 0, so it must pick a 2/3 split
    assert sorted(len(g) for g in best_partition(d)[0]) == [2, 3]


@pytest.mark.parametrize("balanced", [True, False])
def test_every_planted_three_cluster_structure_recovered_in_sequence(balanced):
    """Catches a cut accumulator that is not reset between partitions or calls.

    Each planted structure is at a different position in enumeration order
    (including the last), and the matrices are evaluated one after another.
    """
    parts = partitions(6, 3, balanced)
    for seed, truth in enumerate(parts):
        d = planted(truth, 6, seed=seed)
        part, score = best_partition(d, groups=3, balanced=balanced)
        assert part == truth
        assert score == pytest.approx(brute_total(d) - brute_within(d, truth))
        cut = sum(
            d[i, j]
            for i in range(6)
            for j in range(i + 1, 6)
            if not any(i in g and j in g for g in truth)
        )
        assert score == pytest.approx(cut)


def test_three_way_split_result_does_not_depend_on_previous_calls():
    a = planted(((0, 1), (2, 3), (4, 5)), 6, seed=1)
    b = planted(((0, 5), (1, 4), (2, 3)), 6, seed=2)
    first = best_partition(a, groups=3)
    best_partition(b, groups=3)
    assert best_partition(a, groups=3) == first


def test_far_apart_pair_with_large_within_is_still_chosen_over_low_cut():
    """A split is chosen by its within distance, never compared with a cut value."""
    # big distances everywhere: every within value exceeds every cut value
    d = planted(((0, 1), (2, 3)), 4, near=100.0, far=150.0)
    part, score = best_partition(d)
    assert part == ((0, 1), (2, 3))
    assert score == pytest.approx(brute_total(d) - brute_within(d, part))


def test_ties_go_to_the_first_partition_in_enumeration_order():
    d = np.ones((4, 4)) - np.eye(4)
    assert best_partition(d) == (((0, 1), (2, 3)), 4.0)
    assert best_partition(d, groups=3)[0] == partitions(4, 3)[0]


@pytest.mark.parametrize(
    "convert",
    [
        lambda d: d.tolist(),
        lambda d: d,
        lambda d: torch.tensor(d),
        lambda d: torch.tensor(d, dtype=torch.float32, requires_grad=True),
    ],
    ids=["list", "numpy", "tensor64", "tensor32-grad"],
)
def test_accepts_lists_arrays_and_tensors(convert):
    d = planted(((0, 3), (1, 2, 4)), 5)
    part, score = best_partition(convert(d))
    assert part == ((0, 3), (1, 2, 4))
    assert isinstance(score, float)
    assert score == pytest.approx(brute_total(d) - brute_within(d, part), rel=1e-6)


def test_diagonal_is_ignored():
    d = planted(((0, 1), (2, 3)), 4)
    noisy = d + np.diag([5.0, -1.0, 3.0, 0.5])
    assert best_partition(noisy) == best_partition(d)


def test_similarity_is_converted_with_max_minus_s():
    rng = np.random.default_rng(3)
    g = rng.normal(size=(6, 20))
    g[3] = g[0] + 0.01 * rng.normal(size=20)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = g @ g.T
    part, score = best_partition(s, similarity=True)
    off = s[~np.eye(6, dtype=bool)]
    d = off.max() - s
    np.fill_diagonal(d, 0.0)
    assert (part, pytest.approx(score)) == best_partition(d)
    # balanced: the same as using 1 - cosine similarity as distance
    assert part == best_partition(1 - s)[0]
    assert any(set(group) >= {0, 3} for group in part)


def test_similarity_doctest_example():
    s = [[1, 0.9, 0], [0.9, 1, 0], [0, 0, 1]]
    assert best_partition(s, similarity=True) == (((0, 1), (2,)), pytest.approx(1.8))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_best_partition_is_the_brute_force_minimum(data):
    k = data.draw(st.integers(2, 6), label="k")
    groups = data.draw(st.sampled_from([g for g in (2, 3) if g <= k]), label="groups")
    balanced = data.draw(st.booleans(), label="balanced")
    values = data.draw(
        st.lists(
            st.floats(0, 10, allow_nan=False), min_size=k * (k - 1) // 2, max_size=k * (k - 1) // 2
        ),
        label="upper",
    )
    d = np.zeros((k, k))
    d[np.triu_indices(k, 1)] = values
    d = d + d.T
    part, score = best_partition(d, groups, balanced)
    candidates = brute_partitions(k, groups, balanced)
    assert part in candidates
    minimum = min(brute_within(d, p) for p in candidates)
    assert within_distance(d, part) == pytest.approx(minimum, abs=1e-9)
    assert score == pytest.approx(brute_total(d) - within_distance(d, part), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_integer_ties_resolve_to_first_minimum(data):
    k = data.draw(st.integers(2, 6), label="k")
    groups = data.draw(st.sampled_from([g for g in (2, 3) if g <= k]), label="groups")
    balanced = data.draw(st.booleans(), label="balanced")
    values = data.draw(
        st.lists(st.integers(0, 2), min_size=k * (k - 1) // 2, max_size=k * (k - 1) // 2),
        label="upper",
    )
    d = np.zeros((k, k))
    d[np.triu_indices(k, 1)] = values
    d = d + d.T
    ordered = partitions(k, groups, balanced)
    withins = [brute_within(d, p) for p in ordered]
    first = ordered[withins.index(min(withins))]
    assert best_partition(d, groups, balanced) == (first, brute_total(d) - min(withins))


# ------------------------------------------------------------------ helpers


def test_within_distance_by_hand():
    d = [[0, 1, 5, 7], [1, 0, 2, 3], [5, 2, 0, 4], [7, 3, 4, 0]]
    assert within_distance(d, [(0, 1), (2, 3)]) == 1 + 4
    assert within_distance(d, [(0, 2, 3), (1,)]) == 5 + 7 + 4
    assert within_distance(d, [[0, 1, 2, 3]]) == 22


def test_name_groups():
    ops = ["conv3x3", "conv5x5", "skip", "pool"]
    assert name_groups(((0, 1), (2, 3)), ops) == [("conv3x3", "conv5x5"), ("skip", "pool")]
    part, _ = best_partition(planted(((0, 3), (1, 2)), 4))
    assert name_groups(part, ops) == [("conv3x3", "pool"), ("conv5x5", "skip")]


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[0, 1, 2], [1, 0, 3]], "must be square"),
        ([0, 1, 2], "must be square"),
        ([[0, 1], [2, 0]], "must be symmetric"),
        ([[0, float("nan")], [float("nan"), 0]], "NaN"),
        ([[0, float("inf")], [float("inf"), 0]], "inf"),
        ([[0, 1], [1]], "K x K array of numbers"),
        ([[0]], "at least 2 candidate ops"),
        (np.zeros((9, 9)), "brute force enumeration supports at most 8 candidates (got K=9)"),
    ],
)
def test_bad_matrices_raise_space_error(matrix, message):
    with pytest.raises(SpaceError) as info:
        best_partition(matrix)
    assert message in str(info.value)


def test_symmetry_tolerance_is_relative():
    d = planted(((0, 1), (2, 3)), 4) * 1000
    d[0, 1] += 1e-4  # 1e-7 relative to max |D| ~ 1000
    best_partition(d)
    d[0, 1] += 1.0  # 1e-3 relative
    with pytest.raises(SpaceError, match="symmetric"):
        best_partition(d)


def test_similarity_errors_name_the_matrix_kind():
    with pytest.raises(SpaceError, match="similarity matrix must be symmetric"):
        best_partition([[1, 0.5], [0.2, 1]], similarity=True)


@pytest.mark.parametrize(
    ("k", "groups", "message"),
    [
        (4, 4, "groups must be 2 or 3, got 4"),
        (4, 1, "groups must be 2 or 3, got 1"),
        (2, 3, "cannot split K=2 candidate ops into 3 non-empty groups"),
        (9, 2, "at most 8 candidates (got K=9)"),
        (1, 2, "needs at least 2 candidate ops to split (got K=1)"),
    ],
)
def test_bad_sizes_raise_space_error(k, groups, message):
    with pytest.raises(SpaceError) as info:
        partitions(k, groups)
    assert message in str(info.value)
    with pytest.raises(SpaceError) as info:
        best_partition(np.ones((k, k)) - np.eye(k), groups=groups)
    assert message in str(info.value)


@pytest.mark.parametrize("bad", [2.0, True, "2", None])
def test_non_integer_groups_rejected(bad):
    with pytest.raises(SpaceError, match="groups must be an integer"):
        partitions(4, bad)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ([(0, 1), (2,)], "exactly once"),
        ([(0, 1), (1, 2, 3)], "exactly once"),
        ([(0, 1, 2, 3, 4)], "exactly once"),
        ([(0, 1, 2, 3), ()], "empty group"),
        ([(0, 1.5), (2, 3)], "integer indices"),
    ],
)
def test_bad_partitions_rejected(part, message):
    d = np.ones((4, 4)) - np.eye(4)
    with pytest.raises(SpaceError, match=message):
        within_distance(d, part)
    with pytest.raises(SpaceError, match=message):
        name_groups(part, ["a", "b", "c", "d"])


def test_name_groups_rejects_a_string_of_ops():
    with pytest.raises(SpaceError, match="sequence of op names"):
        name_groups(((0,), (1,)), "ab")


def test_space_error_is_a_value_error_and_gmgraph_error():
    with pytest.raises(ValueError):
        partitions(9)
    with pytest.raises(GmGraphError):
        partitions(9)
