import pytest
import torch

import gmgraph
from gmgraph.errors import SpaceError
from gmgraph.passes import lineage_id, restrict, split
from gmgraph.spaces import nb201


def state(gm):
    return {k: v.clone() for k, v in gm.state_dict().items()}


def test_restrict_keeps_only_the_named_ops_in_parent_order(tiny_nb201):
    child = restrict(tiny_nb201, {"2<-1": ["nor_conv_3x3", "none"]})
    assert gmgraph.space(child)["2<-1"] == ("none", "nor_conv_3x3")
    assert gmgraph.space(child)["1<-0"] == nb201.OPS
    assert gmgraph.space_size(child) == 2 * 5**5
    for module in gmgraph.choices(child)["2<-1"]:
        assert list(module.ops) == ["none", "nor_conv_3x3"]


def test_weights_are_inherited_copies(tiny_nb201):
    child = restrict(tiny_nb201, {"1<-0": ["nor_conv_1x1"]})
    parent_state, child_state = tiny_nb201.state_dict(), child.state_dict()
    assert set(child_state) < set(parent_state)
    for name, value in child_state.items():
        assert torch.equal(value, parent_state[name])
        assert value.data_ptr() != parent_state[name].data_ptr()  # copied, not shared


def test_input_graph_is_never_mutated(tiny_nb201):
    before_space, before_state = gmgraph.space(tiny_nb201), state(tiny_nb201)
    before_code = tiny_nb201.code
    children = split(tiny_nb201, "1<-0", [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]])
    for child in children:
        for p in child.parameters():
            p.data.add_(1.0)
    assert gmgraph.space(tiny_nb201) == before_space
    assert tiny_nb201.code == before_code
    after = tiny_nb201.state_dict()
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)


def test_split_children_cover_the_parent_exactly(tiny_nb201):
    partition = [["none", "avg_pool_3x3"], ["skip_connect", "nor_conv_1x1", "nor_conv_3x3"]]
    children = split(tiny_nb201, "3<-2", partition)
    groups = [gmgraph.space(c)["3<-2"] for c in children]
    assert sorted(op for g in groups for op in g) == sorted(nb201.OPS)
    assert sum(gmgraph.space_size(c) for c in children) == gmgraph.space_size(tiny_nb201)


def test_lineage_is_recorded(tiny_nb201):
    child = restrict(tiny_nb201, {"1<-0": ["none", "skip_connect"]})
    grandchild = restrict(child, {"2<-0": ["nor_conv_3x3"]})
    assert grandchild.meta["parent"] == lineage_id(child) == "root/1<-0=none+skip_connect"
    assert grandchild.meta["lineage"] == [
        {"label": "1<-0", "ops": ["none", "skip_connect"]},
        {"label": "2<-0", "ops": ["nor_conv_3x3"]},
    ]
    assert tiny_nb201.meta["lineage"] == [] and "parent" not in tiny_nb201.meta


def test_restricted_graph_runs_and_matches_parent_on_shared_archs(tiny_nb201):
    child = restrict(tiny_nb201, {"1<-0": ["nor_conv_3x3", "avg_pool_3x3"]})
    arch = gmgraph.sample(child, torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 8, 8)
    with gmgraph.use(child, arch), gmgraph.use(tiny_nb201, arch):
        torch.testing.assert_close(child(x), tiny_nb201(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "partition, message",
    [
        ([["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3"]], r"leaves out \['avg_pool_3x3'\]"),
        ([["none", "skip_connect"], ["skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]], "overlap"),
        ([["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"], []], "empty"),
        ([["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "conv7"]], "no op"),
        (["none", "skip_connect"], "must be a list of op names"),
        ([], "no groups"),
    ],
)
def test_bad_partitions_raise_clear_errors(tiny_nb201, partition, message):
    with pytest.raises(SpaceError, match=message):
        split(tiny_nb201, "1<-0", partition)


def test_unknown_label_is_an_error(tiny_nb201):
    with pytest.raises(SpaceError, match="no decision named '4<-0'"):
        restrict(tiny_nb201, {"4<-0": ["none"]})
