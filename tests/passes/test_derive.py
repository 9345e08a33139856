import operator

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Zero
from gmgraph.passes import derive
from gmgraph.spaces import nb201
from tests.conftest import assert_derived_matches, eval_graph


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Choice({"zero": Zero(), "fc": nn.Linear(2, 2), "skip": nn.Identity()}, "a")
        self.b = Choice({"skip": nn.Identity(), "relu": nn.ReLU()}, "b")

    def forward(self, x):
        return self.b(x) + self.a(x)


def test_identity_is_folded_and_zero_terms_dropped():
    plain = derive(gmgraph.trace(Toy()), {"a": "zero", "b": "skip"})
    assert [n.op for n in plain.graph.nodes] == ["placeholder", "output"]
    assert list(plain.named_modules()) == [("", plain)]


def test_chosen_op_replaces_the_choice_node():
    gm = gmgraph.trace(Toy())
    plain = derive(gm, {"a": "fc", "b": "relu"})
    calls = [(n.op, n.target) for n in plain.graph.nodes if n.op != "placeholder"]
    assert calls == [("call_module", "b"), ("call_module", "a"), ("call_function", operator.add), ("output", "output")]
    assert isinstance(plain.get_submodule("a"), nn.Linear)
    assert isinstance(plain.get_submodule("b"), nn.ReLU)
    x = torch.randn(3, 2)
    with gmgraph.use(gm, {"a": "fc", "b": "relu"}):
        torch.testing.assert_close(plain(x), gm(x), rtol=0, atol=0)


def test_supernet_is_not_changed_and_weights_are_copied():
    gm = gmgraph.trace(Toy())
    code = gm.code
    plain = derive(gm, {"a": "fc", "b": "skip"})
    plain.a.weight.data.add_(1.0)
    assert gm.code == code
    assert not torch.equal(gm.a.ops["fc"].weight, plain.a.weight)


def test_inherit_false_initialises_afresh():
    torch.manual_seed(0)
    gm = gmgraph.trace(Toy())
    torch.manual_seed(1)
    plain = derive(gm, {"a": "fc", "b": "skip"}, inherit=False)
    assert not torch.equal(gm.a.ops["fc"].weight, plain.a.weight)


@pytest.fixture(scope="module")
def nb201_graph():
    return eval_graph(lambda: nb201.supernet(C=16, N=5))


def chosen_parameter_names(gm, arch, live):
    names = set()
    for name, _ in gm.named_parameters():
        if ".ops." not in name:
            names.add(name)
            continue
        path, op_and_rest = name.split(".ops.", 1)
        op = op_and_rest.split(".", 1)[0]
        label = gm.get_submodule(path).label
        if arch[label] == op and label in live:
            names.add(name.replace(f".ops.{op}", ""))
    return names


def test_50_random_archs_match_the_supernet_and_hold_exactly_the_chosen_parameters(nb201_graph):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=generator)
    for _ in range(50):
        arch = gmgraph.sample(nb201_graph, generator)
        plain = assert_derived_matches(nb201_graph, arch, x, atol=1e-6)
        live = nb201.live_edges(arch)
        non_affine_extra = {n for n, _ in plain.named_parameters() if n.endswith((".2.weight", ".2.bias"))}
        assert {n for n, _ in plain.named_parameters()} - non_affine_extra == chosen_parameter_names(
            nb201_graph, arch, live
        ) - non_affine_extra


@pytest.mark.parametrize("op", ["none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3"])
def test_uniform_archs(nb201_graph, op):
    arch = {label: op for label in nb201.LABELS}
    x = torch.randn(3, 3, 8, 8)
    plain = assert_derived_matches(nb201_graph, arch, x, atol=1e-6)
    assert plain(x).shape == (3, 10)
    if op == "skip_connect":  # every cell is the identity: no cell module is left
        assert not any(".edges." in name for name, _ in plain.named_modules())


def test_non_affine_bn_becomes_identity_initialised_affine_bn(nb201_graph):
    plain = derive(nb201_graph, {label: "nor_conv_1x1" for label in nb201.LABELS})
    bn = plain.get_submodule("cells.0.edges.0.2")
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine
    assert torch.equal(bn.weight, torch.ones(16)) and torch.equal(bn.bias, torch.zeros(16))
    assert torch.equal(bn.running_mean, nb201_graph.get_submodule("cells.0.edges.0").ops["nor_conv_1x1"][2].running_mean)
