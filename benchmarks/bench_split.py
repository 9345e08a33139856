"""Cost of gradient-matching scores for all six NB201 labels, in supernet training epochs.

Run: ``.venv/bin/python benchmarks/bench_split.py [--rounds 10]``. NB201 supernet
(C=16, N=5, 1 input channel) on digits, batch 64, uniform sampler. The
baseline, measured in the same run, is one training epoch of that supernet
(17 steps). Writes benchmarks/results/split.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.scores import gradient_matching  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig  # noqa: E402


def score_all(gm, trainer, rounds: int, shared) -> float:
    batches = trainer.data.scoring_batches(seed=0)
    start = time.perf_counter()
    for label in nb201.LABELS:
        gradient_matching(gm, label, batches, rounds=rounds, sampler=trainer.sampler, shared=shared)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    loaders = data.load("digits", batch_size=64)
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=16, N=5, in_channels=1))
    trainer = SupernetTrainer(gm, loaders, TrainConfig(sampler="uniform", epochs=3))
    trainer.train_epoch(quiet=True)  # warm-up
    epoch = trainer.train_epoch(quiet=True)["seconds"]
    rows = [["one training epoch (17 steps)", "-", f"{epoch:.2f}", "1.00"]]
    for rounds in args.rounds:
        for name, shared in (("automatic", None), ("NB201 preset", nb201.shared_parameters)):
            seconds = score_all(gm, trainer, rounds, shared)
            rows.append([f"GM, 6 labels x 5 ops, shared={name}", rounds, f"{seconds:.2f}", f"{seconds / epoch:.2f}"])
    save("split", "Gradient-matching scoring of all six NB201 labels vs one training epoch (C=16, N=5, digits)",
         ["work", "R", "seconds", "epochs"], rows,
         notes="Each round runs 5 forward+backward passes per label (one per forced op): 30 R passes in all, "
               "against 17 training steps per epoch. Target (issue 4): R=10 <= 1 epoch.")


if __name__ == "__main__":
    main()
