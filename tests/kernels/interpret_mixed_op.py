"""Compare the Triton mixed-op kernels, run by Triton's interpreter on CPU, with the torch reference.

Not a test module: ``test_mixed_op.py`` runs it in a subprocess with
``TRITON_INTERPRET=1 GMGRAPH_KERNELS=triton`` (the interpreter must be chosen
before triton defines the kernels, so it cannot share the test process) and
reads the one JSON object it prints. A case's error is the largest difference
over the output and every gradient, each divided by the largest magnitude of
the reference tensor (so one tolerance fits sums of any size);
``nb201_fused`` is the largest absolute difference between the fused and the
unfused supernet.

Inputs and upstream gradients come in several memory layouts (see
:func:`stored`): Triton's interpreter keeps each tensor's storage, offset and
strides (it copies whole storages to the host), so a kernel that indexed a
strided tensor as if it were dense reads wrong elements here as it would on a
GPU. ``tests/kernels/test_launch.py`` checks the same wrapper step in plain
torch, and ``tests/gpu`` runs these layouts on CUDA.

Run by hand: ``TRITON_INTERPRET=1 GMGRAPH_KERNELS=triton python tests/kernels/interpret_mixed_op.py``.
"""

from __future__ import annotations

import json

# Small on purpose: the interpreter runs each kernel as numpy, about 0.1 s per launch.
CASES = {
    "f32_7x5_k0": dict(shape=(1, 1, 7, 5), k=0),
    "f32_7x5_k1": dict(shape=(1, 2, 7, 5), k=1),
    "f32_7x5_k3": dict(shape=(1, 1, 7, 5), k=3),
    "f32_batch2_k3_pool_only": dict(shape=(2, 3, 4, 4), k=3, skip=False),
    "f32_k1_skip_only": dict(shape=(2, 3, 4, 4), k=1, pool=False),
    "f32_k3_params_only": dict(shape=(1, 2, 5, 7), k=3, skip=False, pool=False),
    "f32_1x1_image": dict(shape=(1, 2, 1, 1), k=1),
    "f32_1x6_image": dict(shape=(1, 1, 1, 6), k=0),
    "f32_several_blocks": dict(shape=(2, 2, 17, 19), k=1),
    "f32_zero_weights": dict(shape=(1, 1, 7, 5), k=1, zero_weights=True),
    "f32_grad_of_x_only": dict(shape=(1, 2, 7, 5), k=1, grads=("x",)),
    "f32_grad_of_weights_only": dict(shape=(1, 2, 7, 5), k=1, grads=("w",)),
    "f32_grad_of_ys_only": dict(shape=(1, 2, 7, 5), k=3, grads=("ys",)),
    "f32_wide_indices": dict(shape=(2, 2, 17, 19), k=2, wide=True),
    "f32_expanded_grad": dict(shape=(1, 2, 7, 5), k=1, grad_layout="expanded"),
    "bf16_7x5_k3": dict(shape=(1, 2, 7, 5), k=3, dtype="bfloat16"),
    "bf16_batch1_k0": dict(shape=(1, 3, 4, 6), k=0, dtype="bfloat16"),
    "f16_7x5_k1": dict(shape=(2, 1, 7, 5), k=1, dtype="float16"),
    # Memory layouts of the inputs (``layout``: x and every y; ``ys_layout``: the ys
    # when they differ) and of the upstream gradient (``grad_layout``).
    "f32_channels_last": dict(shape=(2, 3, 5, 4), k=1, layout="channels_last"),
    "f32_channels_last_grad_too": dict(shape=(2, 3, 5, 4), k=2, layout="channels_last",
                                       grad_layout="channels_last"),
    # 2080 elements: 3 blocks of 1024 (a full one past the first, and a partial last one); 5 channels do not
    # divide 1024, so both block boundaries fall inside a pixel, and the pooling reads across them.
    "f32_channels_last_several_blocks": dict(shape=(2, 5, 13, 16), k=1, layout="channels_last",
                                             grad_layout="channels_last"),
    "f32_channels_last_pool_only": dict(shape=(1, 5, 7, 3), k=0, skip=False, layout="channels_last",
                                        grad_layout="permuted"),
    "f32_channels_last_grad_of_x_only": dict(shape=(2, 3, 5, 4), k=1, layout="channels_last",
                                             grads=("x",)),
    "f32_channels_last_wide_indices": dict(shape=(2, 3, 5, 4), k=2, layout="channels_last", wide=True),
    "f32_channels_last_one_channel": dict(shape=(2, 1, 5, 4), k=1, layout="channels_last"),
    "f32_channels_last_1x1_image": dict(shape=(2, 3, 1, 1), k=1, layout="channels_last"),
    "f32_channels_last_x_nchw_ys": dict(shape=(2, 3, 5, 4), k=2, layout="channels_last", ys_layout="nchw",
                                        grad_layout="sliced"),
    "f32_nchw_x_channels_last_ys": dict(shape=(2, 3, 5, 4), k=2, ys_layout="channels_last",
                                        grad_layout="channels_last"),
    "f32_permuted": dict(shape=(2, 3, 5, 4), k=2, layout="permuted", grad_layout="permuted"),
    "f32_sliced": dict(shape=(2, 3, 5, 4), k=2, layout="sliced", grad_layout="sliced"),
    "f32_as_strided": dict(shape=(2, 3, 5, 4), k=2, layout="as_strided", grad_layout="as_strided"),
    "bf16_channels_last": dict(shape=(2, 3, 5, 4), k=2, dtype="bfloat16", layout="channels_last"),
    "f16_channels_last_sliced_grad": dict(shape=(2, 3, 5, 4), k=1, dtype="float16", layout="channels_last",
                                          grad_layout="sliced"),
}

