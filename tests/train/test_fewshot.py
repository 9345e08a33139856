import pytest
import torch

import gmgraph
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.train import TrainConfig
from gmgraph.train.fewshot import FewShotConfig, locate, run_fewshot
from tests.train.conftest import straight_and_resumed, tiny_supernet

TRAIN = TrainConfig(steps_per_epoch=2)


def train(epochs):
    return TrainConfig(epochs=epochs, steps_per_epoch=2)


def archs_of(gm, n=300):
    g = torch.Generator().manual_seed(0)
    return [gmgraph.sample(gm, g) for _ in range(n)]


GM = FewShotConfig(method="gm", split_at=(1, 2), rounds=1)
"""The GM run three tests read: two splits of a 3-epoch run, one gradient-matching batch per label."""


@pytest.fixture(scope="module")
def gm_run(digits):
    """``(root graph, its space before the run, the GM run's result)``, run once: the tests only read it."""
    gm = tiny_supernet()
    root_space = gmgraph.space(gm)
    return gm, root_space, run_fewshot(gm, digits, GM, train(3), quiet=True)


@pytest.mark.parametrize("method", ["gm", "random", "metric:params"])
def test_leaves_cover_the_root_space_exactly_once(digits, gm_run, method):
    if method == "gm":
        gm, root_space, result = gm_run
    else:
        gm = tiny_supernet()
        root_space = gmgraph.space(gm)
        result = run_fewshot(gm, digits, FewShotConfig(method=method, split_at=(1, 2), rounds=1,
                                                       metric_children=1), train(3), quiet=True)
    root_size = gmgraph.space_size(gm)
    assert root_size == 5 ** 6
    assert len(result.leaves) == 4
    assert sum(gmgraph.space_size(leaf.gm) for leaf in result.leaves) == root_size
    # The sizes adding up to the root's and every arch lying in one leaf make "exactly once"; 100 random archs reach
    # each of the 4 leaves (the smallest holds 4/25 of the space; each leaf gets 14 or more of them, every method).
    for arch in archs_of(gm, 100):
        assert sum(leaf.contains(arch) for leaf in result.leaves) == 1
        assert locate(result, arch).contains(arch)
    assert gmgraph.space(gm) == root_space  # the root graph keeps its space
    assert result.budget == 1 + 2 + 4
    assert [t["epoch"] for t in result.tree] == [1, 2, 2]


def test_exhaustive_gives_one_child_per_op(digits):
    result = run_fewshot(tiny_supernet(), digits, FewShotConfig(method="exhaustive", split_at=(1,)), train(2),
                 quiet=True)
    assert [leaf.space["1<-0"] for leaf in result.leaves] == [(op,) for op in gmgraph.space(tiny_supernet())["1<-0"]]
    assert result.budget == 1 + 5


def test_metric_params_split_groups_ops_by_parameter_count(digits):
    result = run_fewshot(tiny_supernet(), digits, FewShotConfig(method="metric:params", split_at=(1,),
                                                        metric_children=2), train(2), quiet=True)
    groups = sorted(sorted(leaf.space["1<-0"]) for leaf in result.leaves)
    assert groups == [["avg_pool_3x3", "none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3"]]


def test_oneshot_never_splits(digits):
    result = run_fewshot(tiny_supernet(), digits, FewShotConfig(method="oneshot", split_at=()), train(2), quiet=True)
    assert len(result.leaves) == 1 and result.tree == [] and result.budget == 2


def test_each_child_scores_its_own_labels(gm_run):
    _, _, result = gm_run
    first = result.tree[0]["label"]
    for record in result.tree[1:]:
        assert record["label"] != first  # a label is split at most once per lineage
        assert set(record["scores"]) == set(gmgraph.space(tiny_supernet())) - {first}


def test_resume_after_a_kill_continues_from_the_last_checkpoint(digits, gm_run, tmp_path):
    epochs_seen = []
    straight, resumed = straight_and_resumed(digits, GM, train(3), tmp_path, kill_at=2,
                                             on_epoch=lambda e, _: epochs_seen.append(e), straight=gm_run[2])
    assert epochs_seen == [3]
    assert [leaf.id for leaf in resumed.leaves] == [leaf.id for leaf in straight.leaves]
    assert resumed.tree == straight.tree and resumed.budget == straight.budget
    for a, b in zip(straight.leaves, resumed.leaves):
        sa, sb = a.gm.state_dict(), b.gm.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_schedules_are_config_errors(digits):
    with pytest.raises(ConfigError, match="unknown method 'gm2'"):
        run_fewshot(tiny_supernet(), digits, FewShotConfig(method="gm2"), TRAIN, quiet=True)
    with pytest.raises(ConfigError, match="split epochs must be between 1 and 2"):
        run_fewshot(tiny_supernet(), digits, FewShotConfig(method="gm", split_at=(3,)), train(3), quiet=True)
    with pytest.raises(ConfigError, match="groups must be 2 or 3"):
        run_fewshot(tiny_supernet(), digits, FewShotConfig(groups=4), TRAIN, quiet=True)


def test_locate_outside_the_space():
    from gmgraph.train.fewshot import FewShotResult, SubSupernet

    gm = tiny_supernet()
    leaf = SubSupernet("root", gmgraph.passes.restrict(gm, {"1<-0": ["none"]}), trainer=None)
    arch = {label: "skip_connect" for label in gmgraph.space(gm)}
    with pytest.raises(SpaceError, match="no sub-supernet contains"):
        locate(FewShotResult(leaves=[leaf]), arch)
    # With the rest of "1<-0" in a second leaf the two partition the space: every arch is in exactly one.
    ops = gmgraph.space(gm)["1<-0"]
    rest = gmgraph.passes.restrict(gm, {"1<-0": [op for op in ops if op != "none"]})
    result = FewShotResult(leaves=[leaf, type(leaf)("other", rest, trainer=None)])
    seen = set()
    for sampled in archs_of(gm, 100):
        expected = result.leaves[0] if sampled["1<-0"] == "none" else result.leaves[1]
        assert [node.id for node in result.leaves if node.contains(sampled)] == [expected.id]
        assert locate(result, sampled) is expected
        seen.add(expected.id)
    assert seen == {"root", "other"}
