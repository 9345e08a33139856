"""Average pooling that leaves the padding out of each window's count: torch's numbers, fast on the CPU.

``nn.AvgPool2d(..., count_include_pad=False)`` is the NAS-Bench-201 and DARTS
``avg_pool_3x3``. On a contiguous (NCHW) CPU tensor torch pools with a scalar
loop per window, forward and backward, which made it about 40 % of a
single-path NB201 step. Its channels-last kernels run the same loops
vectorised across channels: each window summed from zero in the same tap
order and divided by the same count; each input's gradient summed from zero
over the windows that cover it, in the same order. :func:`avg_pool2d_exact`
moves the tensor to channels-last, pools there and moves the result back; with
stride 1 its backward is a forward window sum of ``grad / count`` (the same
additions in the same order, without the backward kernel's zero fill). The
same bits as torch's NCHW pooling, forward and backward
(``tests/test_pooling_exact.py``), about twice as fast at NB201's shapes::

    >>> import torch
    >>> from torch import nn
    >>> x = torch.randn(2, 3, 5, 7)
    >>> fast = AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    >>> slow = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    >>> torch.equal(fast(x), slow(x))
    True
    >>> fast.state_dict()   # nothing to save: old checkpoints load unchanged
    OrderedDict()

:class:`AvgPool2d` is an ``nn.AvgPool2d`` (same arguments, same attributes) whose
forward takes that route where it applies: a 4-D float32 or float64 input on
the CPU that torch would pool in NCHW (a channels-last input already gets the
fast kernel from torch), at least :data:`MIN_CHANNELS` channels (with fewer the
kernel hardly vectorises), padding left out of the count, no ``ceil_mode`` or
``divisor_override``, no autocast and no tracing (ONNX export,
``torch.export``, ``torch.compile``). Everywhere else (GPUs, exports, which
write a plain ``AveragePool``) it runs torch's own pooling. The NB201 and
DARTS spaces use it for every ``avg_pool_3x3``.

The fused mixed op's CPU reference (``gmgraph.kernels.reference``) pools with
:func:`avg_pool2d_exact` too. (An older route, a depthwise convolution of ones
over the counts, matched torch only within rounding: its backward added in
another order. ``tests/test_pooling_exact.py`` keeps it to show the check sees that.)
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

EXACT_DTYPES = (torch.float32, torch.float64)
MIN_CHANNELS = 8  # the channels-last kernel vectorises across channels: below this, torch's own loop is faster


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose exclude-padding CPU pooling of NCHW tensors takes the channels-last kernel.

    >>> pool = AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    >>> pool(torch.ones(1, 1, 4, 4)).flatten().tolist()   # every window averages ones: 1
    [1.0, 1.0, 1.0, 1.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.count_include_pad or self.ceil_mode or self.divisor_override is not None:
            return super().forward(x)
        return avg_pool2d_exact(x, self.kernel_size, self.stride, self.padding)


def _channels_last_route(x: torch.Tensor) -> bool:
    """Whether :func:`avg_pool2d_exact` pools ``x`` channels-last itself (else it calls torch's pooling as is)."""
    return (
        x.dim() == 4 and x.dtype in EXACT_DTYPES and x.device.type == "cpu" and x.numel() > 0
        and x.shape[1] >= MIN_CHANNELS
        and not torch.is_autocast_enabled("cpu") and not _tracing() and not _torch_sees_channels_last(x)
    )


def _tracing() -> bool:
    """ONNX export, torch.export or torch.compile: they get torch's own pooling (and no cached tensor is faked)."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def _torch_sees_channels_last(x: torch.Tensor) -> bool:
    """Whether torch would pool ``x`` (4-D) channels-last: c10's ``is_channels_last_strides_2d``, step by step.

    >>> _torch_sees_channels_last(torch.ones(2, 3, 4, 5).to(memory_format=torch.channels_last))
    True
    >>> _torch_sees_channels_last(torch.ones(2, 3, 4, 5)[:, 1:])   # a channel slice of an NCHW tensor
    False
    """
    sizes, strides = x.shape, x.stride()
    if strides[1] == 0:
        return False
    smallest = 0
    for d in (1, 3, 2, 0):
        if sizes[d] == 0 or strides[d] < smallest or (d == 0 and smallest == strides[1]):
            return False
        smallest = strides[d] * max(sizes[d], 1)
    return True


def avg_pool2d_exact(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)``, bit for bit, forward and backward.

    For a float32 or float64 CPU ``(N, C, H, W)`` tensor (``C >= MIN_CHANNELS``)
    that torch would pool in NCHW, it pools a channels-last copy and returns a contiguous result (and
    gradient), as torch does for such an input; any other input goes to
    ``F.avg_pool2d`` as is. The backward is torch's own when a graph of it is
    asked for (``create_graph=True``), so second derivatives are torch's too.

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> avg_pool2d_exact(x, 3, 1, 1)[0, 0, 0].tolist()   # corner window: 4 taps inside
    [2.5, 3.0, 4.0, 4.5]
    """
    kernel, stride, padding = _pair(kernel_size), _pair(stride if stride else kernel_size), _pair(padding)
    if not _channels_last_route(x):
        return F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)
    return _ExactPool.apply(x, kernel, stride, padding)