# How a tensor may be stored; ``stored(t, layout)`` gives t's values stored that way.
LAYOUTS = ("nchw", "channels_last", "permuted", "sliced", "as_strided", "expanded")


def stored(t, layout: str):
    """A tensor equal to ``t`` (NCHW values) whose memory is laid out as ``layout`` says.

    ``permuted``: H and W swapped in memory (``.permute(0, 1, 3, 2)`` of a
    dense tensor); ``sliced``: every other row of a tensor twice as tall;
    ``as_strided``: an offset into a storage with two spare elements after
    each row; ``expanded``: ``t[:1, :, :, :1]`` broadcast with stride 0 along
    N and W, as the gradient of a sum arrives (so its values are those, not
    all of ``t``'s). Memory that belongs to no element holds nan, so
    a kernel that reads it shows up in any comparison.

    >>> import torch
    >>> t = torch.arange(24.0).reshape(2, 3, 2, 2)
    >>> [torch.equal(stored(t, layout), t) for layout in LAYOUTS[:-1]]
    [True, True, True, True, True]
    >>> stored(t, "sliced").stride(), stored(t, "as_strided").stride()
    ((24, 8, 4, 1), (24, 8, 4, 1))
    """
    import torch

    n, c, h, w = t.shape
    if layout == "nchw":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "permuted":
        return t.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    if layout == "expanded":
        return t[:1, :, :, :1].expand(n, c, h, w)
    if layout == "sliced":
        tall = torch.full((n, c, 2 * h, w), float("nan"), dtype=t.dtype, device=t.device)
        tall[:, :, ::2] = t
        return tall[:, :, ::2]
    if layout == "as_strided":
        row = w + 2
        storage = torch.full((3 + n * c * h * row,), float("nan"), dtype=t.dtype, device=t.device)
        view = storage.as_strided(t.shape, (c * h * row, h * row, row, 1), storage_offset=3)
        view.copy_(t)
        return view
    raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")


def run_case(shape, k, *, skip=True, pool=True, dtype="float32", grads=("x", "w", "ys"),
             zero_weights=False, layout="nchw", ys_layout=None, grad_layout="nchw", wide=False, seed=0) -> float:
    import importlib

    import torch

    from gmgraph import kernels
    from gmgraph.kernels import reference

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)

    def leaf(need, how):
        return stored(torch.randn(shape, generator=g).to(dt), how).requires_grad_(need)

    x = leaf("x" in grads, layout)
    ys = [leaf("ys" in grads, ys_layout or layout) for _ in range(k)]
    scale = 0.0 if zero_weights else 1.0
    w_param = (scale * torch.randn(k, generator=g)).requires_grad_("w" in grads)
    w_skip = (scale * torch.randn((), generator=g)).requires_grad_("w" in grads) if skip else None
    w_pool = (scale * torch.randn((), generator=g)).requires_grad_("w" in grads) if pool else None
    upstream = stored(torch.randn(shape, generator=g).to(dt), grad_layout)
    leaves = [t for t in (x, *ys, w_param, w_skip, w_pool) if t is not None and t.requires_grad]
    assert kernels.backend(x) == "triton"
    triton_module = importlib.import_module("gmgraph.kernels.triton_mixed_op")
    launch_shape = triton_module._launch_shape
    if wide:  # int64 indices are only chosen for 2**31 elements; force them on a small tensor
        triton_module._launch_shape = lambda t: (launch_shape(t)[0], True)
    try:
        results = [outputs_and_grads(fn, x, ys, w_param, w_skip, w_pool, leaves, upstream)
                   for fn in (kernels.mixed_op, reference.mixed_op)]
    finally:
        triton_module._launch_shape = launch_shape
    return relative_error(*results)


