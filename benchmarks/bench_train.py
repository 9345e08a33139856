"""Time one supernet training step per sampler vs the same step on the derived network.

Run: ``.venv/bin/python benchmarks/bench_train.py [--steps 30]``. NB201 supernet
(C=16, N=5, 1 input channel) on digits, batch 64. For single-path samplers the
baseline of each step is the derived standalone network of the path that step
sampled (fresh SGD optimizer, same loss, clipping and update), so the ratio is
the overhead of running a path inside the supernet. Writes benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.passes import derive  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig  # noqa: E402


def plain_step(net, optimizer, x, y) -> float:
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], 5.0)
    optimizer.step()
    loss.item()
    return time.perf_counter() - start


def bench(sampler: str, loaders, steps: int) -> tuple[float, float | None, float | None]:
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=16, N=5, in_channels=1))
    trainer = SupernetTrainer(gm, loaders, TrainConfig(sampler=sampler))
    gm.train()
    x, y = next(iter(loaders.train))
    index = torch.arange(len(y))
    val = next(iter(loaders.val))
    super_times, plain_times, unpruned_times = [], [], []
    for step in range(steps + 3):  # 3 warm-up steps
        start = time.perf_counter()
        if trainer.sampler.bilevel:
            trainer._arch_step(*val)
        trainer._weight_step(x, y, index)
        elapsed = time.perf_counter() - start
        arch = trainer.sampler.last_arch
        if step >= 3:
            super_times.append(elapsed)
            if arch is not None:
                plain_times.append(derived_step(gm, arch, x, y, prune=True))
                unpruned_times.append(derived_step(gm, arch, x, y, prune=False))
    ms = [statistics.median(t) * 1e3 if t else None for t in (super_times, plain_times, unpruned_times)]
    return tuple(ms)


def derived_step(gm, arch, x, y, *, prune: bool) -> float:
    """Median of 3 steps of the derived network of ``arch`` after 2 warm-up steps."""
    net = derive(gm, arch, prune=prune).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for _ in range(2):
        plain_step(net, optimizer, x, y)
    return statistics.median(plain_step(net, optimizer, x, y) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady numbers on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaders = data.load("digits", batch_size=64)
    rows = []
    for sampler in ("uniform", "pada", "gdas", "darts"):
        sup, plain, unpruned = bench(sampler, loaders, args.steps)
        rows.append([sampler, f"{sup:.1f}", f"{plain:.1f}" if plain else "-", f"{unpruned:.1f}" if unpruned else "-",
                     f"{sup / plain:.2f}x" if plain else "n/a (all ops run)",
                     f"{sup / unpruned:.2f}x" if unpruned else "", "<= 1.15x" if sampler == "uniform" else ""])
    save("train", f"Training step, NB201 supernet C=16 N=5 on digits (batch 64), median of {args.steps} steps, "
         f"{torch.get_num_threads()} thread(s)",
         ["sampler", "supernet ms", "derived ms", "derived, dead ops kept ms", "ratio", "ratio vs dead kept",
          "target"], rows,
         notes="The derived baseline is the standalone network of the path each supernet step sampled "
               "(median of 3 steps after 2 warm-up steps). darts/gdas steps include the architecture step "
               "on a validation batch; darts runs every op.")


if __name__ == "__main__":
    main()
