"""gmgraph.pooling: AvgPool2d in the spaces and passes, and its fallbacks to torch's own pooling.

Bit equality with torch's pooling over many shapes and layouts: tests/test_pooling_exact.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.passes import derive
from gmgraph.passes.fuse import fuse
from gmgraph.pooling import MIN_CHANNELS, AvgPool2d, _counts
from gmgraph.spaces import darts, nb201


@pytest.mark.parametrize("settings", [dict(ceil_mode=True), dict(count_include_pad=True), dict(divisor_override=2)])
def test_other_settings_run_torchs_own_pooling(settings):
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    fast = AvgPool2d(3, 2, 1, **{"count_include_pad": False, **settings})
    slow = nn.AvgPool2d(3, 2, 1, **{"count_include_pad": False, **settings})
    assert torch.equal(fast(x), slow(x))


def test_it_is_an_avgpool_without_state():
    pool = AvgPool2d(3, 1, 1, count_include_pad=False)
    assert isinstance(pool, nn.AvgPool2d) and pool.state_dict() == {}
    # every NB201 and DARTS avg_pool_3x3 is one, fast_pool given or not; state dict keys are unchanged
    for fast_pool in (False, True):
        net = nb201.supernet(C=2, N=1, fast_pool=fast_pool)
        pools = [m for m in net.modules() if isinstance(m, nn.AvgPool2d) and not m.count_include_pad]
        assert len(pools) == 3 * 6 and all(type(m) is AvgPool2d for m in pools)  # 3 cells x 6 edges
        assert not any(".avg_pool_3x3" in key for key in net.state_dict())
        cells = darts.supernet(C=2, layers=3, fast_pool=fast_pool)
        pools = [m for m in cells.modules() if isinstance(m, nn.AvgPool2d)]
        assert len(pools) == 3 * 14 and all(type(m) is AvgPool2d for m in pools)  # 3 cells x 14 edges


@pytest.mark.parametrize("memory_format, route", [(torch.contiguous_format, "_ExactPoolBackward"),
                                                  (torch.channels_last, "AvgPool2DBackward0")])
def test_nchw_inputs_take_the_channels_last_kernel_and_channels_last_ones_torchs(memory_format, route):
    x = torch.randn(2, 8, 6, 6).to(memory_format=memory_format).requires_grad_()
    assert type(AvgPool2d(3, 1, 1, count_include_pad=False)(x).grad_fn).__name__ == route


def test_few_channels_run_torchs_own_pooling():
    # below MIN_CHANNELS the channels-last kernel hardly vectorises: torch's NCHW loop is faster there
    x = torch.randn(2, MIN_CHANNELS - 1, 6, 6, requires_grad=True)
    assert type(AvgPool2d(3, 1, 1, count_include_pad=False)(x).grad_fn).__name__ == "AvgPool2DBackward0"


def test_autocast_runs_torchs_own_pooling():
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = AvgPool2d(3, 1, 1, count_include_pad=False)(x)
        assert torch.equal(y, nn.AvgPool2d(3, 1, 1, count_include_pad=False)(x))


def test_counts_made_in_inference_mode_serve_a_later_backward():
    x = torch.randn(1, 8, 13, 13)
    with torch.inference_mode():  # the stride-1 backward's cached counts, made here first
        _counts((13, 13), (3, 3), (1, 1), (1, 1), x.device, x.dtype)
    exact = x.clone().requires_grad_()
    AvgPool2d(3, 1, 1, count_include_pad=False)(exact).sum().backward()
    reference = x.clone().requires_grad_()
    nn.AvgPool2d(3, 1, 1, count_include_pad=False)(reference).sum().backward()
    assert torch.equal(exact.grad, reference.grad)


def test_fuse_treats_it_as_the_pool_candidate():
    gm = gmgraph.trace(nb201.supernet(C=2, N=1))
    fused = fuse(gm)
    roles = fused.get_submodule("cells.0.edges.0").roles()
    assert roles[nb201.OPS.index("avg_pool_3x3")] == "pool"


def test_derived_network_keeps_it_and_matches_the_supernet():
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1)).eval()
    arch = dict.fromkeys(nb201.LABELS, "avg_pool_3x3") | {"1<-0": "nor_conv_3x3"}
    net = derive(gm, arch).eval()
    assert sum(isinstance(m, AvgPool2d) for m in net.modules()) == 15
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))  # 3x3 maps in the last stage
    with torch.no_grad(), gmgraph.use(gm, arch):
        assert torch.equal(net(x), gm(x))
    # ONNX: exports trace torch's own pooling (an AveragePool node); tests/test_onnx_export.py
    # checks derived networks with avg_pool_3x3 edges against onnxruntime.



def with_torch_pools(net: nn.Module) -> nn.Module:
    """``net`` with each of its AvgPool2d swapped for torch's ``nn.AvgPool2d`` (the spaces' pool before)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is AvgPool2d:
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                   count_include_pad=child.count_include_pad))
    return net


@pytest.mark.parametrize("space, sampler, darts_order", [("nb201", "uniform", 1), ("nb201", "darts", 1),
                                                         ("nb201", "darts", 2), ("darts", "darts", 1)])
def test_training_with_it_moves_every_weight_as_torchs_pooling_does(space, sampler, darts_order):
    """A few epochs of supernet training: the same weights, alphas and losses bit for bit."""
    from torch.utils.data import DataLoader, TensorDataset

    from gmgraph.config import TrainConfig
    from gmgraph.train import SupernetTrainer

    g = torch.Generator().manual_seed(0)
    sets = [TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.randint(10, (16,), generator=g))
            for _ in range(2)]
    states, losses = [], []
    for swap in (False, True):
        torch.manual_seed(0)
        net = (nb201.supernet(C=4, N=1) if space == "nb201"  # darts: stride-2 pools in the reduction cells
               else darts.supernet(C=4, layers=3, ops=("avg_pool_3x3", "skip_connect", "sep_conv_3x3")))
        gm = gmgraph.trace(with_torch_pools(net) if swap else net)
        assert any(type(m) is (nn.AvgPool2d if swap else AvgPool2d) for m in gm.modules())
        config = TrainConfig(sampler=sampler, epochs=2, device="cpu", darts_order=darts_order)
        trainer = SupernetTrainer(gm, [DataLoader(s, batch_size=8) for s in sets], config, seed=0)
        losses.append([trainer.train_epoch(quiet=True)["loss"] for _ in range(2)])
        states.append(trainer.state_dict())
    assert losses[0] == losses[1]
    assert_same_state(*states)  # weights, alphas, optimizer moments


def assert_same_state(a, b, where: str = "") -> None:
    """Nested state dicts equal to the bit (tensors by ``torch.equal``); an epoch's ``seconds`` are left out."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a.keys() - {"seconds"}:
            assert_same_state(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
