"""InputChoice and Repeat pass the tests Choice does: derive == supernet path, split inheritance, ONNX parity,
training, gradient matching, a search."""

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.choice import Choice
from gmgraph.config import TrainConfig
from gmgraph.errors import SpaceError
from gmgraph.input_choice import InputChoice, Repeat
from gmgraph.passes import split
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.train import SupernetTrainer
from tests.conftest import assert_derived_matches, assert_onnx_parity


def conv(c):
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())


class Cell(nn.Module):
    """Two ops on the stem, then a node that sums two of the three states it could read (DARTS's top-2), a
    block repeated 1..3 times, and a head."""

    def __init__(self, c=4, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c))
        self.a = Choice({"conv": conv(c), "skip": nn.Identity()}, "a")
        self.b = conv(c)
        self.pick = InputChoice(3, k=2, label="inputs")
        self.deep = Repeat(lambda i: conv(c), depths=(1, 2, 3), label="depth")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x):
        s0 = self.stem(x)
        s1 = self.a(s0)
        s2 = self.b(s1)
        return self.head(self.deep(self.pick([s0, s1, s2])))


@pytest.fixture
def gm():
    torch.manual_seed(0)
    return gmgraph.trace(Cell()).eval()


def test_they_are_labels_of_the_space_and_derive_computes_the_supernets_path(gm):
    assert gmgraph.space(gm) == {"a": ("conv", "skip"), "inputs": ("0+1", "0+2", "1+2"), "depth": ("d3", "d2", "d1")}
    x = torch.randn(2, 1, 8, 8)
    for arch in ({"a": "conv", "inputs": "0+2", "depth": "d1"}, {"a": "skip", "inputs": "1+2", "depth": "d3"}):
        net = assert_derived_matches(gm, arch, x, atol=0)
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in gm.parameters())
    depth1 = sum(p.numel() for p in gmgraph.passes.derive(gm, {"a": "skip", "inputs": "0+1", "depth": "d1"})
                 .parameters())
    depth3 = sum(p.numel() for p in gmgraph.passes.derive(gm, {"a": "skip", "inputs": "0+1", "depth": "d3"})
                 .parameters())
    assert depth3 - depth1 == 2 * sum(p.numel() for p in conv(4).parameters())  # the depths share blocks


def test_a_split_child_owns_its_blocks_and_inherits_their_values(gm):
    shallow, deep = split(gm, "depth", [["d1"], ["d3", "d2"]])
    assert gmgraph.space(shallow)["depth"] == ("d1",) and gmgraph.space(deep)["depth"] == ("d3", "d2")
    first = dict(deep.named_parameters())
    for name, p in shallow.named_parameters():
        if name in first:
            assert torch.equal(p, first[name]) and p.data_ptr() != first[name].data_ptr()
    a, b = split(gm, "inputs", [["0+1"], ["0+2", "1+2"]])
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad(), gmgraph.use(gm, {"a": "conv", "inputs": "0+2", "depth": "d2"}):
        expected = gm(x)
    with torch.no_grad(), gmgraph.use(b, {"a": "conv", "inputs": "0+2", "depth": "d2"}):
        assert torch.equal(b(x), expected)


def test_a_derived_network_exports_to_onnx_and_runs_the_same_in_onnxruntime(gm, tmp_path):
    net = gmgraph.passes.derive(gm, {"a": "conv", "inputs": "1+2", "depth": "d2"})
    assert_onnx_parity(net, torch.randn(2, 1, 8, 8), tmp_path / "net.onnx")


def test_they_train_and_score_as_choices_do(gm):
    loaders = data.load("digits", batch_size=16)
    trainer = SupernetTrainer(gm.train(), loaders, TrainConfig(epochs=1, steps_per_epoch=3, sampler="darts"))
    trainer.train_epoch(quiet=True)
    assert set(trainer.sampler.alphas) == {"a", "inputs", "depth"}
    distances = gradient_matching(gm, "inputs", iter(loaders.train), rounds=1)
    assert distances.shape == (3, 3) and torch.isfinite(distances).all()


def test_bad_uses_are_named():
    with pytest.raises(SpaceError, match="1 <= k <= n"):
        InputChoice(2, k=3, label="x")
    with pytest.raises(SpaceError, match="reduction must be one of sum, concat"):
        InputChoice(2, label="x", reduction="max")
    with pytest.raises(SpaceError, match="called with a list of its 2 inputs"):
        InputChoice(2, label="x")(torch.ones(2))
    with pytest.raises(SpaceError, match="2 blocks given for a depth of 3"):
        Repeat([nn.Identity(), nn.Identity()], depths=(1, 3), label="d")


def test_params_and_flops_measure_them(gm):  # latency tables: tests/latency/test_input_choice_table.py
    from gmgraph.search.measures import arch_measures

    measures = arch_measures(gm, (1, 8, 8))
    deep, shallow = {"a": "conv", "inputs": "0+2", "depth": "d3"}, {"a": "conv", "inputs": "0+2", "depth": "d1"}
    block = sum(p.numel() for p in conv(4).parameters()) / 1e6
    assert measures["params"](deep) - measures["params"](shallow) == pytest.approx(2 * block)
    assert measures["flops"](deep) > measures["flops"](shallow)


def test_derive_drops_what_only_the_inputs_not_picked_needed(gm):
    # inputs 0+1 leave s2 = b(s1) unread: derive removes b; a single summed input is the input itself
    x = torch.randn(2, 1, 8, 8)
    both = assert_derived_matches(gm, {"a": "conv", "inputs": "0+1", "depth": "d1"}, x, atol=0)
    with_b = gmgraph.passes.derive(gm, {"a": "conv", "inputs": "0+2", "depth": "d1"})
    assert not any(name.startswith("b.") for name, _ in both.named_parameters())
    assert (sum(p.numel() for p in with_b.parameters()) - sum(p.numel() for p in both.parameters())
            == sum(p.numel() for p in conv(4).parameters()))
    torch.manual_seed(0)
    node = Cell()
    node.pick = InputChoice(3, k=1, label="inputs")
    single = gmgraph.trace(node).eval()
    plain = assert_derived_matches(single, {"a": "skip", "inputs": "2", "depth": "d1"}, x, atol=0)
    assert not any("pick" in name for name, _ in plain.named_modules())
