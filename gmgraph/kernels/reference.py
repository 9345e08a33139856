"""The weighted mixed op of a Choice in plain torch: the contract the Triton kernels meet.

For one Choice with input ``x`` (NCHW), parametric candidate outputs ``ys``
and weights ``w``::

    out = sum_k w_param[k] * ys[k] + w_skip * x + w_pool * avgpool3x3(x)

where avgpool3x3 is ``nn.AvgPool2d(3, 1, 1, count_include_pad=False)`` and the
``none`` candidate contributes nothing. A term whose weight is ``None`` is
absent: it is neither computed nor given a gradient.

    >>> import torch
    >>> x = torch.ones(1, 1, 2, 2)
    >>> mixed_op(x, [2 * x], torch.tensor([0.5]), torch.tensor(0.25), None).flatten().tolist()
    [1.25, 1.25, 1.25, 1.25]

Every input is read in its own dtype and every term is summed in float32; the
result is cast back to ``x.dtype`` once (so bfloat16/float16 inputs lose
precision only in that final rounding). :func:`mixed_op_loop` is the same sum
written naively (the pooling as a loop over the nine window offsets, every
term materialised), used to check :func:`mixed_op` and as the CPU benchmark's
baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from gmgraph.errors import ChoiceError
from gmgraph.pooling import avg_pool2d_exact


def mixed_op(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> torch.Tensor:
    """``sum_k w_param[k] * ys[k] + w_skip * x + w_pool * avgpool3x3(x)`` with torch ops.

    Args:
        x: the Choice's input, ``(N, C, H, W)``.
        ys: K parametric candidate outputs, each shaped and typed like ``x``.
        w_param: K weights, a 1-D tensor.
        w_skip: weight of ``x`` (a one-element tensor) or None when there is no skip.
        w_pool: weight of the 3x3 average pooling of ``x``, or None when there is no pool.

    Raises:
        ChoiceError: when the shapes, dtypes or devices do not fit together.
    """
    check_inputs(x, ys, w_param, w_skip, w_pool)
    out = None
    for w, y in zip(w_param.float().unbind(), ys):
        out = _add(out, w * y.float())
    if w_skip is not None:
        out = _add(out, w_skip.float().reshape(()) * x.float())
    if w_pool is not None:
        out = _add(out, w_pool.float().reshape(()) * pool3x3(x.float()))
    if out is None:  # no term at all (only ``none`` candidates): the sum is zero
        return torch.zeros_like(x)
    return out.to(x.dtype)


def mixed_op_loop(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> torch.Tensor:
    """:func:`mixed_op` computed naively: pooling by a loop over window offsets, one tensor per term.

    >>> import torch
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> mixed_op_loop(x, [], torch.zeros(0), None, torch.tensor(1.0)).flatten().tolist()
    [1.5, 1.5, 1.5, 1.5]
    """
    check_inputs(x, ys, w_param, w_skip, w_pool)
    terms = [w * y.float() for w, y in zip(w_param.float(), ys)]
    if w_skip is not None:
        terms.append(w_skip.float().reshape(()) * x.float())
    if w_pool is not None:
        terms.append(w_pool.float().reshape(()) * _pool3x3_loop(x.float()))
    total = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for term in terms:
        total = total + term
    return total.to(x.dtype)


def pool3x3(x: torch.Tensor) -> torch.Tensor:
    """3x3 average pooling, stride 1, padding 1, padded positions not counted."""
    return avg_pool2d_exact(x, 3, 1, 1)  # torch's own numbers, bit for bit, faster on the CPU (gmgraph.pooling)


def _pool3x3_loop(x: torch.Tensor) -> torch.Tensor:
    # Sum the nine shifted copies of the zero-padded input; the same shifts of a
    # padded ones tensor count how many taps of each window are inside the image.
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    inside = F.pad(torch.ones(h, w, dtype=x.dtype, device=x.device), (1, 1, 1, 1))
    total = torch.zeros_like(x)
    count = torch.zeros(h, w, dtype=x.dtype, device=x.device)
    for dh in range(3):
        for dw in range(3):
            total = total + padded[..., dh : dh + h, dw : dw + w]
            count = count + inside[dh : dh + h, dw : dw + w]
    return total / count


def _add(out: torch.Tensor | None, term: torch.Tensor) -> torch.Tensor:
    return term if out is None else out + term


def check_inputs(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> None:
    """Raise ChoiceError unless the arguments of ``mixed_op`` fit together."""
    if x.dim() != 4:
        raise ChoiceError(f"mixed_op needs an NCHW input (4 dimensions), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ChoiceError(f"mixed_op needs a floating-point input, got {x.dtype}")
    if w_param.dim() != 1 or len(w_param) != len(ys):
        raise ChoiceError(
            f"mixed_op got {len(ys)} candidate outputs but w_param of shape {tuple(w_param.shape)}; "
            "pass one weight per output as a 1-D tensor"
        )
    for i, y in enumerate(ys):
        if y.shape != x.shape or y.dtype != x.dtype or y.device != x.device:
            raise ChoiceError(
                f"candidate output {i} is {tuple(y.shape)} {y.dtype} on {y.device}, but the fused "
                f"sum needs every output shaped and typed like the input: {tuple(x.shape)} {x.dtype} on {x.device}"
            )
    for name, w in (("w_skip", w_skip), ("w_pool", w_pool)):
        if w is not None and w.numel() != 1:
            raise ChoiceError(f"{name} must be a one-element tensor or None, got shape {tuple(w.shape)}")
