"""Time the weighted mixed op of one NAS-Bench-201 Choice, forward + backward.

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--runs 20]``. Writes
benchmarks/results/kernels.md.

One NB201 edge mixes five candidates: ``none``, ``skip_connect``, two convs
(their outputs are given: K = 2) and ``avg_pool_3x3``; float32, the stage
widths and resolutions of the C=16 network (16 @ 32x32, 32 @ 16x16, 64 @ 8x8).

* On CUDA (when present): the Triton kernels (``fuse``) vs the unfused sum a
  Choice computes (every weighted candidate materialised), timed with CUDA
  events, median of ``--runs``. Bytes moved at the minimum: forward reads x
  and the K outputs once and writes out once; backward reads g, x and the K
  outputs once and writes dx and the K gradients once; in all (3K + 5) tensors.
  Achieved bandwidth is that minimum over the fused time, given as a fraction
  of a measured device-to-device copy (a copy moves 2 bytes per byte copied).
* On CPU (always): the torch reference (what ``fuse`` runs on CPU) vs the
  naive loop version and vs the unfused sum, wall clock, median of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

from gmgraph import kernels  # noqa: E402
from gmgraph.choice import Zero  # noqa: E402
from gmgraph.kernels import reference  # noqa: E402

STAGES = [(16, 32), (32, 16), (64, 8)]  # (channels, height = width) of NB201's three stages
K = 2  # nor_conv_1x1 and nor_conv_3x3
WEIGHTS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def make_inputs(batch: int, channels: int, size: int, device: str) -> tuple:
    g = torch.Generator().manual_seed(0)
    shape = (batch, channels, size, size)
    x = torch.randn(shape, generator=g).to(device).requires_grad_()
    ys = [torch.randn(shape, generator=g).to(device).requires_grad_() for _ in range(K)]
    w = torch.randn(len(WEIGHTS), generator=g).softmax(0).to(device).requires_grad_()
    upstream = torch.randn(shape, generator=g).to(device)
    return x, ys, w, upstream


def unfused(x, ys, w):
    """What a Choice computes without ``fuse``: each weighted candidate is its own tensor."""
    out = w[0] * Zero()(x)
    out = out + w[1] * x
    for i, y in enumerate(ys):
        out = out + w[2 + i] * y
    return out + w[4] * F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def with_mixed_op(fn) -> Callable:
    """Adapt a ``mixed_op(x, ys, w_param, w_skip, w_pool)`` to the five NB201 weights (none is dropped)."""
    return lambda x, ys, w: fn(x, ys, w[2:4], w[1], w[4])


def step(fn, inputs) -> None:
    x, ys, w, upstream = inputs
    out = fn(x, ys, w)
    # autograd.grad, not backward: accumulating into .grad would add traffic to the timing.
    torch.autograd.grad(out, [x, *ys, w], upstream)


def cpu_ms(fns, inputs, runs: int) -> list[float]:
    """Median wall-clock ms of each function; runs alternate between them so that
    load from other processes on a shared machine hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        step(fn, inputs)
    for _ in range(runs):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            step(fn, inputs)
            t.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def cuda_ms(fns, inputs, runs: int) -> list[float]:
    """Median ms of each function by CUDA events, runs alternating as in :func:`cpu_ms`."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(3):
        for fn in fns:
            step(fn, inputs)
    for _ in range(runs):
        for fn, t in zip(fns, times):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(fn, inputs)
            end.record()
            torch.cuda.synchronize()
            t.append(start.elapsed_time(end))
    return [statistics.median(t) for t in times]


def copy_gb_per_s(runs: int, megabytes: int = 256) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second)."""
    src = torch.empty(megabytes * 2**20 // 4, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * src.element_size() / statistics.median(times) / 1e9


def min_bytes(inputs) -> int:
    x = inputs[0]
    return (3 * K + 5) * x.numel() * x.element_size()


def gpu_rows(runs: int, timer=cuda_ms, device: str = "cuda", batches=(64, 256), stages=STAGES, copy=None) -> list[list]:
    copy = copy_gb_per_s(runs) if copy is None else copy
    rows = []
    for batch in batches:
        for channels, size in stages:
            inputs = make_inputs(batch, channels, size, device)
            base, fused = timer([unfused, with_mixed_op(kernels.mixed_op)], inputs, runs)
            moved = min_bytes(inputs)
            achieved = moved / (fused / 1e3) / 1e9
            rows.append([device, batch, channels, f"{size}x{size}", "unfused Choice", f"{base:.3f}",
                         f"fused ({kernels.backend(inputs[0])})", f"{fused:.3f}", f"{base / fused:.2f}x",
                         f"{moved / 1e6:.1f}", f"{achieved:.0f}", f"{achieved / copy:.0%}"])
    return rows


def cpu_rows(runs: int, batches=(64,), stages=STAGES) -> list[list]:
    rows = []
    for batch in batches:
        for channels, size in stages:
            inputs = make_inputs(batch, channels, size, "cpu")
            fns = [with_mixed_op(reference.mixed_op_loop), with_mixed_op(reference.mixed_op), unfused]
            loop, ref, base = cpu_ms(fns, inputs, runs)
            shape = ["cpu", batch, channels, f"{size}x{size}"]
            rows.append(shape + ["naive loop", f"{loop:.2f}", "torch reference", f"{ref:.2f}",
                                 f"{loop / ref:.2f}x", "", "", ""])
            rows.append(shape + ["unfused Choice", f"{base:.2f}", "torch reference", f"{ref:.2f}",
                                 f"{base / ref:.2f}x", "", "", ""])
    return rows


HEADERS = ["device", "batch", "C", "HxW", "baseline", "baseline ms", "candidate", "candidate ms",
           "speed-up", "min MB moved", "achieved GB/s", "of copy bandwidth"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    rows = gpu_rows(args.runs) if torch.cuda.is_available() else []
    rows += cpu_rows(args.runs)
    notes = (
        "Forward + backward of one NB201 Choice's weighted sum (K = 2 given conv outputs, skip, "
        "avg_pool_3x3, none), float32, median of "
        f"{args.runs} runs. The minimum traffic is (3K + 5) tensors: forward reads x and the K outputs "
        "and writes out; backward reads g, x and the K outputs and writes dx and the K gradients."
    )
    if not torch.cuda.is_available():
        notes += " No CUDA device on this machine: only the CPU rows were measured."
    save("kernels", "Weighted mixed op of one NB201 Choice, forward + backward", HEADERS, rows, notes)


if __name__ == "__main__":
    main()
