"""gmgraph.pooling.AvgPool2d: torch's exclude-padding average pooling, forward and backward, to float32 rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.passes import derive
from gmgraph.passes.fuse import fuse
from gmgraph.pooling import AvgPool2d, avg_pool2d_exclude_pad
from gmgraph.spaces import darts, nb201

CASES = [  # (kernel, stride, padding, input shape)
    (3, 1, 1, (4, 16, 16, 16)),
    (3, 1, 1, (2, 3, 5, 7)),     # odd sizes
    (3, 2, 1, (2, 4, 9, 8)),     # strided (the DARTS reduction edges)
    (3, 2, 1, (2, 4, 8, 8)),
    (2, 2, 0, (2, 4, 8, 6)),     # no padding: every count is the full window
    ((3, 5), (1, 2), (1, 2), (1, 2, 6, 11)),  # rectangular windows
]


def pair(fast_input: torch.Tensor, pool_args):
    """(fast output, its input grad, reference output, its input grad) for one random upstream gradient."""
    kernel, stride, padding = pool_args
    fast = AvgPool2d(kernel, stride, padding, count_include_pad=False)
    slow = nn.AvgPool2d(kernel, stride, padding, count_include_pad=False)
    results = []
    for module in (fast, slow):
        x = fast_input.detach().clone().requires_grad_()
        y = module(x)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        y.backward(g)
        results += [y.detach(), x.grad]
    return results


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_backward_equal_torchs_exclude_padding_pool(case, channels_last):
    *args, shape = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y, dx, ref_y, ref_dx = pair(x, args)
    assert y.shape == ref_y.shape
    torch.testing.assert_close(y, ref_y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dx, ref_dx, rtol=1e-6, atol=1e-6)


def test_double_precision_is_exact_to_double_rounding():
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y, dx, ref_y, ref_dx = pair(x, (3, 1, 1))
    torch.testing.assert_close(y, ref_y, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(dx, ref_dx, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("settings", [dict(ceil_mode=True), dict(count_include_pad=True), dict(divisor_override=2)])
def test_other_settings_run_torchs_own_pooling(settings):
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0))
    fast = AvgPool2d(3, 2, 1, **{"count_include_pad": False, **settings})
    slow = nn.AvgPool2d(3, 2, 1, **{"count_include_pad": False, **settings})
    assert torch.equal(fast(x), slow(x))


def test_it_is_an_avgpool_without_state():
    pool = AvgPool2d(3, 1, 1, count_include_pad=False)
    assert isinstance(pool, nn.AvgPool2d) and pool.state_dict() == {}
    # the NB201 and DARTS supernets hold it when asked (fast_pool=True), and their state dicts keep their keys
    assert not any(".avg_pool_3x3" in key for key in nb201.supernet(C=2, N=1, fast_pool=True).state_dict())
    assert any(isinstance(m, AvgPool2d) for m in darts.supernet(C=2, layers=3, fast_pool=True).modules())
    assert not any(isinstance(m, AvgPool2d) for m in nb201.supernet(C=2, N=1).modules())  # off by default


def test_counts_made_in_inference_mode_serve_a_later_backward():
    x = torch.randn(1, 2, 13, 13)
    with torch.inference_mode():
        avg_pool2d_exclude_pad(x, 3, 1, 1)  # fills the caches for this shape
    leaf = x.clone().requires_grad_()
    avg_pool2d_exclude_pad(leaf, 3, 1, 1).sum().backward()
    assert leaf.grad is not None


def test_fuse_treats_it_as_the_pool_candidate():
    gm = gmgraph.trace(nb201.supernet(C=2, N=1, fast_pool=True))
    fused = fuse(gm)
    roles = fused.get_submodule("cells.0.edges.0").roles()
    assert roles[nb201.OPS.index("avg_pool_3x3")] == "pool"


def test_derived_network_keeps_it_and_matches_the_supernet():
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, fast_pool=True)).eval()
    arch = dict.fromkeys(nb201.LABELS, "avg_pool_3x3") | {"1<-0": "nor_conv_3x3"}
    net = derive(gm, arch).eval()
    assert sum(isinstance(m, AvgPool2d) for m in net.modules()) == 15
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))  # 3x3 maps in the last stage
    with torch.no_grad(), gmgraph.use(gm, arch):
        torch.testing.assert_close(net(x), gm(x), rtol=1e-5, atol=1e-6)
    # ONNX: exports trace torch's own pooling (an AveragePool node); tests/test_onnx_export.py
    # checks derived networks with avg_pool_3x3 edges against onnxruntime.

