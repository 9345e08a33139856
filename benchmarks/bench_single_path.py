"""A single-path step of the NB201 supernet against its own derived network, and the pooling inside it.

Run: ``.venv/bin/python benchmarks/bench_single_path.py [--paths 24] [--reps 5] [--data digits16]``.
Writes benchmarks/results/single_path.md (``single_path_digits16.md`` for ``--data digits16``).

Steps: NB201 supernet C=16 N=5 on digits (1 channel, 8x8, batch 64), SGD + Nesterov, clip 5, on 1
thread. The path is set as the trainer sets it (``gmgraph.graph.running`` on Choices collected
once; ``gmgraph.use`` would add about 3 ms of checks a step). For each of ``--paths`` uniformly drawn paths, four steps are timed in turn (rotated, so
load on the shared machine hits all alike), ``--reps`` times after 2 warm-up rounds, and each
keeps its median: the supernet on the path now (dead Choices and ``none`` skipped, gmgraph's pooling),
the supernet as before (every Choice runs, torch's exclude-padding pooling), and the path's
derived network with each pooling. The ratios are per path (median of paired ratios) and over
all paths (ratio of sums).

Pooling: ``nn.AvgPool2d(3, 1, 1, count_include_pad=False)`` against :class:`gmgraph.pooling.AvgPool2d`,
forward and backward at NB201 shapes (batch 64), alternated, median of ``--reps * 4`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import markdown, save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.graph import choices, running  # noqa: E402
from gmgraph.live_run import run_everything  # noqa: E402
from gmgraph.passes import derive  # noqa: E402
from gmgraph.pooling import AvgPool2d  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402

POOL_SHAPES = [(64, 16, 8, 8), (64, 32, 4, 4), (64, 64, 2, 2),  # digits (8x8) through the three stages
               (64, 16, 16, 16), (64, 32, 8, 8), (64, 64, 4, 4),  # 16x16 inputs
               (64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8)]  # 32x32 (CIFAR) inputs


def with_torch_pool(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose fast pools are torch's ``nn.AvgPool2d`` with the same settings."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is AvgPool2d:
                setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode,
                                                   child.count_include_pad, child.divisor_override))
    return net


def sgd(net: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def step(net, optimizer, x, y, context) -> float:
    """One training step (zero grads, forward, backward, clip, update) with ``context()`` around the forward; seconds."""
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with context():
        loss = F.cross_entropy(net(x), y)
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], 5.0)
    optimizer.step()
    loss.item()
    return time.perf_counter() - start


def bench_steps(paths: int, reps: int, x, y) -> tuple[list[list], dict]:
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=16, N=5, in_channels=1)).train()
    old_gm, default_gm = with_torch_pool(gm), with_torch_pool(gm)
    groups, old_groups = choices(gm), choices(old_gm)  # collected once, as the trainer's sampler does
    default_groups = choices(default_gm)
    generator = torch.Generator().manual_seed(0)
    names = ["supernet", "supernet, torch pool", "supernet before", "derived", "derived, torch pool"]
    per_path: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(paths):
        arch = gmgraph.sample(gm, generator)
        net = derive(gm, arch).train()
        old_net = with_torch_pool(net)
        runs = {
            "supernet": (gm, sgd(gm), lambda a=arch: running(groups, arch=a)),
            "supernet, torch pool": (default_gm, sgd(default_gm), lambda a=arch: running(default_groups, arch=a)),
            "supernet before": (old_gm, sgd(old_gm), lambda a=arch: _before(old_groups, a)),
            "derived": (net, sgd(net), contextlib.nullcontext),
            "derived, torch pool": (old_net, sgd(old_net), contextlib.nullcontext),
        }
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(reps + 2):
            order = names[rep % len(names):] + names[:rep % len(names)]  # rotated
            for name in order:
                module, optimizer, context = runs[name]
                elapsed = step(module, optimizer, x, y, context)
                if rep >= 2:
                    times[name].append(elapsed)
        for name in names:
            per_path[name].append(statistics.median(times[name]) * 1e3)
    rows = []
    for name, base in (("supernet", "derived"), ("supernet, torch pool", "derived, torch pool"),
                       ("supernet before", "derived, torch pool"), ("supernet before", "derived")):
        paired = statistics.median(a / b for a, b in zip(per_path[name], per_path[base]))
        summed = sum(per_path[name]) / sum(per_path[base])
        rows.append([name, base, f"{statistics.median(per_path[name]):.1f}", f"{statistics.median(per_path[base]):.1f}",
                     f"{paired:.3f}x", f"{summed:.3f}x"])
    return rows, per_path


@contextlib.contextmanager
def _before(groups, arch):
    """The supernet as it ran before: every Choice of the path runs (``none`` as ``x * 0``)."""
    with run_everything(), running(groups, arch=arch):
        yield


def bench_pool(reps: int) -> list[list]:
    rows = []
    slow, fast = nn.AvgPool2d(3, 1, 1, count_include_pad=False), AvgPool2d(3, 1, 1, count_include_pad=False)
    for shape in POOL_SHAPES:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).requires_grad_()
        grad = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        times: dict[str, list[float]] = {"torch": [], "gmgraph": []}
        for rep in range(4 * reps + 3):
            for name, pool in (("torch", slow), ("gmgraph", fast))[:: 1 if rep % 2 else -1]:
                start = time.perf_counter()
                pool(x).backward(grad)
                if rep >= 3:
                    times[name].append(time.perf_counter() - start)
        before, after = (statistics.median(times[k]) * 1e3 for k in ("torch", "gmgraph"))
        rows.append(["x".join(map(str, shape)), f"{before:.3f}", f"{after:.3f}", f"{before / after:.1f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--paths", type=int, default=24)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--data", default="digits", help="digits (8x8, as bench_train.py) or digits16 (the default run's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = next(iter(data.load(args.data, batch_size=64).train))
    pool_rows = bench_pool(args.reps)
    step_rows, per_path = bench_steps(args.paths, args.reps, x, y)
    ratio = float(step_rows[0][-1].rstrip("x"))
    notes = (
        f"Target: supernet / derived <= 1.05x by ratio of sums ({'met' if ratio <= 1.05 else 'NOT met'}: "
        f"{ratio:.3f}x). Medians of the per-path medians in ms. \"supernet\" skips dead Choices and pools with "
        "gmgraph.pooling.AvgPool2d (the spaces' pool: torch's numbers bit for bit, on its channels-last kernel); "
        "\"supernet, torch pool\" is the same supernet with torch's nn.AvgPool2d (the default before issue 33); "
        "\"supernet before\" runs every Choice of the path and torch's pooling, as gmgraph did before dead Choices "
        "were skipped; \"derived\" is derive(gm, arch) with the same pooling as the supernet row it is compared "
        "with.\n\n"
        f"## Pooling: 3x3, stride 1, padding 1, padding not counted; forward + backward, 1 thread\n\n"
        + markdown(["shape (NCHW)", "torch ms", "gmgraph ms", "speed-up"], pool_rows)
    )
    name = "single_path" if args.data == "digits" else f"single_path_{args.data}"
    save(name, f"Single-path step vs its derived network: NB201 C=16 N=5 on {args.data} {tuple(x.shape[1:])} "
         f"(batch 64), "
         f"{args.paths} paths, median of {args.reps} rotated steps each, 1 thread",
         ["supernet", "baseline", "supernet ms", "baseline ms", "median of paired ratios", "ratio of sums"],
         step_rows, notes=notes)


if __name__ == "__main__":
    main()
