"""gmgraph.pooling.AvgPool2d gives torch's exclude-padding pooling bit for bit: outputs, input gradients, layouts.

The grid covers NB201's pool (3x3, stride 1, padding 1) and the DARTS reduction
pool (3x3, stride 2, padding 1) over batch, channels 1..64, odd and even sizes
down to 1, float32 and float64, and contiguous, channels-last and strided
inputs. The suite's portable run (``make test-portable``) repeats it on
torch's default CPU kernels.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gmgraph.pooling import AvgPool2d, avg_pool2d_exact

SETTINGS = [  # (kernel, stride, padding)
    (3, 1, 1), (3, 2, 1),  # NB201's pool and the DARTS reduction pool
    (2, 2, 0), (2, 1, 0), (3, 1, 0), (5, 1, 2), ((3, 5), (1, 2), (1, 2)), ((3, 5), 1, (1, 2)),
]
SIZES = [(1, 1), (1, 6), (7, 1), (2, 2), (5, 7), (8, 8), (9, 8), (16, 15)]
BATCH_CHANNELS = [(1, 1), (3, 2), (2, 16), (1, 64)]
NB201_SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)]


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x``'s values laid out as ``kind``: contiguous, channels_last, or one of three strided views."""
    if kind == "contiguous":
        return x.contiguous()
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "channel slice":  # every other channel of a wider NCHW tensor
        wide = torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:], dtype=x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2]
    if kind == "column slice of channels_last":
        wide = torch.zeros(*x.shape[:3], x.shape[3] + 3, dtype=x.dtype).contiguous(memory_format=torch.channels_last)
        wide[..., 1:-2] = x
        return wide[..., 1:-2]
    if kind == "transposed":  # H and W swapped in memory
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(kind)


LAYOUTS = ["contiguous", "channels_last", "channel slice", "column slice of channels_last", "transposed"]


def run(pool: nn.Module, x: torch.Tensor, grad_seed: int = 1):
    """Output and input gradient of ``pool`` at ``x`` for a seeded random upstream gradient."""
    leaf = x.detach().clone(memory_format=torch.preserve_format) if x.is_contiguous() else x.detach()
    leaf.requires_grad_()
    y = pool(leaf)
    g = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(grad_seed))
    y.backward(g)
    return y.detach(), leaf.grad


def assert_same(ours, theirs, what: str) -> None:
    (y, dx), (ref_y, ref_dx) = ours, theirs
    assert torch.equal(y, ref_y), f"{what}: outputs differ by {(y - ref_y).abs().max().item():.3g}"
    assert torch.equal(dx, ref_dx), f"{what}: input gradients differ by {(dx - ref_dx).abs().max().item():.3g}"
    assert y.stride() == ref_y.stride(), f"{what}: output strides {y.stride()} != torch's {ref_y.stride()}"
    assert dx.stride() == ref_dx.stride(), f"{what}: gradient strides {dx.stride()} != torch's {ref_dx.stride()}"


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_every_shape_equals_torchs_pooling_bit_for_bit(dtype, kind):
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for (kernel, stride, padding), (n, c), (h, w) in itertools.product(SETTINGS, BATCH_CHANNELS, SIZES):
        kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
        ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
        if h + 2 * ph < kh or w + 2 * pw < kw:
            continue  # no window fits
        x = layout(3 * torch.randn(n, c, h, w, dtype=dtype, generator=generator), kind)
        ours = run(AvgPool2d(kernel, stride, padding, count_include_pad=False), x)
        theirs = run(nn.AvgPool2d(kernel, stride, padding, count_include_pad=False), x)
        assert_same(ours, theirs, f"{kernel}/{stride}/{padding} on {(n, c, h, w)}")
        checked += 1
    assert checked == 216  # every setting, batch/channels pair and size where a window fits


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape", NB201_SHAPES, ids=str)
def test_nb201_shapes_equal_torchs_pooling_bit_for_bit(shape, stride):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = run(AvgPool2d(3, stride, 1, count_include_pad=False), x)
    theirs = run(nn.AvgPool2d(3, stride, 1, count_include_pad=False), x)
    assert_same(ours, theirs, str(shape))


