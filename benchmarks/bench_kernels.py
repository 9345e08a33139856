"""Time the weighted mixed op of one NAS-Bench-201 Choice, forward + backward.

Run: ``.venv/bin/python benchmarks/bench_kernels.py [--runs 20]``. Writes
benchmarks/results/kernels.md; ``--quick`` (a smoke run: tiny sizes, three
runs) only prints.

One NB201 edge mixes five candidates: ``none``, ``skip_connect``, two convs
(their outputs are given: K = 2) and ``avg_pool_3x3``; float32, the stage
widths and resolutions of the C=16 network (16 @ 32x32, 32 @ 16x16, 64 @ 8x8).

* On CUDA (when present): the Triton kernels (``fuse``) vs the unfused sum a
  Choice computes (every weighted candidate materialised), with inputs and
  upstream gradient stored NCHW and channels_last, timed with CUDA events,
  median of ``--runs``. Bytes moved at the minimum: forward reads x
  and the K outputs once and writes out once; backward reads g, x and the K
  outputs once and writes dx and the K gradients once; in all (3K + 5) tensors.
  Achieved bandwidth is that minimum over the fused time, given as a fraction
  of a measured device-to-device copy (a copy moves 2 bytes per byte copied).
* On CPU (always): the torch reference (what ``fuse`` runs on CPU) vs the
  naive loop version and vs the unfused sum, wall clock, median of ``--runs``.

Next to each time, the error of what was timed: the largest difference to
the float64 reference over the output and every gradient, each divided by the
largest magnitude of that reference tensor (a wrong layout shows as an error
near 1, float32 rounding as about 1e-7; a weight gradient, one long sum, may
reach 1e-5).
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
from _table import markdown, save  # noqa: E402

from gmgraph import kernels  # noqa: E402
from gmgraph.choice import Zero  # noqa: E402
from gmgraph.kernels import reference  # noqa: E402

STAGES = [(16, 32), (32, 16), (64, 8)]  # (channels, height = width) of NB201's three stages
K = 2  # nor_conv_1x1 and nor_conv_3x3
WEIGHTS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def make_inputs(batch: int, channels: int, size: int, device: str, layout: str = "nchw") -> tuple:
    """``(x, ys, w, upstream)``; the tensors of images stored in ``layout`` (a key of ``LAYOUTS``)."""
    g = torch.Generator().manual_seed(0)
    shape = (batch, channels, size, size)

    def image():
        return torch.randn(shape, generator=g).to(device).contiguous(memory_format=LAYOUTS[layout])

    x = image().requires_grad_()
    ys = [image().requires_grad_() for _ in range(K)]
    w = torch.randn(len(WEIGHTS), generator=g).softmax(0).to(device).requires_grad_()
    return x, ys, w, image()


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


def step(fn, inputs) -> list[torch.Tensor]:
    """One forward and backward: the output and the gradients of x, the ys and w."""
    x, ys, w, upstream = inputs
    out = fn(x, ys, w)
    # autograd.grad, not backward: accumulating into .grad would add traffic to the timing.
    return [out, *torch.autograd.grad(out, [x, *ys, w], upstream)]


def max_rel_error(fn, inputs) -> float:
    """The largest difference of ``step(fn)`` to the float64 reference, per tensor over its largest magnitude.

    >>> inputs = make_inputs(1, 2, 4, "cpu", "channels_last")
    >>> max_rel_error(unfused, inputs) < 1e-6
    True
    """
    x, ys, w, upstream = inputs
    exact = (x.detach().double().requires_grad_(), [y.detach().double().requires_grad_() for y in ys],
             w.detach().double().requires_grad_(), upstream.double())
    want = step(with_mixed_op(reference.mixed_op), exact)
    errors = [(a.double() - b).abs().max() / b.abs().max().clamp_min(1e-30) for a, b in zip(step(fn, inputs), want)]
    return torch.stack(errors).nan_to_num(nan=float("inf")).max().item()


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


def gpu_rows(runs: int, timer=cuda_ms, device: str = "cuda", batches=(64, 256), stages=STAGES, copy=None,
             layouts=tuple(LAYOUTS)) -> list[list]:
    copy = copy_gb_per_s(runs) if copy is None else copy
    rows = []
    for batch in batches:
        for channels, size in stages:
            for layout in layouts:
                inputs = make_inputs(batch, channels, size, device, layout)
                fns = [unfused, with_mixed_op(kernels.mixed_op)]
                base, fused = timer(fns, inputs, runs)
                base_err, fused_err = (max_rel_error(fn, inputs) for fn in fns)
                moved = min_bytes(inputs)
                achieved = moved / (fused / 1e3) / 1e9
                rows.append([device, batch, channels, f"{size}x{size}", layout,
                             "unfused Choice", f"{base:.3f}", f"{base_err:.1e}",
                             f"fused ({kernels.backend(inputs[0])})", f"{fused:.3f}", f"{fused_err:.1e}",
                             f"{base / fused:.2f}x", f"{moved / 1e6:.1f}", f"{achieved:.0f}", f"{achieved / copy:.0%}"])
    return rows


def cpu_rows(runs: int, batches=(64,), stages=STAGES) -> list[list]:
    rows = []
    for batch in batches:
        for channels, size in stages:
            inputs = make_inputs(batch, channels, size, "cpu")
            fns = [with_mixed_op(reference.mixed_op_loop), with_mixed_op(reference.mixed_op), unfused]
            loop, ref, base = cpu_ms(fns, inputs, runs)
            loop_err, ref_err, base_err = (max_rel_error(fn, inputs) for fn in fns)
            shape = ["cpu", batch, channels, f"{size}x{size}", "nchw"]
            for name, ms, err in (("naive loop", loop, loop_err), ("unfused Choice", base, base_err)):
                rows.append(shape + [name, f"{ms:.2f}", f"{err:.1e}", "torch reference", f"{ref:.2f}",
                                     f"{ref_err:.1e}", f"{ms / ref:.2f}x", "", "", ""])
    return rows


HEADERS = ["device", "batch", "C", "HxW", "layout", "baseline", "baseline ms", "baseline max rel err",
           "candidate", "candidate ms", "candidate max rel err", "speed-up", "min MB moved", "achieved GB/s",
           "of copy bandwidth"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2, the smallest stage, 3 runs; prints the table, saves nothing")
    args = parser.parse_args()
    sizes = dict(batches=(2,), stages=STAGES[-1:]) if args.quick else {}
    runs = 3 if args.quick else args.runs
    rows = gpu_rows(runs, **sizes) if torch.cuda.is_available() else []
    rows += cpu_rows(runs, **sizes)
    if args.quick:
        print(markdown(HEADERS, rows))
        return
    notes = (
        "Forward + backward of one NB201 Choice's weighted sum (K = 2 given conv outputs, skip, "
        "avg_pool_3x3, none), float32, median of "
        f"{args.runs} runs; inputs and upstream gradient stored as the layout column says. "
        "Errors: largest difference to the float64 reference over the output and every gradient, "
        "each over the largest magnitude of that reference tensor. The minimum traffic is (3K + 5) tensors: forward reads x and the K outputs "
        "and writes out; backward reads g, x and the K outputs and writes dx and the K gradients."
    )
    if not torch.cuda.is_available():
        notes += " No CUDA device on this machine: only the CPU rows were measured."
    save("kernels", "Weighted mixed op of one NB201 Choice, forward + backward", HEADERS, rows, notes)


if __name__ == "__main__":
    main()