class _ExactPool(torch.autograd.Function):
    """torch's exclude-padding pooling run on a channels-last copy (forward, and backward unless double)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        ctx.save_for_backward(x)  # as torch's own pooling does; only a second-order backward reads it
        ctx.settings = (kernel, stride, padding)
        pooled = F.avg_pool2d(x.contiguous(memory_format=torch.channels_last), kernel, stride, padding,
                              ceil_mode=False, count_include_pad=False)
        return _nchw(pooled)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        kernel, stride, padding = ctx.settings
        if torch.is_grad_enabled():  # create_graph: torch's differentiable backward, so its double backward too
            grad_in = torch.ops.aten.avg_pool2d_backward(grad, x, kernel, stride, padding, False, False, None)
        elif stride == (1, 1) and all(2 * (k - 1 - p) <= k for k, p in zip(kernel, padding)):
            grad_in = _backward_as_window_sums(grad, x.shape[-2:], kernel, padding)
        else:
            # The input only gives the gradient's shape and layout: an unfilled channels-last stand-in.
            like = torch.empty(x.shape, dtype=x.dtype, memory_format=torch.channels_last)
            grad_in = torch.ops.aten.avg_pool2d_backward(grad.contiguous(memory_format=torch.channels_last), like,
                                                         kernel, stride, padding, False, False, None)
        return _nchw(grad_in), None, None, None


def _backward_as_window_sums(grad: torch.Tensor, size, kernel: tuple, padding: tuple) -> torch.Tensor:
    """A stride-1 pooling's input gradient as a forward pooling of ``grad / count`` (channels-last, no zero fill).

    torch's backward adds ``grad / count`` of each output into the inputs its
    window covers, outputs in raster order; for stride 1 that is, per input,
    the window of outputs around it summed from zero in ascending order: a
    forward window sum (padding ``k - 1 - p``, divided by 1) gives the same bits.
    """
    delta = torch.empty(grad.shape, dtype=grad.dtype, memory_format=torch.channels_last)
    torch.div(grad, _counts(tuple(size), kernel, (1, 1), padding, grad.device, grad.dtype), out=delta)
    flipped = tuple(k - 1 - p for k, p in zip(kernel, padding))
    return F.avg_pool2d(delta, kernel, 1, flipped, count_include_pad=True, divisor_override=1)


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the strides of a contiguous tensor, as torch allocates its NCHW results (size-1 dims included)."""
    n, c, h, w = t.shape
    if t.stride() == (c * h * w, h * w, w, 1):
        return t
    return t.clone(memory_format=torch.contiguous_format)


@functools.lru_cache(maxsize=64)
def _counts(size: tuple, kernel: tuple, stride: tuple, padding: tuple, device: torch.device,
            dtype: torch.dtype) -> torch.Tensor:
    """``(1, 1, H', W')``: how many taps of each output's window lie inside an ``H x W`` image."""
    with torch.inference_mode(False), torch.no_grad():
        inside = torch.ones(1, 1, *size, device=device, dtype=dtype)
        return F.conv2d(inside, torch.ones(1, 1, *kernel, device=device, dtype=dtype), stride=stride,
                        padding=padding)


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
