"""Tests of gmgraph.scores.metric_split (metric-driven, exhaustive and random splits)."""

from __future__ import annotations

import pytest
import torch

import gmgraph
from gmgraph.errors import ConfigError, DataError, SpaceError
from gmgraph.passes.restrict import restrict, split
from gmgraph.scores.metric_split import (
    exhaustive_partition,
    metric_distances,
    metric_split,
    random_partition,
)
from gmgraph.scores.partition import partitions
from gmgraph.spaces import nb201

OPS = nb201.OPS  # none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
FREE = ("none", "skip_connect", "avg_pool_3x3")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions gain nothing from threads; busy-waiting OpenMP threads on a loaded
    machine only slow them down. Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def batches(n: int, size: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g), torch.randint(10, (size,), generator=g)) for _ in range(n)]


def conv_params(k: int) -> int:
    """Parameters one NB201 edge adds with a k x k conv at C=4, N=1 (conv + affine BN, 3 cells)."""
    return sum(c * c * k * k + 2 * c for c in (4, 8, 16))


# ------------------------------------------------------------- metric_distances


def test_params_distances_are_exact_parameter_gaps(tiny_nb201):
    D = metric_distances(tiny_nb201, "2<-1", "params", batches(3), n_children=3, prune=False)
    assert D.shape == (5, 5) and D.dtype == torch.float64
    p = {"nor_conv_1x1": conv_params(1), "nor_conv_3x3": conv_params(3)}
    expected = torch.tensor([[abs(p.get(a, 0) - p.get(b, 0)) for b in OPS] for a in OPS], dtype=torch.float64)
    assert torch.equal(D, expected)
    i, j, k = (OPS.index(op) for op in FREE)
    assert D[i, j] == D[i, k] == D[j, k] == 0.0  # parameter-free ops are indistinguishable
    assert torch.equal(D, D.T) and torch.equal(D.diagonal(), torch.zeros(5, dtype=torch.float64))


def test_distances_are_deterministic_given_the_seed(tiny_nb201):
    first = metric_distances(tiny_nb201, "1<-0", "synflow", batches(2), n_children=2, seed=3)
    again = metric_distances(tiny_nb201, "1<-0", "synflow", batches(2), n_children=2, seed=3)
    other = metric_distances(tiny_nb201, "1<-0", "synflow", batches(2), n_children=2, seed=4)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)  # other children were sampled
    assert torch.isfinite(first).all() and (first >= 0).all()


def test_one_batch_per_child_from_the_iterable(tiny_nb201):
    stream = iter(batches(5))
    metric_distances(tiny_nb201, "1<-0", "params", stream, n_children=3)
    assert len(list(stream)) == 2
    single = batches(1)[0]  # a bare (x, y) is reused for every child
    by_tuple = metric_distances(tiny_nb201, "1<-0", "snip", single, n_children=2)
    by_list = metric_distances(tiny_nb201, "1<-0", "snip", [single, single], n_children=2)
    assert torch.equal(by_tuple, by_list)


