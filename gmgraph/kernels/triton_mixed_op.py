"""Triton kernels for the weighted mixed op of a Choice (see ``reference.mixed_op``).

One forward pass reads each input once and writes the output once::

    out = sum_k w[k] * ys[k] + w[K] * x + w[K + 1] * avgpool3x3(x)

instead of materialising every weighted candidate and reading it back. One
backward pass reads ``g``, ``x`` and the ``ys`` once and writes ``dys``, ``dx``
and per-block partial sums of the weight gradients (summed by torch after,
so the result does not depend on the order blocks run in).

How the K candidate outputs reach the kernel: as a tuple of pointers, one
compiled specialisation per K. Stacking them into one ``(K, N, C, H, W)``
tensor would cost an extra read and write of every output; accumulating one
output per launch would read and write ``out`` K times. The tuple costs
neither: each ``ys[k]`` is read exactly once.

Layout: the kernels see contiguous NCHW tensors as flat arrays; a block of
``BLOCK`` consecutive elements knows its row and column from its offsets, and
the pooling's neighbours are plain offsets ``±1`` and ``±W`` (they stay in
cache). Indices are int32 unless a tensor has 2**31 elements or more.

Use :func:`fused_mixed_op` (an autograd function); it runs on CUDA tensors, or
on CPU tensors under ``TRITON_INTERPRET=1`` (the interpreter, for tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _taps(i, n):
    """How many of the rows (or columns) i-1, i, i+1 lie inside 0..n-1."""
    return 1 + (i > 0).to(tl.int32) + (i < n - 1).to(tl.int32)


@triton.jit
def _offsets(BLOCK: tl.constexpr, WIDE: tl.constexpr):
    if WIDE:
        start = tl.program_id(0).to(tl.int64) * BLOCK
    else:
        start = tl.program_id(0) * BLOCK
    return start + tl.arange(0, BLOCK)


@triton.jit
def _pool3x3(ptr, offs, inside, H, W):
    """avgpool3x3 at each offset: the mean of the window taps inside the image."""
    row = (offs // W) % H
    col = offs % W
    total = tl.zeros(offs.shape, dtype=tl.float32)
    for dh in tl.static_range(-1, 2):
        for dw in tl.static_range(-1, 2):
            ok = inside & (row + dh >= 0) & (row + dh < H) & (col + dw >= 0) & (col + dw < W)
            total += tl.load(ptr + offs + dh * W + dw, mask=ok, other=0.0).to(tl.float32)
    return total / (_taps(row, H) * _taps(col, W)).to(tl.float32)


@triton.jit
def _pool3x3_adjoint(ptr, offs, inside, H, W):
    """The backward of avgpool3x3 at each input offset.

    Input position i is a tap of the windows centred on its in-image neighbours
    o, and each window divided by its own tap count: ``sum_o g[o] / count(o)``.
    """
    row = (offs // W) % H
    col = offs % W
    total = tl.zeros(offs.shape, dtype=tl.float32)
    for dh in tl.static_range(-1, 2):
        for dw in tl.static_range(-1, 2):
            r = row + dh
            c = col + dw
            ok = inside & (r >= 0) & (r < H) & (c >= 0) & (c < W)
            g = tl.load(ptr + offs + dh * W + dw, mask=ok, other=0.0).to(tl.float32)
            total += g / (_taps(r, H) * _taps(c, W)).to(tl.float32)
    return total


@triton.jit
def _forward_kernel(
    x_ptr, ys, w_ptr, out_ptr, total, H, W,
    K: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_POOL: tl.constexpr,
    BLOCK: tl.constexpr, WIDE: tl.constexpr,
):
    offs = _offsets(BLOCK, WIDE)
    inside = offs < total
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        acc += tl.load(w_ptr + k) * tl.load(ys[k] + offs, mask=inside, other=0.0).to(tl.float32)
    if HAS_SKIP:
        acc += tl.load(w_ptr + K) * tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    if HAS_POOL:
        acc += tl.load(w_ptr + K + 1) * _pool3x3(x_ptr, offs, inside, H, W)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _backward_kernel(
    g_ptr, x_ptr, ys, w_ptr, dx_ptr, dys, partial_ptr, total, H, W,
    K: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_POOL: tl.constexpr,
    NEED_DX: tl.constexpr, NEED_DYS: tl.constexpr, NEED_DW: tl.constexpr,
    BLOCK: tl.constexpr, WIDE: tl.constexpr,
):
    offs = _offsets(BLOCK, WIDE)
    inside = offs < total
    # One row of K + 2 partial weight gradients per block.
    partial = partial_ptr + tl.program_id(0) * (K + 2)
    g = tl.load(g_ptr + offs, mask=inside, other=0.0).to(tl.float32)
    for k in tl.static_range(K):
        if NEED_DYS:
            tl.store(dys[k] + offs, (tl.load(w_ptr + k) * g).to(dys[k].dtype.element_ty), mask=inside)
        if NEED_DW:
            y = tl.load(ys[k] + offs, mask=inside, other=0.0).to(tl.float32)
            tl.store(partial + k, tl.sum(g * y, axis=0))
    if HAS_POOL and (NEED_DX or NEED_DW):
        # sum(g * pool(x)) == sum(pool_adjoint(g) * x): dw_pool reuses the value dx needs
        # and reads x without its neighbours.
        g_pool = _pool3x3_adjoint(g_ptr, offs, inside, H, W)
    if NEED_DX:
        dx = tl.zeros([BLOCK], dtype=tl.float32)
        if HAS_SKIP:
            dx += tl.load(w_ptr + K) * g
        if HAS_POOL:
            dx += tl.load(w_ptr + K + 1) * g_pool
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=inside)
    if NEED_DW and (HAS_SKIP or HAS_POOL):
        x = tl.load(x_ptr + offs, mask=inside, other=0.0).to(tl.float32)
        if HAS_SKIP:
            tl.store(partial + K, tl.sum(g * x, axis=0))
        if HAS_POOL:
            tl.store(partial + K + 1, tl.sum(g_pool * x, axis=0))


def interpreted() -> bool:
    """Whether the kernels were defined under Triton's interpreter (``TRITON_INTERPRET=1``)."""
    return not isinstance(_forward_kernel, triton.runtime.JITFunction)


