import copy
import doctest
import importlib
import math
import pickle

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.choice import Choice, Neg, Zero
from gmgraph.passes import derive, fuse, restrict
from gmgraph.passes.fuse import FusedChoice
from gmgraph.sampler_table import make_sampler
from gmgraph.spaces import nb201
from gmgraph.train import train_supernet
from tests.conftest import randomize_batchnorm

fuse_module = importlib.import_module("gmgraph.passes.fuse")


@pytest.fixture(autouse=True)
def torch_kernels(monkeypatch):
    # The CPU path of the fused kernel; the Triton path is tested in tests/kernels.
    monkeypatch.delenv("GMGRAPH_KERNELS", raising=False)


def pool(**settings):
    return nn.AvgPool2d(**{"kernel_size": 3, "stride": 1, "padding": 1, "count_include_pad": False, **settings})


class MyIdentity(nn.Identity):
    def forward(self, x):
        return 2 * x


class Edges(nn.Module):
    """Every kind of candidate, and a reduction edge whose outputs change shape.

    Convs have no bias: before a BatchNorm a bias gets zero gradient in exact
    arithmetic, so its computed gradient is rounding noise, not worth comparing.
    """

    def __init__(self):
        super().__init__()
        self.a = Choice({
            "none": Zero(), "skip": nn.Identity(), "conv": nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2)),
            "pool": pool(), "pool_pad": pool(count_include_pad=True), "pool_div9": pool(divisor_override=9),
            "neg": Neg(), "twice": MyIdentity(), "skip2": nn.Identity(),
        }, "a")
        self.b = Choice({"none": Zero(stride=2), "conv": nn.Sequential(nn.Conv2d(2, 2, 1, stride=2, bias=False), nn.BatchNorm2d(2))}, "b")

    def forward(self, x):
        return self.b(self.a(x))


def test_choices_become_fused_choices_and_the_graph_keeps_its_nodes():
    gm = gmgraph.trace(Edges())
    code = gm.code
    fused = fuse(gm)
    assert [(n.op, n.target) for n in fused.graph.nodes] == [(n.op, n.target) for n in gm.graph.nodes]
    assert fused is not gm and fused.code == code
    assert [type(fused.get_submodule(n)) for n in "ab"] == [FusedChoice, FusedChoice]
    assert [type(gm.get_submodule(n)) for n in "ab"] == [Choice, Choice]  # the input is not changed
    assert fused.a.ops["conv"] is not gm.a.ops["conv"]
    assert gmgraph.space(fused) == gmgraph.space(gm)
    assert {label: len(ms) for label, ms in gmgraph.choices(fused).items()} == {"a": 1, "b": 1}
    fused.graph.lint()
    assert fused.meta["fused"] is True


def test_roles_fuse_only_exact_types_and_settings():
    fused = fuse(gmgraph.trace(Edges()))
    assert fused.a.roles() == ("zero", "skip", "param", "pool", "param", "param", "param", "param", "skip")
    assert fused.b.roles() == ("param", "param")  # Zero with a stride changes the shape


def weighted_run(gm, weights, x, *, train):
    gm.train(train)
    x = x.clone().requires_grad_()
    weights = {label: w.clone().requires_grad_() for label, w in weights.items()}
    with gmgraph.use_weights(gm, {label: w.softmax(0) for label, w in weights.items()}):
        out = gm(x)
    params = [p for p in gm.parameters()]
    grads = torch.autograd.grad(out.square().sum(), [x, *params, *weights.values()])
    buffers = [b.clone() for b in gm.buffers()]
    return [out, *grads, *buffers]