def test_scoring_leaves_the_supernet_unchanged(tiny_nb201):
    before = {k: v.clone() for k, v in tiny_nb201.state_dict().items()}
    rng = torch.get_rng_state()
    metric_split(tiny_nb201, "1<-0", "grad_norm", batches(2), n_children=2)
    assert all(torch.equal(before[k], v) for k, v in tiny_nb201.state_dict().items())
    assert all(p.grad is None for p in tiny_nb201.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# ------------------------------------------------------------- metric_split


def test_params_split_puts_parameter_free_ops_together(tiny_nb201):
    groups, score, D = metric_split(tiny_nb201, "1<-0", "params", batches(2), n_children=2, prune=False)
    assert groups == [FREE, ("nor_conv_1x1", "nor_conv_3x3")]
    within = conv_params(3) - conv_params(1)
    total = 3 * conv_params(1) + 3 * conv_params(3) + within  # free-vs-conv pairs + the conv pair
    assert score == pytest.approx(total - within)
    assert D.shape == (5, 5)


def test_unbalanced_split_cuts_off_the_farthest_op(tiny_nb201):
    # The smallest within-group *sum* favours a singleton: 3 x p(1x1) < p(3x3) - p(1x1).
    groups, score, _ = metric_split(
        tiny_nb201, "1<-0", "params", batches(1), n_children=1, balanced=False, prune=False
    )
    assert groups == [("none", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"), ("nor_conv_3x3",)]
    assert score == pytest.approx(4 * conv_params(3) - conv_params(1))


def test_three_groups(tiny_nb201):
    groups, _, _ = metric_split(tiny_nb201, "1<-0", "params", batches(1), n_children=1, groups=3, prune=False)
    assert sorted(op for g in groups for op in g) == sorted(OPS) and len(groups) == 3


def test_non_finite_metric_values_are_refused(tiny_nb201):
    x = torch.randn(1, 3, 8, 8).expand(3, 3, 8, 8)  # identical samples: singular NASWOT kernel
    with pytest.raises(SpaceError, match=r"metric 'naswot' gave non-finite values for the ops of '1<-0'"):
        metric_split(tiny_nb201, "1<-0", "naswot", (x, torch.zeros(3, dtype=torch.long)), n_children=1)


# ------------------------------------------------------------- baselines


def test_exhaustive_partition_is_one_group_per_op(tiny_nb201):
    groups = exhaustive_partition(tiny_nb201, "3<-2")
    assert groups == [[op] for op in OPS]
    children = split(tiny_nb201, "3<-2", groups)
    assert [gmgraph.space(c)["3<-2"] for c in children] == [(op,) for op in OPS]
    narrowed = restrict(tiny_nb201, {"3<-2": ["none", "nor_conv_3x3"]})
    assert exhaustive_partition(narrowed, "3<-2") == [["none"], ["nor_conv_3x3"]]


def test_random_partition_is_a_seeded_valid_split():
    for groups, balanced in [(2, True), (2, False), (3, True)]:
        drawn = {tuple(random_partition(OPS, groups, balanced, seed=s)) for s in range(40)}
        allowed = {tuple(tuple(OPS[i] for i in g) for g in p) for p in partitions(5, groups, balanced)}
        assert drawn <= allowed
        assert len(drawn) > 1
        assert random_partition(OPS, groups, balanced, seed=7) == random_partition(OPS, groups, balanced, seed=7)
    sizes = sorted(len(g) for g in random_partition(OPS, seed=1))
    assert sizes == [2, 3]


# ------------------------------------------------------------- errors


def test_unknown_label(tiny_nb201):
    with pytest.raises(SpaceError, match=r"no decision named '4<-0'; labels are \['1<-0', '2<-0'"):
        metric_distances(tiny_nb201, "4<-0", "params", batches(1), n_children=1)
    with pytest.raises(SpaceError, match="no decision named 'edge'"):
        exhaustive_partition(tiny_nb201, "edge")


def test_a_single_op_label_cannot_be_split(tiny_nb201):
    narrowed = restrict(tiny_nb201, {"1<-0": ["skip_connect"]})
    message = r"decision '1<-0' has only 1 candidate op \['skip_connect'\] and cannot be split"
    with pytest.raises(SpaceError, match=message):
        metric_split(narrowed, "1<-0", "params", batches(1), n_children=1)
    with pytest.raises(SpaceError, match=message):
        exhaustive_partition(narrowed, "1<-0")
    with pytest.raises(SpaceError, match="at least 2 candidate ops"):
        random_partition(["skip_connect"])


def test_bad_settings(tiny_nb201):
    with pytest.raises(ConfigError, match="n_children must be a positive integer, got 0"):
        metric_distances(tiny_nb201, "1<-0", "params", batches(1), n_children=0)
    with pytest.raises(ConfigError, match="unknown zero-cost metric 'ntk'"):
        metric_distances(tiny_nb201, "1<-0", "ntk", batches(1), n_children=1)
    with pytest.raises(DataError, match=r"batches ran out after 2 batch\(es\); n_children=3"):
        metric_distances(tiny_nb201, "1<-0", "params", batches(2), n_children=3)
    with pytest.raises(SpaceError, match="not the string"):
        random_partition("abc")
    with pytest.raises(SpaceError, match="distinct"):
        random_partition(["a", "a"])


# ------------------------------------------------------------- device


def test_an_explicit_cpu_device_is_the_default(tiny_nb201):
    default = metric_distances(tiny_nb201, "1<-0", "snip", batches(2), n_children=2)
    assert torch.equal(metric_distances(tiny_nb201, "1<-0", "snip", batches(2), n_children=2, device="cpu"), default)
    groups, _, D = metric_split(tiny_nb201, "1<-0", "snip", batches(2), n_children=2, device="cpu")
    assert torch.equal(D, default) and groups == metric_split(tiny_nb201, "1<-0", "snip", batches(2), n_children=2)[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_config_error_that_names_the_cpu(tiny_nb201):
    with pytest.raises(ConfigError, match="--device cpu"):
        metric_distances(tiny_nb201, "1<-0", "params", batches(1), n_children=1, device="cuda")
    with pytest.raises(ConfigError, match="--device cpu"):
        metric_split(tiny_nb201, "1<-0", "params", batches(1), n_children=1, device="cuda:0")
