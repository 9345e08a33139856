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

Layout: the kernels index every tensor as one flat array, element ``i`` at
``data_ptr + i``, so all of them must be dense in one shared order. The
wrapper (:func:`prepare`, plain torch, tested on strided inputs without a GPU)
picks that order from ``x``: NHWC when ``x`` is stored channels_last, NCHW
otherwise, and copies any tensor not already dense in it (a permuted, sliced,
expanded or differently laid out input or upstream gradient). A block of
``BLOCK`` consecutive elements knows its row and column from its offsets, and
the pooling's neighbours are plain offsets ``±1``/``±W`` (NCHW) or
``±C``/``±W*C`` (NHWC); they stay in cache. Indices are int32 unless a tensor
has 2**31 elements or more.

Use :func:`fused_mixed_op` (an autograd function); it runs on CUDA tensors, or
on CPU tensors under ``TRITON_INTERPRET=1`` (the interpreter, for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

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
def _pixel(offs, C, H, W, CHANNELS_LAST: tl.constexpr):
    """Row and column of each flat offset, and how many elements apart neighbouring columns are.

    NCHW order: columns vary fastest. NHWC (channels_last): channels vary
    fastest, then columns. Neighbouring rows are ``W * col_step`` apart.
    """
    if CHANNELS_LAST:
        col = (offs // C) % W
        row = (offs // (C * W)) % H
        col_step = C
    else:
        col = offs % W
        row = (offs // W) % H
        col_step = 1
    return row, col, col_step


@triton.jit
def _pool3x3(ptr, offs, inside, C, H, W, CHANNELS_LAST: tl.constexpr):
    """avgpool3x3 at each offset: the mean of the window taps inside the image."""
    row, col, col_step = _pixel(offs, C, H, W, CHANNELS_LAST)
    total = tl.zeros(offs.shape, dtype=tl.float32)
    for dh in tl.static_range(-1, 2):
        for dw in tl.static_range(-1, 2):
            ok = inside & (row + dh >= 0) & (row + dh < H) & (col + dw >= 0) & (col + dw < W)
            tap = offs + dh * W * col_step + dw * col_step
            total += tl.load(ptr + tap, mask=ok, other=0.0).to(tl.float32)
    return total / (_taps(row, H) * _taps(col, W)).to(tl.float32)


@triton.jit
def _pool3x3_adjoint(ptr, offs, inside, C, H, W, CHANNELS_LAST: tl.constexpr):
    """The backward of avgpool3x3 at each input offset.

    Input position i is a tap of the windows centred on its in-image neighbours
    o, and each window divided by its own tap count: ``sum_o g[o] / count(o)``.
    """
    row, col, col_step = _pixel(offs, C, H, W, CHANNELS_LAST)
    total = tl.zeros(offs.shape, dtype=tl.float32)
    for dh in tl.static_range(-1, 2):
        for dw in tl.static_range(-1, 2):
            r = row + dh
            c = col + dw
            ok = inside & (r >= 0) & (r < H) & (c >= 0) & (c < W)
            tap = offs + dh * W * col_step + dw * col_step
            g = tl.load(ptr + tap, mask=ok, other=0.0).to(tl.float32)
            total += g / (_taps(r, H) * _taps(c, W)).to(tl.float32)
    return total


@triton.jit
def _forward_kernel(
    x_ptr, ys, w_ptr, out_ptr, total, C, H, W,
    K: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_POOL: tl.constexpr, CHANNELS_LAST: tl.constexpr,
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
        acc += tl.load(w_ptr + K + 1) * _pool3x3(x_ptr, offs, inside, C, H, W, CHANNELS_LAST)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _backward_kernel(
    g_ptr, x_ptr, ys, w_ptr, dx_ptr, dys, partial_ptr, total, C, H, W,
    K: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_POOL: tl.constexpr, CHANNELS_LAST: tl.constexpr,
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
        g_pool = _pool3x3_adjoint(g_ptr, offs, inside, C, H, W, CHANNELS_LAST)
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


# ---- the launch wrapper: plain torch, so its stride handling is tested without a GPU ----


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """The order the kernels walk ``x``'s elements in: channels_last when ``x`` is stored so, else NCHW.

    >>> memory_format(torch.ones(2, 3, 4, 5).to(memory_format=torch.channels_last))
    torch.channels_last
    >>> memory_format(torch.ones(2, 3, 4, 5)[:, :, ::2])   # strided: the kernels get an NCHW copy
    torch.contiguous_format
    """
    # A tensor dense in both orders (C == 1, or H == W == 1) has the same flat array in
    # both: NCHW is chosen, and the NCHW index arithmetic is the cheaper one.
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def dense(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``t`` when its elements lie at ``data_ptr + 0, 1, ...`` in ``fmt``'s order, else such a copy.

    >>> t = torch.arange(6.0).reshape(1, 1, 2, 3).transpose(2, 3)   # a view with swapped strides
    >>> flat(dense(t, torch.contiguous_format)).tolist()
    [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    """
    # is_contiguous (which .contiguous consults) ignores the strides of size-1 dims; the
    # flat array is the same whatever they are, so such a tensor needs no copy.
    return t.contiguous(memory_format=fmt)


def flat(t: torch.Tensor) -> torch.Tensor:
    """The 1-D array a kernel indexes for ``t``: the ``t.numel()`` elements from ``t.data_ptr()`` on.

    Only meaningful for a tensor :func:`dense` returned; for any other it shows
    what a kernel would wrongly read.
    """
    return t.as_strided((t.numel(),), (1,))


class Launch(NamedTuple):
    """What the kernels read: ``x`` and ``ys`` dense in one order, the weights packed.

    ``w`` is ``[w_param..., w_skip, w_pool]`` in float32 on ``x``'s device (0 for
    an absent term, which the kernels never read).
    """

    x: torch.Tensor
    ys: tuple[torch.Tensor, ...]
    w: torch.Tensor
    has_skip: bool
    has_pool: bool
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return _format(self.channels_last)


def prepare(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> Launch:
    """The kernels' inputs for ``mixed_op(x, ys, ...)``: differentiable, copies only where needed.

    >>> x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    >>> y = torch.randn(2, 3, 4, 5)                     # NCHW: copied to x's order
    >>> launch = prepare(x, [y], torch.ones(1), None, torch.ones(()))
    >>> launch.channels_last, launch.x is x, launch.ys[0].is_contiguous(memory_format=torch.channels_last)
    (True, True, True)
    >>> launch.w.tolist()                                 # [w_param..., w_skip, w_pool]
    [1.0, 0.0, 1.0]
    """
    fmt = memory_format(x)
    zero = w_param.new_zeros((1,), dtype=torch.float32)
    w = torch.cat([
        w_param.float(),
        zero if w_skip is None else w_skip.float().reshape(1),
        zero if w_pool is None else w_pool.float().reshape(1),
    ]).to(x.device)
    return Launch(dense(x, fmt), tuple(dense(y, fmt) for y in ys), w,
                  w_skip is not None, w_pool is not None, fmt == torch.channels_last)


def _launch_shape(x: torch.Tensor) -> tuple[tuple[int], bool]:
    return (triton.cdiv(x.numel(), BLOCK),), x.numel() + BLOCK >= 2**31


def _format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _empty(like: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    # Not empty_like: its preserve_format copies strides, which for a size-1 dim may be
    # anything; an explicit format states the order the kernels write in.
    return torch.empty(like.shape, dtype=like.dtype, device=like.device, memory_format=fmt)


class _MixedOp(torch.autograd.Function):
    """Autograd around the two kernels; the tensors come from :func:`prepare` (dense in one order)."""

    @staticmethod
    def forward(ctx, x, w, has_skip, has_pool, channels_last, *ys):
        out = _empty(x, _format(channels_last))
        grid, wide = _launch_shape(x)
        _forward_kernel[grid](
            x, tuple(ys), w, out, x.numel(), *x.shape[1:],
            K=len(ys), HAS_SKIP=has_skip, HAS_POOL=has_pool, CHANNELS_LAST=channels_last,
            BLOCK=BLOCK, WIDE=wide, num_warps=NUM_WARPS,
        )
        ctx.has_skip, ctx.has_pool, ctx.channels_last = has_skip, has_pool, channels_last
        ctx.save_for_backward(x, w, *ys)
        return out

    @staticmethod
    @once_differentiable  # first-order only: a second derivative through the kernels is a clear error
    def backward(ctx, g):
        x, w, *ys = ctx.saved_tensors
        need_x, need_w, _, _, _, *need_ys = ctx.needs_input_grad
        fmt = _format(ctx.channels_last)
        # The upstream gradient may arrive in any layout (expanded, transposed, NCHW for a
        # channels_last output); the kernel reads it in the order of x.
        g = dense(g, fmt)
        need_dx = need_x and (ctx.has_skip or ctx.has_pool)
        need_dys = any(need_ys)
        # Gradients come back in x's order: autograd needs only the shape to match.
        dx = _empty(x, fmt) if need_dx else None
        dys = tuple(_empty(y, fmt) for y in ys) if need_dys else tuple(ys)
        grid, wide = _launch_shape(x)
        partial = torch.zeros(grid[0], len(ys) + 2, dtype=torch.float32, device=x.device)
        _backward_kernel[grid](
            g, x, tuple(ys), w, dx if need_dx else x, dys, partial, x.numel(), *x.shape[1:],
            K=len(ys), HAS_SKIP=ctx.has_skip, HAS_POOL=ctx.has_pool, CHANNELS_LAST=ctx.channels_last,
            NEED_DX=need_dx, NEED_DYS=need_dys, NEED_DW=need_w,
            BLOCK=BLOCK, WIDE=wide, num_warps=NUM_WARPS,
        )
        dw = partial.sum(0) if need_w else None
        dys_out = [d if need else None for d, need in zip(dys, need_ys)] if need_dys else [None] * len(ys)
        return dx, dw, None, None, None, *dys_out


def fused_mixed_op(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> torch.Tensor:
    """The Triton version of ``gmgraph.kernels.reference.mixed_op`` (same arguments and result).

    Inputs may have any strides. The kernels read NHWC when ``x`` is stored
    channels_last and NCHW otherwise; an input or upstream gradient stored
    another way is copied first (one extra pass over it). The result, and the
    gradient of ``x`` and of each ``ys[k]``, are stored in that order.
    """
    if x.numel() == 0:
        return torch.zeros_like(x)
    launch = prepare(x, ys, w_param, w_skip, w_pool)
    return _MixedOp.apply(launch.x, launch.w, launch.has_skip, launch.has_pool, launch.channels_last, *launch.ys)
