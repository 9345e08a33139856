"""Single-path runs skip what no live node reads, and compute what they computed before, to float rounding.

The reference is the computation before pruning: :func:`gmgraph.live_run.run_everything` (every
Choice runs) on a copy whose ``none`` ops are a module that is no ``Zero`` (so weighted sums add
``w * x * 0`` as they did).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph.choice import Choice, Zero
from gmgraph.live_run import run_everything, skipped
from gmgraph.spaces import darts, nb201
from gmgraph.train import SupernetTrainer, TrainConfig

ATOL = 1e-5


class LegacyZero(nn.Module):
    """``Zero`` as it ran before: ``x * 0``, in autograd (not a Zero, so nothing treats it as one)."""

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        return (x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]).mul(0.0)


def legacy(gm):
    """A copy of ``gm`` computing as before: its Zeros replaced by LegacyZero."""
    old = copy.deepcopy(gm)
    for module in old.modules():
        if isinstance(module, Choice):
            for name, op in module.ops.items():
                if isinstance(op, Zero):
                    module.ops[name] = LegacyZero(op.stride)
    return old


def tiny_nb201(seed: int = 0):
    torch.manual_seed(seed)
    return gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))


def batch(seed: int, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def step(gm, arch, x, y):
    """Forward and backward of one path: (logits, grads by name, buffers by name)."""
    gm.zero_grad(set_to_none=True)
    with gmgraph.use(gm, arch):
        out = gm(x)
    F.cross_entropy(out, y).backward()
    return (out.detach(), {n: p.grad for n, p in gm.named_parameters()},
            {n: b.clone() for n, b in gm.named_buffers()})


def assert_close(a, b, what):
    assert (a is None) == (b is None), f"{what}: {'None' if a is None else 'a tensor'} vs {'None' if b is None else 'a tensor'}"
    if a is not None:
        assert torch.allclose(a, b, atol=ATOL, rtol=1e-5), f"{what}: differs by {(a - b).abs().max():.3g}"


def test_a_dead_node_and_its_none_edges_are_skipped():
    gm = tiny_nb201()
    arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    # per cell: 1<-0 feeds only none edges (dead), and the four none edges are folded zeros
    assert sorted(p.rsplit(".", 1)[1] for p in skipped(gm, arch)) == sorted(["0", "1", "2", "4", "5"] * 3)
    assert skipped(gm, nb201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
                                   "|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_1x1~2|")) == []


def test_paths_give_the_outputs_gradients_and_live_statistics_of_running_everything():
    gm = tiny_nb201()
    generator = torch.Generator().manual_seed(3)
    x, y = batch(0)
    seen = 0
    for _ in range(12):
        arch = gmgraph.sample(gm, generator)
        if not skipped(gm, arch):
            continue
        seen += 1
        new, old = copy.deepcopy(gm), copy.deepcopy(gm)
        out, grads, buffers = step(new, arch, x, y)
        with run_everything():
            ref_out, ref_grads, ref_buffers = step(old, arch, x, y)
        assert_close(out, ref_out, "logits")
        for name in grads:  # dead ops: zero gradients as before (not None), so SGD still decays them
            assert_close(grads[name], ref_grads[name], name)
        dead = tuple(f"{path}." for path in skipped(gm, arch))
        for name in buffers:
            if not name.startswith(dead):  # a skipped op's BatchNorm does not see the batch
                assert torch.allclose(buffers[name].float(), ref_buffers[name].float(), atol=ATOL), name
    assert seen >= 3


def test_dead_parameters_get_zero_gradients_not_none():
    gm = tiny_nb201()
    arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    assert skipped(gm, arch)  # the plan is made here, outside a run, and kept for the run
    _, grads, _ = step(gm, arch, *batch(1))
    dead = grads["cells.0.edges.0.ops.nor_conv_3x3.1.weight"]
    assert dead is not None and torch.count_nonzero(dead) == 0


def test_weighted_mode_skips_only_none_and_keeps_alpha_gradients():
    gm = tiny_nb201()
    x, y = batch(0)
    grads = []
    for net in (gm, legacy(gm)):
        alphas = {label: torch.randn(5, generator=torch.Generator().manual_seed(i)).requires_grad_()
                  for i, label in enumerate(gmgraph.space(gm))}
        with gmgraph.graph.use_weights(net, {k: a.softmax(0) for k, a in alphas.items()}):
            assert not any(m.skip for m in net.modules() if isinstance(m, Choice))  # not decided: nothing skips
            F.cross_entropy(net(x), y).backward()
        grads.append(({k: a.grad for k, a in alphas.items()}, {n: p.grad for n, p in net.named_parameters()}))
    for k in grads[0][0]:
        assert_close(grads[0][0][k], grads[1][0][k], f"alpha {k}")
    for n in grads[0][1]:
        assert_close(grads[0][1][n], grads[1][1][n], n)


def test_no_choice_is_left_skipping_after_a_run_that_failed():
    gm = tiny_nb201()
    arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    with gmgraph.use(gm, arch), pytest.raises(RuntimeError):
        gm(torch.randn(2, 5, 8, 8))  # wrong channel count
    assert not any(m.skip for m in gm.modules() if isinstance(m, Choice))


def test_darts_cells_skip_none_edges_and_keep_their_values():
    torch.manual_seed(0)
    gm = gmgraph.trace(darts.supernet(C=2, layers=3, in_channels=1))
    generator = torch.Generator().manual_seed(0)
    arch = {label: "none" if i % 2 else ops[1 + int(torch.randint(len(ops) - 1, (1,), generator=generator))]
            for i, (label, ops) in enumerate(gmgraph.space(gm).items())}
    assert skipped(gm, arch)
    x, y = batch(2, n=4)
    x = x.repeat(1, 1, 2, 2)
    out, grads, _ = step(copy.deepcopy(gm), arch, x, y)
    with run_everything():
        ref_out, ref_grads, _ = step(copy.deepcopy(gm), arch, x, y)
    assert_close(out, ref_out, "logits")
    for name in grads:
        assert_close(grads[name], ref_grads[name], name)


def test_a_tuple_output_carries_the_zero_gradients_in_its_first_float_tensor():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Choice({"fc": nn.Linear(3, 3), "zero": Zero()}, "a")
            self.b = Choice({"zero": Zero(), "fc": nn.Linear(3, 3)}, "b")

        def forward(self, x):
            return torch.argmax(x, 1), x + self.b(self.a(x))

    gm = gmgraph.trace(Net())
    arch = {"a": "fc", "b": "zero"}
    assert skipped(gm, arch) == ["a", "b"]
    x = torch.randn(2, 3, requires_grad=True)
    with gmgraph.use(gm, arch):
        labels, out = gm(x)
    assert torch.equal(out, x) and torch.equal(labels, x.argmax(1))
    out.sum().backward()
    assert torch.equal(gm.a.ops.fc.weight.grad, torch.zeros(3, 3))
    assert torch.equal(x.grad, torch.ones(2, 3))


def test_a_choice_feeding_a_plain_module_is_not_skipped_when_that_would_break_shapes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = Choice({"fc": nn.Linear(3, 3), "zero": Zero()}, "a")
            self.relu = nn.ReLU()
            self.b = Choice({"zero": Zero(), "fc": nn.Linear(3, 3)}, "b")

        def forward(self, x):
            return x + self.b(self.relu(self.a(x)))

    gm = gmgraph.trace(Net())
    # a's output feeds a ReLU (no sum): its placeholder could not stand in, so nothing is skipped
    assert skipped(gm, {"a": "fc", "b": "zero"}) == []
    x = torch.randn(2, 3)
    with gmgraph.use(gm, {"a": "fc", "b": "zero"}):
        assert torch.equal(gm(x), x)


SAMPLERS = ["uniform", "pada", "sandwich", "darts", "gdas"]
SEEDS = {"uniform": 5, "pada": 1}  # seeds whose first paths hold dead convs (checked below)


def dead_conv(arch) -> bool:
    return any(label not in nb201.live_edges(arch) and op.startswith("nor_conv") for label, op in arch.items())


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_trains_as_before(sampler):
    gm = tiny_nb201()
    x, y = batch(0, n=32)
    loaders = [DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(*batch(1, n=16)), batch_size=16)]
    config = TrainConfig(sampler=sampler, weight_decay=0.1, momentum=0.9, epochs=1)  # decay shows a None grad
    new = SupernetTrainer(copy.deepcopy(gm), loaders, config, seed=SEEDS.get(sampler, 0))
    old = SupernetTrainer(legacy(gm), loaders, config, seed=SEEDS.get(sampler, 0))
    val = batch(1, n=16)
    dead = False
    for i in range(3):
        xb, yb = x[16 * (i % 2): 16 * (i % 2 + 1)], y[16 * (i % 2): 16 * (i % 2 + 1)]
        index = torch.arange(16 * (i % 2), 16 * (i % 2 + 1))
        loss, _ = new.train_step(xb, yb, index, val_batch=val)
        with run_everything():
            ref_loss, _ = old.train_step(xb, yb, index, val_batch=val)
        assert_close(loss, ref_loss, f"loss of step {i}")
        dead = dead or (sampler in SEEDS and dead_conv(new.sampler.last_arch))
    assert dead or sampler not in SEEDS, "no path with a dead conv: pick another seed"
    params, ref_params = dict(new.gm.named_parameters()), dict(old.gm.named_parameters())
    for name in params:  # weight decay and momentum acted on dead ops as before
        assert_close(params[name].detach(), ref_params[name].detach(), name)
    alphas, ref_alphas = new.sampler.arch_parameters(), old.sampler.arch_parameters()
    for name in alphas:
        assert_close(alphas[name].detach(), ref_alphas[name].detach(), f"alpha {name}")
    buffers, ref_buffers = dict(new.gm.named_buffers()), dict(old.gm.named_buffers())
    for name in buffers:
        if ".ops." not in name:  # outside the Choices every module saw every batch
            assert torch.allclose(buffers[name].float(), ref_buffers[name].float(), atol=ATOL), name
