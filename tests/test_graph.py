import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Neg
from gmgraph.errors import ArchError, SpaceError, TraceError
from gmgraph.graph import choices, use_weights
from gmgraph.spaces import nb201


class TwoChoices(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.first = Choice({"id": nn.Identity(), "neg": Neg()}, "act")
        self.second = Choice({"id": nn.Identity(), "neg": Neg()}, "act")
        self.head = Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, "head")

    def forward(self, x):
        return self.head(self.second(self.first(self.fc(x))))


def test_trace_keeps_choices_as_call_module_leaves():
    gm = gmgraph.trace(TwoChoices())
    targets = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert targets == ["fc", "first", "second", "head"]
    assert isinstance(gm.get_submodule("first"), Choice)


def test_space_choices_and_size():
    gm = gmgraph.trace(TwoChoices())
    assert gmgraph.space(gm) == {"act": ("id", "neg"), "head": ("relu", "tanh", "id")}
    assert gmgraph.space_size(gm) == 6
    assert [len(g) for g in choices(gm).values()] == [2, 1]


def test_nb201_space_has_six_shared_labels():
    gm = gmgraph.trace(nb201.supernet(C=4, N=2))
    assert tuple(gmgraph.space(gm)) == nb201.LABELS
    assert all(len(group) == 6 for group in choices(gm).values())  # 3 stages x N=2 cells
    assert gmgraph.space_size(gm) == 5**6


def test_use_runs_the_named_ops_and_restores_mode():
    torch.manual_seed(0)
    gm = gmgraph.trace(TwoChoices())
    x = torch.randn(4, 3)
    with gmgraph.use(gm, {"act": "neg", "head": "id"}):
        y = gm(x)
    torch.testing.assert_close(y, gm.fc(x))  # neg twice is identity
    assert all(m.active is None for g in choices(gm).values() for m in g)


def test_use_rejects_invalid_arch():
    gm = gmgraph.trace(TwoChoices())
    with pytest.raises(ArchError, match="missing label"):
        with gmgraph.use(gm, {"act": "neg"}):
            pass


def test_use_weights_mixes_and_can_be_combined_with_use():
    torch.manual_seed(0)
    gm = gmgraph.trace(TwoChoices())
    x = torch.randn(4, 3)
    z = gm.fc(x)
    # Both "act" Choices: 0.25*v + 0.75*(-v) = -0.5*v, twice: 0.25*z; head 0.25*relu + 0.75*tanh.
    act, head = torch.tensor([0.25, 0.75]), torch.tensor([0.25, 0.75, 0.0])
    with use_weights(gm, {"act": act, "head": head}):
        y = gm(x)
    torch.testing.assert_close(y, 0.25 * torch.relu(0.25 * z) + 0.75 * torch.tanh(0.25 * z))
    # use fixes "act" (neg twice: z) and "head"; use_weights then overrides "head" alone.
    with gmgraph.use(gm, {"act": "neg", "head": "id"}), use_weights(gm, {"head": head}):
        y = gm(x)
    torch.testing.assert_close(y, 0.25 * torch.relu(z) + 0.75 * torch.tanh(z))
    with gmgraph.use(gm, {"act": "id", "head": "relu"}), use_weights(gm, {"act": act}):
        y = gm(x)
    torch.testing.assert_close(y, torch.relu(0.25 * z))
    with gmgraph.use(gm, {"act": "id", "head": "id"}):  # leaving use_weights restores the use() mode
        with use_weights(gm, {"head": head}):
            pass
        y = gm(x)
    torch.testing.assert_close(y, z)
    with pytest.raises(SpaceError, match="no decision named"):
        with use_weights(gm, {"nope": torch.ones(2)}):
            pass


def test_sample_is_seeded_and_uniform():
    gm = gmgraph.trace(TwoChoices())
    a = [gmgraph.sample(gm, torch.Generator().manual_seed(s)) for s in range(5)]
    b = [gmgraph.sample(gm, torch.Generator().manual_seed(s)) for s in range(5)]
    assert a == b
    g = torch.Generator().manual_seed(0)
    counts = {}
    for _ in range(3000):
        op = gmgraph.sample(gm, g)["head"]
        counts[op] = counts.get(op, 0) + 1
    assert set(counts) == {"relu", "tanh", "id"}
    assert all(900 < c < 1100 for c in counts.values())


@pytest.mark.parametrize("draw", ["sample", "sample_from"])
def test_a_seed_in_place_of_a_generator_is_refused_with_the_fix(draw):
    gm = gmgraph.trace(TwoChoices())
    space = gmgraph.graph.space(gm) if draw == "sample_from" else gm
    with pytest.raises(SpaceError, match=r"takes a torch.Generator \(or None\), got int: use "
                                         r"torch.Generator\(\).manual_seed\(seed\)"):
        getattr(gmgraph.graph, draw)(space, 3)


def test_disagreeing_choices_under_one_label_are_an_error():
    net = nn.Sequential(Choice({"a": nn.Identity()}, "x"), Choice({"b": nn.Identity()}, "x"))
    with pytest.raises(SpaceError, match="disagree"):
        gmgraph.space(gmgraph.trace(net))