@pytest.mark.parametrize("train", [False, True])
def test_every_kind_of_candidate_gives_the_unfused_values_and_gradients(train):
    torch.manual_seed(0)
    gm = gmgraph.trace(Edges())
    g = torch.Generator().manual_seed(1)
    weights = {"a": torch.randn(9, generator=g), "b": torch.randn(2, generator=g)}
    x = torch.randn(2, 2, 7, 5, generator=g)
    fused = fuse(gm)
    for got, want in zip(weighted_run(fused, weights, x, train=train), weighted_run(gm, weights, x, train=train)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fused_path_calls_the_kernel_with_the_fusable_terms(monkeypatch):
    calls = []
    kernel = fuse_module.mixed_op

    def spy(x, ys, w_param, w_skip, w_pool):
        calls.append((len(ys), tuple(w_param.shape), w_skip is not None, w_pool is not None))
        return kernel(x, ys, w_param, w_skip, w_pool)

    monkeypatch.setattr(fuse_module, "mixed_op", spy)
    fused = fuse(gmgraph.trace(Edges())).eval()
    weights = {"a": torch.full((9,), 1 / 9), "b": torch.tensor([0.5, 0.5])}
    with gmgraph.use_weights(fused, weights):
        fused(torch.randn(1, 2, 6, 6))
    # a: conv, pool_pad, pool_div9, neg, twice run as modules; two skips share one weight. b: unfusable.
    assert calls == [(5, (5,), True, True)]


@pytest.fixture(scope="module")
def nb201_pair():
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    randomize_batchnorm(gm, torch.Generator().manual_seed(1))
    return gm, fuse(gm)


@pytest.mark.parametrize("train", [False, True])
def test_nb201_with_darts_weights_matches_the_unfused_supernet(nb201_pair, train):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    values = []
    for graph in nb201_pair:
        graph.train(train)
        sampler = make_sampler("darts", graph, seed=3)
        inp = x.clone().requires_grad_()
        with sampler.context():
            out = graph(inp)
        params = list(graph.parameters()) + list(sampler.alphas.values())
        values.append([out, *torch.autograd.grad(out.logsumexp(1).sum(), [inp, *params])])
    assert len(values[0]) == len(values[1]) > 30
    for got, want in zip(*values):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def grads_or_zeros(out, tensors):
    """Gradients of ``out``'s sum; zeros for tensors it does not depend on (an op that did not run)."""
    grads = torch.autograd.grad(out.sum(), tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


@pytest.mark.parametrize("train", [False, True])
def test_nb201_hard_gumbel_weights_match_the_unfused_supernet(nb201_pair, train):
    # A one-hot weight vector: the unfused Choice runs one op, the fused one all of them
    # (no host read of the weights), with the same values and gradients.
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    values = []
    for graph in nb201_pair:
        graph.train(train)
        sampler = make_sampler("gdas", graph, seed=4)
        with sampler.context():
            out = graph(x)
        values.append([out, *grads_or_zeros(out, [*sampler.alphas.values(), *graph.parameters()])])
    for got, want in zip(*values):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_exactly_zero_weights_get_no_gradient_but_their_ops_run():
    torch.manual_seed(0)
    ops = {"skip": nn.Identity(), "a": nn.Conv2d(2, 2, 1), "b": nn.Conv2d(2, 2, 1), "pool": pool()}
    gm = gmgraph.trace(nn.Sequential(Choice(ops, "e")))
    fused = fuse(gm)
    calls = []
    fused.get_submodule("0").ops["b"].register_forward_hook(lambda *_: calls.append("b"))
    x = torch.randn(1, 2, 5, 5)
    values = []
    for graph in (gm, fused):
        weights = torch.tensor([0.0, 0.7, 0.0, 0.3], requires_grad=True)
        with gmgraph.use_weights(graph, {"e": weights}):
            out = graph(x)
        values.append([out, *grads_or_zeros(out, [weights, *graph.parameters()])])
    assert calls == ["b"]  # the unfused Choice skipped b; the fused one ran it
    for got, want in zip(*values):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert values[1][1].tolist()[::2] == [0.0, 0.0]


def test_weighted_mode_reads_nothing_back_to_the_host(nb201_pair, monkeypatch):
    # On a GPU each read is a wait for the device; tests/gpu checks the same with CUDA's sync
    # debug mode. Here: any tensor-to-Python conversion during forward and backward fails.
    _, fused = nb201_pair
    fused.train()
    sampler = make_sampler("gdas", fused, seed=4)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with sampler.context():
        def refuse(*_):
            raise AssertionError("a tensor was read back to the host")

        with monkeypatch.context() as patch:
            for name in ("tolist", "item", "__bool__", "__float__", "__int__", "numpy"):
                patch.setattr(torch.Tensor, name, refuse)
            out = fused(x)
            grads = torch.autograd.grad(out.sum(), list(sampler.alphas.values()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_single_path_runs_exactly_as_before(nb201_pair):
    gm = nb201_pair[0].eval()
    fused = fuse(gm)  # running statistics as gm's now
    arch = nb201.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with gmgraph.use(gm, arch):
        want = gm(x)
    with gmgraph.use(fused, arch):
        got = fused(x)
    assert torch.equal(got, want)


def test_restrict_derive_copy_and_pickle_work_on_a_fused_graph(nb201_pair):
    _, fused = nb201_pair
    child = restrict(fused, {"1<-0": ["skip_connect", "nor_conv_3x3"]})
    edge = child.get_submodule("cells.0.edges.0")
    assert type(edge) is FusedChoice and edge.roles() == ("skip", "param")
    for clone in (copy.deepcopy(fused), pickle.loads(pickle.dumps(fused))):
        assert type(clone.get_submodule("cells.0.edges.0")) is FusedChoice
    arch = {label: "nor_conv_3x3" for label in nb201.LABELS}
    plain = derive(fused, arch)
    assert not any(isinstance(m, Choice) for m in plain.modules())


def test_darts_trains_a_fused_graph():
    torch.manual_seed(0)
    gm = fuse(gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1)))
    result = train_supernet(gm, data.load("digits", batch_size=32, seed=0), sampler="darts",
                            epochs=1, steps_per_epoch=3, quiet=True)
    assert math.isfinite(result.history[-1]["loss"])
    assert all(isinstance(m, FusedChoice) for group in result.trainer.sampler.groups.values() for m in group)


def test_non_image_inputs_fall_back_to_the_unfused_sum():
    gm = gmgraph.trace(nn.Sequential(Choice({"skip": nn.Identity(), "fc": nn.Linear(3, 3), "none": Zero()}, "e")))
    fused = fuse(gm)
    x = torch.randn(4, 3)
    w = {"e": torch.tensor([0.2, 0.3, 0.5])}
    with gmgraph.use_weights(gm, w):
        want = gm(x)
    with gmgraph.use_weights(fused, w):
        got = fused(x)
    torch.testing.assert_close(got, want)


def test_only_zero_weights_left_runs_like_the_unfused_choice():
    gm = gmgraph.trace(nn.Sequential(Choice({"none": Zero(), "skip": nn.Identity()}, "e")))
    fused = fuse(gm)
    x = torch.randn(1, 1, 3, 3)
    weights = torch.tensor([1.0, 0.0], requires_grad=True)
    with gmgraph.use_weights(fused, {"e": weights}):
        out = fused(x)
    assert torch.equal(out, torch.zeros_like(x)) and out.requires_grad


def test_doctests():
    assert doctest.testmod(fuse_module).failed == 0
