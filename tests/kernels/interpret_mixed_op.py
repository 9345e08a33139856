"""Compare the Triton mixed-op kernels, run by Triton's interpreter on CPU, with the torch reference.

Not a test module: ``test_mixed_op.py`` runs it in a subprocess with
``TRITON_INTERPRET=1 GMGRAPH_KERNELS=triton`` (the interpreter must be chosen
before triton defines the kernels, so it cannot share the test process) and
reads the one JSON object it prints. A case's error is the largest difference
over the output and every gradient, each divided by the largest magnitude of
the reference tensor (so one tolerance fits sums of any size);
``nb201_fused`` is the largest absolute difference between the fused and the
unfused supernet.

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
    "f32_channels_last": dict(shape=(2, 3, 5, 4), k=1, channels_last=True),
    "f32_expanded_grad": dict(shape=(1, 2, 7, 5), k=1, expanded_grad=True),
    "bf16_7x5_k3": dict(shape=(1, 2, 7, 5), k=3, dtype="bfloat16"),
    "bf16_batch1_k0": dict(shape=(1, 3, 4, 6), k=0, dtype="bfloat16"),
    "f16_7x5_k1": dict(shape=(2, 1, 7, 5), k=1, dtype="float16"),
}


def run_case(shape, k, *, skip=True, pool=True, dtype="float32", grads=("x", "w", "ys"),
             zero_weights=False, channels_last=False, expanded_grad=False, wide=False, seed=0) -> float:
    import importlib

    import torch

    from gmgraph import kernels
    from gmgraph.kernels import reference

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)

    def leaf(size, need, dtype=dt):
        t = torch.randn(size, generator=g).to(dtype)
        if channels_last and len(size) == 4:
            t = t.to(memory_format=torch.channels_last)
        return t.requires_grad_(need)

    x = leaf(shape, "x" in grads)
    ys = [leaf(shape, "ys" in grads) for _ in range(k)]
    scale = 0.0 if zero_weights else 1.0
    w_param = (scale * torch.randn(k, generator=g)).requires_grad_("w" in grads)
    w_skip = (scale * torch.randn((), generator=g)).requires_grad_("w" in grads) if skip else None
    w_pool = (scale * torch.randn((), generator=g)).requires_grad_("w" in grads) if pool else None
    upstream = torch.randn(shape, generator=g).to(dt)
    leaves = [t for t in (x, *ys, w_param, w_skip, w_pool) if t is not None and t.requires_grad]
    assert kernels.backend(x) == "triton"
    triton_module = importlib.import_module("gmgraph.kernels.triton_mixed_op")
    launch_shape = triton_module._launch_shape
    if wide:  # int64 indices are only chosen for 2**31 elements; force them on a small tensor
        triton_module._launch_shape = lambda t: (launch_shape(t)[0], True)
    try:
        results = [outputs_and_grads(fn, x, ys, w_param, w_skip, w_pool, leaves, upstream, expanded_grad)
                   for fn in (kernels.mixed_op, reference.mixed_op)]
    finally:
        triton_module._launch_shape = launch_shape
    error = 0.0
    for got, want in zip(*results):
        if want.numel():
            diff = (got.float() - want.float()).abs().max().item()
            error = max(error, diff / max(want.float().abs().max().item(), 1e-6))
    return error


def outputs_and_grads(fn, x, ys, w_param, w_skip, w_pool, leaves, upstream, expanded_grad) -> list:
    import torch

    out = fn(x, ys, w_param, w_skip, w_pool)
    if not out.requires_grad:
        return [out, *(torch.zeros_like(t) for t in leaves)]
    loss = out.float().sum() if expanded_grad else (out.float() * upstream.float()).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [out.detach(), *(torch.zeros_like(t) if d is None else d for t, d in zip(leaves, grads))]


def run_nb201_fused() -> float:
    """Largest absolute difference, fused (Triton) vs unfused NB201 supernet, DARTS weights."""
    import torch

    import gmgraph
    from gmgraph.passes import fuse
    from gmgraph.spaces import nb201
    from gmgraph.train.samplers import make_sampler

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
        "nb201_fused": run_nb201_fused(),
    }))


if __name__ == "__main__":
    main()