class Untraceable(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return x
        return -x


def test_untraceable_module_is_named_and_leaf_advice_given():
    net = nn.Sequential(nn.Linear(2, 2), Untraceable())
    with pytest.raises(TraceError, match=r"module '1' \(Untraceable\).*leaf_modules=\(Untraceable,\)"):
        gmgraph.trace(net)
    gm = gmgraph.trace(net, leaf_modules=(Untraceable,))
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["0", "1"]


class NoisyInTraining(nn.Module):
    """Reads self.training twice: as an fx-traced argument and in Python control flow."""

    def forward(self, x):
        x = nn.functional.dropout(x, 0.5, self.training)
        return x + 1 if self.training else x


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.noise = NoisyInTraining()

    def forward(self, x):
        return self.noise(self.fc(x))


def test_modules_reading_self_training_become_leaves_that_follow_the_mode():
    torch.manual_seed(0)
    net = nn.Sequential(Block(), Choice({"id": nn.Identity(), "neg": Neg()}, "act"))
    gm = gmgraph.trace(net)  # traced in train mode
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["0.fc", "0.noise", "1"]
    assert "training" not in vars(nn.Module)  # the read watch is gone once tracing ends
    x = torch.randn(64, 4)
    with gmgraph.use(gm, {"act": "id"}):
        gm.eval()
        torch.testing.assert_close(gm(x), net[0].fc(x))  # no dropout, no +1 in eval
        gm.train()
        y = gm(x)
    assert (y == 1).any() and not torch.allclose(y, net[0].fc(x) + 1)  # dropped and rescaled, +1
    traced_in_eval = gmgraph.trace(net.eval())  # the mode at trace time does not matter
    assert traced_in_eval.code == gm.code


class ReadsOwnFlag(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = Choice({"id": nn.Identity(), "neg": Neg()}, "act")

    def forward(self, x):
        return self.act(x) * (2 if self.training else 1)


def test_a_mode_reader_that_holds_choices_or_is_the_root_is_refused_unless_frozen():
    net = nn.Sequential(nn.Linear(2, 2), ReadsOwnFlag())
    with pytest.raises(TraceError, match=r"module '1' \(ReadsOwnFlag\) reads self.training.*'1.act'.*freeze_mode"):
        gmgraph.trace(net)
    with pytest.raises(TraceError, match=r"model's own forward \(ReadsOwnFlag\).*freeze_mode=True"):
        gmgraph.trace(ReadsOwnFlag())
    assert "training" not in vars(nn.Module)
    frozen = gmgraph.trace(net.eval(), freeze_mode=True)  # the old behaviour: eval mode fixed in the graph
    x = torch.randn(3, 2)
    with gmgraph.use(frozen.train(), {"act": "id"}):
        torch.testing.assert_close(frozen(x), net[0](x))


class StringAnnotated(nn.Module):
    """A forward annotated as under ``from __future__ import annotations``, with one name that does not resolve."""

    def forward(self, x: "torch.Tensor", scale: "NoSuchType" = 2.0) -> "torch.Tensor":  # noqa: F821
        return x * scale


def test_string_annotations_become_types_so_older_torch_can_pickle_the_graph():
    # torch 2.11 (what the lent GPU machines run) fails to pickle a graph whose node types are strings.
    supernet = gmgraph.trace(nb201.supernet(C=4, N=1))  # nb201.py uses from __future__ import annotations
    assert [n.type for n in supernet.graph.nodes if n.op in ("placeholder", "output")] == [torch.Tensor] * 2
    gm = gmgraph.trace(StringAnnotated())
    assert {n.name: n.type for n in gm.graph.nodes if n.op in ("placeholder", "output")} == {
        "x": torch.Tensor, "scale": None, "output": torch.Tensor}
    assert not any(isinstance(n.type, str) for g in (supernet, gm) for n in g.graph.nodes)
    torch.testing.assert_close(gm(torch.ones(2)), torch.full((2,), 2.0))


def test_active_choices_follow_the_chosen_op_into_nested_choices():
    from gmgraph.graph import active_choices

    kernel = [Choice({"k3": nn.Conv2d(2, 2, 3, padding=1), "k1": nn.Conv2d(2, 2, 1)}, "kernel") for _ in range(2)]
    blocks = [nn.Sequential(k, nn.ReLU()) for k in kernel]
    depth = Choice({"d2": nn.Sequential(*blocks), "d1": nn.Sequential(blocks[0])}, "depth")
    net = nn.Sequential(nn.Conv2d(1, 2, 1), depth)
    deep = active_choices(net, {"depth": "d2", "kernel": "k1"})
    assert [path for path, _ in deep] == ["1", "1.ops.d2.0.0", "1.ops.d2.1.0"]
    assert [c for _, c in deep] == [depth, *kernel]
    shallow = active_choices(net, {"depth": "d1", "kernel": "k1"})
    assert [path for path, _ in shallow] == ["1", "1.ops.d1.0.0"]  # the second block does not run


def test_choices_walks_modules_in_the_order_modules_gives_each_shared_module_once():
    from gmgraph.graph import _modules
    from gmgraph.spaces import ofa

    shared = Choice({"a": nn.Identity(), "b": nn.ReLU()}, "x")
    net = nn.Sequential(shared, nn.Sequential(nn.ReLU(), shared, Choice({"c": nn.Sequential(shared)}, "y")))
    torch.manual_seed(0)
    for root in (net, gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25))):
        assert [id(m) for m in _modules(root)] == [id(m) for m in root.modules()]
    assert {label: len(group) for label, group in gmgraph.choices(net).items()} == {"x": 1, "y": 1}
