"""Average pooling that leaves the padding out of each window's count, computed fast on the CPU.

``nn.AvgPool2d(..., count_include_pad=False)`` is the NAS-Bench-201 and DARTS
``avg_pool_3x3``. torch's CPU kernel for it walks every window element by element
(and its backward again), which made it about 40 % of a single-path NB201 step.
The same numbers come from a depthwise convolution with a kernel of ones (the
window sums, through the vectorised convolution kernels) divided by how many
taps of each window fall inside the image; that count depends only on the
shape, so it is computed once per shape and device and cached::

    >>> import torch
    >>> from torch import nn
    >>> x = torch.randn(2, 3, 5, 7)
    >>> fast = AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    >>> slow = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    >>> torch.allclose(fast(x), slow(x), atol=1e-6)
    True
    >>> fast.state_dict()   # nothing to save: old checkpoints load unchanged
    OrderedDict()

:class:`AvgPool2d` is an ``nn.AvgPool2d`` (same arguments, same attributes) whose
forward takes that route where it applies: a 4-D floating-point input on the
CPU, padding left out of the count, no ``ceil_mode`` or ``divisor_override``,
no autocast and no tracing (ONNX export, ``torch.export``, ``torch.compile``).
Everywhere else (GPUs, whose pooling kernel is already fast; exports, which
write a plain ``AveragePool``) it runs torch's own pooling.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose exclude-padding CPU forward is a depthwise window sum over a cached count.

    >>> pool = AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
    >>> pool(torch.ones(1, 1, 4, 4)).flatten().tolist()   # every window averages ones: 1
    [1.0, 1.0, 1.0, 1.0]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().forward(x)
        return avg_pool2d_exclude_pad(x, self.kernel_size, self.stride, self.padding)

    def _fast(self, x: torch.Tensor) -> bool:
        return (
            not self.count_include_pad and not self.ceil_mode and self.divisor_override is None
            and x.dim() == 4 and x.is_floating_point() and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and not _tracing()
        )


def _tracing() -> bool:
    """ONNX export, torch.export or torch.compile: they get torch's own pooling (and no cached tensor is faked)."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def avg_pool2d_exclude_pad(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel_size, stride, padding, count_include_pad=False)`` as window sums over counts.

    Equal to torch's pooling within float32 rounding, forward and backward (the
    window sum is added in another order). ``x`` is ``(N, C, H, W)``.

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> avg_pool2d_exclude_pad(x, 3, 1, 1)[0, 0, 0].tolist()   # corner window: 4 taps inside
    [2.5, 3.0, 4.0, 4.5]
    """
    kernel, stride, padding = _pair(kernel_size), _pair(stride if stride else kernel_size), _pair(padding)
    n, c, h, w = x.shape
    ones = _ones_kernel(c, kernel, x.device, x.dtype)
    sums = F.conv2d(x, ones, stride=stride, padding=padding, groups=c)
    return sums / _counts((h, w), kernel, stride, padding, x.device, x.dtype)


@functools.lru_cache(maxsize=64)
def _ones_kernel(channels: int, kernel: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False):  # made under inference mode, it could not be saved for a later backward
        return torch.ones(channels, 1, *kernel, device=device, dtype=dtype)


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
