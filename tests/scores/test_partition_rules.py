"""The gm splitter's partition rules: largest-cut (GM-NAS on NB201) and smallest-within (GM-NAS on DARTS)."""

import itertools

import numpy as np
import pytest
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.choice import Choice
from gmgraph.config import PARTITION_RULES, FewShotConfig
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.scores import splitters
from gmgraph.scores.partition import best_partition, partitions
from gmgraph.scores.splitters import SplitRequest, label_split
from gmgraph.train import TrainConfig
from gmgraph.train.fewshot import run_fewshot, split_options
from tests.train.conftest import tiny_supernet

OPS = tuple(f"o{i}" for i in range(7))  # DARTS's 7 ops without none


def matrix(near_pairs: dict, default: float) -> np.ndarray:
    d = np.full((7, 7), default)
    for (i, j), value in near_pairs.items():
        d[i, j] = d[j, i] = value
    np.fill_diagonal(d, 0.0)
    return d


# A: ops 0-1 close, ops 2..6 close to each other, op 2 a little nearer 0 and 1 than the rest.
A = matrix({(0, 1): 0.1, (0, 2): 0.9, (1, 2): 0.9,
            **{pair: 0.1 for pair in itertools.combinations(range(2, 7), 2)}}, 1.0)
# B: two tight groups 0-2 and 3-6 (0.5 inside), far apart (2.0 across).
B = matrix({pair: 0.5 for group in ((0, 1, 2), (3, 4, 5, 6)) for pair in itertools.combinations(group, 2)}, 2.0)


def test_by_hand_largest_cut_splits_b_in_its_two_planted_groups():
    # A, 3|4 only: {0,1,2}|{3..6} keeps 0.1 + 0.9 + 0.9 + 6 x 0.1 = 2.5 of a total 10.9, cutting 8.4.
    assert label_split(A, "largest-cut", groups=2, balanced=True) == (((0, 1, 2), (3, 4, 5, 6)), pytest.approx(8.4))
    # B: the planted 3|4 keeps 9 x 0.5 = 4.5 of 28.5, cutting the 12 x 2.0 = 24 across.
    assert label_split(B, "largest-cut", groups=2, balanced=True) == (((0, 1, 2), (3, 4, 5, 6)), pytest.approx(24.0))


def test_by_hand_smallest_within_takes_a_2_5_split_of_a():
    # A: {0,1}|{2..6} keeps 0.1 + 10 x 0.1 = 1.1, below every 3|4 (best 2.5).
    assert label_split(A, "smallest-within", groups=2, balanced=True) == (((0, 1), (2, 3, 4, 5, 6)),
                                                                          pytest.approx(1.1))
    # B: the planted 3|4 keeps 4.5; the best 2|5 ({0,1}|{2..6}) keeps 0.5 + 4 x 2.0 + 6 x 0.5 = 11.5.
    assert label_split(B, "smallest-within", groups=2, balanced=True) == (((0, 1, 2), (3, 4, 5, 6)),
                                                                          pytest.approx(4.5))


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Choice({op: nn.Identity() for op in OPS}, "a")
        self.b = Choice({op: nn.Identity() for op in OPS}, "b")

    def forward(self, x):
        return self.b(self.a(x))


@pytest.fixture
def hand_made_distances(monkeypatch):
    def fake(gm, label, batches, **options):
        return {"a": A, "b": B}[label]

    monkeypatch.setattr(splitters, "gradient_matching", fake)


@pytest.mark.parametrize(("rule", "label", "groups", "score"), [
    ("largest-cut", "b", [["o0", "o1", "o2"], ["o3", "o4", "o5", "o6"]], 24.0),
    ("smallest-within", "a", [["o0", "o1"], ["o2", "o3", "o4", "o5", "o6"]], 1.1),
])
def test_each_rule_splits_the_label_and_groups_worked_out_by_hand(hand_made_distances, rule, label, groups, score):
    request = SplitRequest(gmgraph.trace(Two()), ["a", "b"], iter([]), partition_rule=rule)
    decision = splitters.split_by_gradient_matching(request)
    assert (decision["label"], decision["groups"]) == (label, groups)
    assert decision["score"] == pytest.approx(score)
    scores = {"largest-cut": {"a": 8.4, "b": 24.0}, "smallest-within": {"a": 1.1, "b": 4.5}}[rule]
    assert decision["scores"] == pytest.approx(scores)


