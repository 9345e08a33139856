"""What differentiating only into the parameters a step updates saves, against a full backward.

A bilevel step (DARTS, GDAS) is an architecture step on a validation batch
and a weight step on a training batch. ``SupernetTrainer._backward`` sends
each backward into its own optimizer's parameters only: the architecture step
computes no weight gradients, the weight step no alpha gradients. The
baseline is the same trainer with a plain ``loss.backward()`` (every
parameter), in the same run, alternating, on one thread.

Run: ``.venv/bin/python benchmarks/bench_backward.py [--rounds 7]``. NB201
supernet (C=16, N=5, 1 input channel) on digits, batch 64. Two measures:

* wall ms per step (median over rounds of the mean of ``--steps`` steps);
* aten ops dispatched per step, counted with a dispatch mode: exact and
  machine-independent, and on a GPU each is at least one kernel launch, the
  host cost that bounds an eager DARTS step there.

Writes benchmarks/results/backward.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig  # noqa: E402


class FullBackward(SupernetTrainer):
    """The baseline, the trainer as it was: every backward differentiates into every parameter, alphas included."""

    @staticmethod
    def _backward(loss, optimizer):
        loss.backward()

    def _alphas_fixed(self):
        return contextlib.nullcontext()


class CountOps(TorchDispatchMode):
    """Counts the aten ops dispatched inside it.

    >>> with CountOps() as ops:
    ...     _ = torch.ones(2) + 1
    >>> ops.count
    2
    """

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def trainer(cls, sampler: str, loaders) -> SupernetTrainer:
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=16, N=5, in_channels=1))
    return cls(gm, loaders, TrainConfig(sampler=sampler, device="cpu"), seed=0)


def parts(t: SupernetTrainer, batch, val) -> dict[str, float]:
    """Wall seconds of the architecture step and the weight step on one batch."""
    x, y = batch
    start = time.perf_counter()
    t._arch_step(*val)
    middle = time.perf_counter()
    t._weight_step(x, y, torch.arange(len(y)))
    return {"arch": middle - start, "weights": time.perf_counter() - middle}


def ops_per_step(t: SupernetTrainer, batch, val) -> dict[str, int]:
    x, y = batch
    with CountOps() as arch:
        t._arch_step(*val)
    with CountOps() as weights:
        t._weight_step(x, y, torch.arange(len(y)))
    return {"arch": arch.count, "weights": weights.count}


def compare(sampler: str, loaders, rounds: int, steps: int) -> list[list]:
    batch, val = next(iter(loaders.train)), next(iter(loaders.val))
    trainers = {"full": trainer(FullBackward, sampler, loaders), "targeted": trainer(SupernetTrainer, sampler, loaders)}
    for t in trainers.values():  # warm-up; the first step also checks the data
        t.train_step(*batch, None, val)
        parts(t, batch, val)
    times = {name: {"arch": [], "weights": []} for name in trainers}
    for r in range(rounds):
        order = list(trainers) if r % 2 == 0 else list(reversed(trainers))
        for name in order:
            runs = [parts(trainers[name], batch, val) for _ in range(steps)]
            for part in ("arch", "weights"):
                times[name][part].append(statistics.mean(run[part] for run in runs) * 1e3)
    ops = {name: ops_per_step(t, batch, val) for name, t in trainers.items()}
    rows = []
    for part in ("arch", "weights", "step"):
        ms = {name: (statistics.median(times[name][part]) if part != "step" else
                     statistics.median(a + w for a, w in zip(times[name]["arch"], times[name]["weights"])))
              for name in trainers}
        count = {name: (ops[name][part] if part != "step" else sum(ops[name].values())) for name in trainers}
        rows.append([sampler, part, f"{ms['full']:.1f}", f"{ms['targeted']:.1f}", f"{ms['targeted'] / ms['full']:.2f}x",
                     count["full"], count["targeted"], f"{count['targeted'] / count['full']:.2f}x"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; medians are reported (default 7)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaders = data.load("digits", batch_size=64)
    rows = [row for sampler in ("darts", "gdas") for row in compare(sampler, loaders, args.rounds, args.steps)]
    save("backward", f"Backward into the step's own parameters vs every parameter: NB201 C=16 N=5 on digits "
         f"(batch 64), median of {args.rounds} alternating rounds of {args.steps} steps",
         ["sampler", "part", "full ms", "targeted ms", "ratio", "full ops", "targeted ops", "ops ratio"], rows,
         notes="`python benchmarks/bench_backward.py`. 'arch' is the architecture step on a validation batch, "
               "'weights' the weight step, 'step' both. Ops are aten ops dispatched per step (exact; for GDAS, of "
               "the one draw made when counting: on the CPU it runs only the drawn op). On the CPU one "
               "convolution_backward op computes both gradients, so the architecture step saves time (no weight "
               "gradient) more than ops; on a GPU that op launches the weight-gradient kernel only when asked.")


if __name__ == "__main__":
    main()