def _launch_shape(x: torch.Tensor) -> tuple[tuple[int], bool]:
    return (triton.cdiv(x.numel(), BLOCK),), x.numel() + BLOCK >= 2**31


class _MixedOp(torch.autograd.Function):
    """Autograd around the two kernels; ``w`` holds ``[w_param..., w_skip, w_pool]`` in float32."""

    @staticmethod
    def forward(ctx, x, w, has_skip, has_pool, *ys):
        _, _, H, W = x.shape
        out = torch.empty_like(x)
        grid, wide = _launch_shape(x)
        _forward_kernel[grid](
            x, tuple(ys), w, out, x.numel(), H, W,
            K=len(ys), HAS_SKIP=has_skip, HAS_POOL=has_pool, BLOCK=BLOCK, WIDE=wide, num_warps=NUM_WARPS,
        )
        ctx.has_skip, ctx.has_pool = has_skip, has_pool
        ctx.save_for_backward(x, w, *ys)
        return out

    @staticmethod
    @once_differentiable  # first-order only: a second derivative through the kernels is a clear error
    def backward(ctx, g):
        x, w, *ys = ctx.saved_tensors
        need_x, need_w, _, _, *need_ys = ctx.needs_input_grad
        # A gradient may arrive expanded (stride 0) or transposed; the kernel reads it flat.
        g = g.contiguous()
        need_dx = need_x and (ctx.has_skip or ctx.has_pool)
        need_dys = any(need_ys)
        dx = torch.empty_like(x) if need_dx else None
        dys = tuple(torch.empty_like(y) for y in ys) if need_dys else tuple(ys)
        grid, wide = _launch_shape(x)
        partial = torch.zeros(grid[0], len(ys) + 2, dtype=torch.float32, device=x.device)
        _backward_kernel[grid](
            g, x, tuple(ys), w, dx if need_dx else x, dys, partial, x.numel(), *x.shape[2:],
            K=len(ys), HAS_SKIP=ctx.has_skip, HAS_POOL=ctx.has_pool,
            NEED_DX=need_dx, NEED_DYS=need_dys, NEED_DW=need_w,
            BLOCK=BLOCK, WIDE=wide, num_warps=NUM_WARPS,
        )
        dw = partial.sum(0) if need_w else None
        dys_out = [d if need else None for d, need in zip(dys, need_ys)] if need_dys else [None] * len(ys)
        return dx, dw, None, None, *dys_out


def fused_mixed_op(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> torch.Tensor:
    """The Triton version of ``gmgraph.kernels.reference.mixed_op`` (same arguments and result).

    Non-contiguous inputs are copied to contiguous NCHW first (one extra pass
    over them, e.g. for channels_last activations); the result is contiguous.
    """
    x = x.contiguous()
    ys = [y.contiguous() for y in ys]
    zero = w_param.new_zeros((1,), dtype=torch.float32)
    w = torch.cat([
        w_param.float(),
        zero if w_skip is None else w_skip.float().reshape(1),
        zero if w_pool is None else w_pool.float().reshape(1),
    ]).to(x.device)
    if x.numel() == 0:
        return torch.zeros_like(x)
    return _MixedOp.apply(x, w, w_skip is not None, w_pool is not None, *ys)