def test_the_default_rule_is_largest_cut_and_gives_what_best_partition_gives(hand_made_distances):
    assert FewShotConfig().partition_rule == "largest-cut" == SplitRequest(None, [], iter([])).partition_rule
    rng = np.random.default_rng(0)
    for k, groups, balanced in [(5, 2, True), (5, 3, True), (7, 2, True), (7, 2, False), (8, 3, False), (4, 2, True)]:
        for _ in range(5):
            d = rng.random((k, k))
            d = d + d.T
            np.fill_diagonal(d, 0.0)
            assert label_split(d, "largest-cut", groups=groups, balanced=balanced) == \
                best_partition(d, groups=groups, balanced=balanced)
    decision = splitters.split_by_gradient_matching(SplitRequest(gmgraph.trace(Two()), ["a", "b"], iter([])))
    cuts = {label: best_partition(d)[1] for label, d in (("a", A), ("b", B))}
    assert decision["label"] == max(cuts, key=cuts.get) and decision["scores"] == cuts


def reference_smallest_within(d: np.ndarray) -> tuple[set, float]:
    """GM-NAS's DARTS rule as described: one group of 2..K//2 ops, the rest the other; least within wins."""
    k = len(d)
    best, best_within = None, np.inf
    for size in range(2, k // 2 + 1):
        for subset in itertools.combinations(range(k), size):
            rest = tuple(i for i in range(k) if i not in subset)
            within = sum(d[i, j] for group in (subset, rest) for i, j in itertools.combinations(group, 2))
            if within < best_within:
                best, best_within = {frozenset(subset), frozenset(rest)}, within
    return best, best_within


@pytest.mark.parametrize("k", [4, 5, 6, 7, 8])
def test_smallest_within_matches_the_rule_enumerated_independently(k):
    rng = np.random.default_rng(k)
    for _ in range(10):
        d = rng.random((k, k))
        d = d + d.T
        np.fill_diagonal(d, 0.0)
        partition, within = label_split(d, "smallest-within", groups=2, balanced=True)
        expected, expected_within = reference_smallest_within(d)
        assert {frozenset(g) for g in partition} == expected
        assert within == pytest.approx(expected_within, rel=1e-12)


def test_groups_of_two_or_more_where_the_label_allows_one_elsewhere():
    sizes = {tuple(sorted(len(g) for g in p)) for p in partitions(7, 2, balanced=False, min_size=2)}
    assert sizes == {(2, 5), (3, 4)}
    assert len(partitions(7, 2, balanced=False, min_size=2)) == 21 + 35
    assert len(partitions(8, 2, balanced=False, min_size=2)) == 28 + 56 + 35
    # Three ops cannot make two groups of two: the rule falls back to groups of one or more.
    d = [[0, 1, 5], [1, 0, 5], [5, 5, 0]]
    assert label_split(d, "smallest-within", groups=2, balanced=True) == (((0, 1), (2,)), 1.0)
    with pytest.raises(SpaceError, match="cannot split K=5 candidate ops into 3 groups of at least 2 ops"):
        partitions(5, 3, min_size=2)
    with pytest.raises(SpaceError, match="min_size must be 1 or more, got 0"):
        partitions(5, 2, min_size=0)


def test_unknown_rules_and_rules_for_other_splitters_are_config_errors():
    assert PARTITION_RULES == ("largest-cut", "smallest-within")
    with pytest.raises(ConfigError, match="unknown partition-rule 'min-cut'; choose one of largest-cut, smallest-within"):
        FewShotConfig(partition_rule="min-cut")
    with pytest.raises(ConfigError, match="--partition-rule smallest-within picks gradient matching's split: use "
                                          "--method gm"):
        FewShotConfig(method="random", partition_rule="smallest-within")
    with pytest.raises(ConfigError, match="unknown partition rule 'x'"):
        label_split(A, "x", groups=2, balanced=True)


def test_a_run_with_smallest_within_splits_the_label_with_the_least_within_distance():
    config = FewShotConfig(method="gm", split_at=(1,), rounds=1, partition_rule="smallest-within")
    assert split_options(config)["partition_rule"] == "smallest-within"
    digits = data.load("digits", batch_size=64, seed=0)
    result = run_fewshot(tiny_supernet(), digits, config, TrainConfig(epochs=2, steps_per_epoch=2), quiet=True)
    step = result.tree[0]
    assert step["score"] == min(step["scores"].values())
    assert step["label"] == min(step["scores"], key=step["scores"].get)
    assert sorted(len(g) for g in step["groups"]) == [2, 3]  # NB201's 5 ops: groups of two or more are 2|3
