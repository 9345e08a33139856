"""Compile the mixed-op kernels for CUDA GPUs (sm_80: A100; sm_90: H100, H200) without one, down to a cubin.

Not a test module: ``test_mixed_op.py`` runs it in a subprocess without
``TRITON_INTERPRET``. The interpreter accepts code that the compiler rejects
(e.g. a helper returning int64 on one branch and int32 on the other), so this
is the check that the kernels build at all where they are meant to run.
Prints one JSON object: ``{"compiled": [...]}`` (every build for each arch), or ``{"skip": reason}`` when
this triton cannot compile for CUDA offline.
"""

from __future__ import annotations

import json

# (kernel, K, dtype, constexpr flags): forwards and backwards, full and partial, in both
# memory orders (NCHW and channels_last index their pooling neighbours differently).
ARCHS = (80, 90)

BUILDS = [
    ("forward", 3, "bf16", dict(HAS_SKIP=True, HAS_POOL=True, CHANNELS_LAST=False, WIDE=True)),
    ("forward", 2, "fp32", dict(HAS_SKIP=True, HAS_POOL=True, CHANNELS_LAST=True, WIDE=False)),
    ("backward", 2, "fp32", dict(HAS_SKIP=True, HAS_POOL=True, CHANNELS_LAST=False,
                                 NEED_DX=True, NEED_DYS=True, NEED_DW=True, WIDE=False)),
    ("backward", 1, "fp16", dict(HAS_SKIP=False, HAS_POOL=True, CHANNELS_LAST=False,
                                 NEED_DX=False, NEED_DYS=True, NEED_DW=True, WIDE=False)),
    ("backward", 1, "bf16", dict(HAS_SKIP=True, HAS_POOL=True, CHANNELS_LAST=True,
                                 NEED_DX=True, NEED_DYS=True, NEED_DW=True, WIDE=True)),
]


def signature(kernel: str, k: int, dtype: str) -> dict:
    tensor, ys = f"*{dtype}", tuple([f"*{dtype}"] * k)
    sizes = {"total": "i32", "C": "i32", "H": "i32", "W": "i32"}
    if kernel == "forward":
        return {"x_ptr": tensor, "ys": ys, "w_ptr": "*fp32", "out_ptr": tensor, **sizes}
    return {"g_ptr": tensor, "x_ptr": tensor, "ys": ys, "w_ptr": "*fp32", "dx_ptr": tensor, "dys": ys,
            "partial_ptr": "*fp32", **sizes}


def main() -> None:
    import importlib

    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        print(json.dumps({"skip": f"this triton has no offline compiler API: {exc}"}))
        return
    if "nvidia" not in triton.backends.backends:
        print(json.dumps({"skip": "this triton has no CUDA backend"}))
        return
    module = importlib.import_module("gmgraph.kernels.triton_mixed_op")
    compiled = []
    for arch in ARCHS:
        for kernel, k, dtype, flags in BUILDS:
            fn = module._forward_kernel if kernel == "forward" else module._backward_kernel
            constexprs = {"K": k, "BLOCK": module.BLOCK, **flags}
            sig = {**signature(kernel, k, dtype), **{name: "constexpr" for name in constexprs}}
            binary = triton.compile(ASTSource(fn, sig, constexprs=constexprs), target=GPUTarget("cuda", arch, 32))
            compiled.append({"arch": arch, "kernel": kernel, "K": k, "dtype": dtype,
                             "cubin_bytes": len(binary.asm["cubin"])})
    print(json.dumps({"compiled": compiled}))


if __name__ == "__main__":
    main()