def relative_error(got: list, want: list) -> float:
    """The largest difference over paired tensors, each over the largest magnitude of its reference.

    A nan difference counts as infinite: ``max`` would drop it (nan compares
    false), and nan is what a kernel reading unused strided memory gets here.
    """
    error = 0.0
    for a, b in zip(got, want):
        if b.numel():
            diff = (a.float() - b.float()).abs().nan_to_num(nan=float("inf")).max().item()
            error = max(error, diff / max(b.float().abs().max().item(), 1e-6))
    return error


def outputs_and_grads(fn, x, ys, w_param, w_skip, w_pool, leaves, upstream) -> list:
    """``fn``'s output and the gradients of ``leaves`` for upstream gradient ``upstream``.

    ``upstream`` is handed to autograd as it is stored, so the op's backward
    receives it in that layout (a loss like ``(out * u).sum()`` would hand it
    a fresh dense tensor instead).
    """
    import torch

    out = fn(x, ys, w_param, w_skip, w_pool)
    if not out.requires_grad:
        return [out, *(torch.zeros_like(t) for t in leaves)]
    grads = torch.autograd.grad(out, leaves, upstream, allow_unused=True)
    return [out.detach(), *(torch.zeros_like(t) if d is None else d for t, d in zip(leaves, grads))]


def result_layouts() -> dict:
    """Whether the Triton path's output and input gradients are stored in the documented order."""
    import torch

    from gmgraph import kernels

    found = {}
    for layout in ("channels_last", "sliced"):
        x = stored(torch.randn(2, 3, 5, 4), layout).requires_grad_()
        y = stored(torch.randn(2, 3, 5, 4), "nchw").requires_grad_()
        out = kernels.mixed_op(x, [y], torch.ones(1), torch.ones(()), torch.ones(()))
        dx, dy = torch.autograd.grad(out, [x, y], stored(torch.randn(2, 3, 5, 4), "permuted"))
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        found[layout] = [t.is_contiguous(memory_format=fmt) for t in (out, dx, dy)]
    return found


def run_nb201_fused() -> float:
    """Largest absolute difference, fused (Triton) vs unfused NB201 supernet, DARTS weights."""
    import torch

    import gmgraph
    from gmgraph.passes import fuse
    from gmgraph.sampler_table import make_sampler
    from gmgraph.spaces import nb201

    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1)).eval()
    values = []
    for graph in (gm, fuse(gm)):
        sampler = make_sampler("darts", graph, seed=3)
        x = torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(5), requires_grad=True)
        with sampler.context():
            out = graph(x)
        params = list(graph.parameters()) + list(sampler.alphas.values())
        grads = torch.autograd.grad(out.square().sum(), [x, *params])
        values.append([out, *grads])
    return max((a - b).abs().max().item() for a, b in zip(*values))


def main() -> None:
    import importlib
    from types import ModuleType

    import gmgraph.kernels

    triton_module = importlib.import_module("gmgraph.kernels.triton_mixed_op")
    print(json.dumps({
        "interpreted": triton_module.interpreted(),
        # Importing the submodule must not hide the public function of the same name.
        "public_is_function": not isinstance(gmgraph.kernels.mixed_op, ModuleType),
        "cases": {name: run_case(**case) for name, case in CASES.items()},
        "result_layouts": result_layouts(),
        "nb201_fused": run_nb201_fused(),
    }))


if __name__ == "__main__":
    import os
    import sys

    main()
    sys.stdout.flush()
    os._exit(0)  # all it computed is printed: skip the interpreter's teardown of torch and triton (about 1 s of CPU)