def window_sums_over_counts(x: torch.Tensor) -> torch.Tensor:
    """The 3x3 exclude-padding pooling as a depthwise convolution of ones divided by each window's count: the
    same function, but its backward (a transposed convolution) adds each input's terms in another order."""
    ones = torch.ones(x.shape[1], 1, 3, 3, dtype=x.dtype)
    counts = F.conv2d(torch.ones(1, 1, *x.shape[2:], dtype=x.dtype), torch.ones(1, 1, 3, 3, dtype=x.dtype), padding=1)
    return F.conv2d(x, ones, padding=1, groups=x.shape[1]) / counts


def test_the_check_is_sharp_enough_to_see_the_convolution_route_differ():
    x = torch.randn(NB201_SHAPES[0], generator=torch.Generator().manual_seed(0), requires_grad=True)
    grads = []
    for pool in (nn.AvgPool2d(3, 1, 1, count_include_pad=False), lambda t: avg_pool2d_exact(t, 3, 1, 1),
                 window_sums_over_counts):
        y = pool(x)
        grads.append(torch.autograd.grad(y, x, torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))[0])
    reference, exact, convolution = grads
    assert torch.equal(exact, reference)
    assert not torch.equal(convolution, reference)
    torch.testing.assert_close(convolution, reference, rtol=1e-6, atol=1e-6)  # equal within rounding only


@pytest.mark.parametrize("stride", [1, 2])
def test_second_derivatives_equal_torchs(stride):
    """A graph through the backward (``create_graph``, as Hessian-vector scores use): torch's second derivatives."""
    results = []
    for pool in (AvgPool2d(3, stride, 1, count_include_pad=False), nn.AvgPool2d(3, stride, 1, count_include_pad=False)):
        torch.manual_seed(0)
        conv = nn.Conv2d(2, 3, 3, padding=1)
        x = torch.randn(2, 2, 7, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
        loss = (pool(torch.tanh(conv(x))) ** 2).sum()
        grads = torch.autograd.grad(loss, [x, conv.weight], create_graph=True)
        curvature = sum((g ** 2).sum() for g in grads)
        results.append([*grads, *torch.autograd.grad(curvature, [x, conv.weight, conv.bias])])
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)


def test_double_backward_of_the_pool_alone_equals_torchs():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    v = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    results = []
    for pool in (AvgPool2d(3, 1, 1, count_include_pad=False), nn.AvgPool2d(3, 1, 1, count_include_pad=False)):
        (dx,) = torch.autograd.grad(pool(x), x, v, create_graph=True)
        w = torch.randn(dx.shape, dtype=dx.dtype, generator=torch.Generator().manual_seed(2))
        results.append([dx, *torch.autograd.grad(dx, [v, x], w)])  # d/dv is a pooling; d/dx is zero
    for ours, theirs in zip(*results):
        assert torch.equal(ours, theirs)
    assert not results[0][2].any()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_runs_torchs_own_pooling(dtype):
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    ours = run(AvgPool2d(3, 1, 1, count_include_pad=False), x)
    theirs = run(nn.AvgPool2d(3, 1, 1, count_include_pad=False), x)
    assert_same(ours, theirs, str(dtype))


def test_inference_mode_and_no_grad_give_the_same_bits():
    x = torch.randn(4, 16, 9, 9, generator=torch.Generator().manual_seed(0))
    reference = nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x)
    with torch.inference_mode():
        assert torch.equal(AvgPool2d(3, 2, 1, count_include_pad=False)(x), reference)
    with torch.no_grad():
        assert torch.equal(avg_pool2d_exact(x, 3, 2, 1), reference)


def test_three_dimensional_input_runs_torchs_own_pooling():
    x = torch.randn(3, 6, 5, generator=torch.Generator().manual_seed(0))  # (C, H, W), no batch
    ours, theirs = AvgPool2d(3, 1, 1, count_include_pad=False), nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    assert torch.equal(ours(x), theirs(x))
