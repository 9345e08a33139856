"""How close a supernet's accuracy/params trade-off gets to the true one, on a local ground truth.

Run: ``.venv/bin/python benchmarks/bench_pareto_supernet.py`` (``--quick``: seconds, for the test).

The NB201 table answers for CIFAR at C=16, N=5; a supernet trained here ranks
small networks on small data, so its trade-off is judged against a local
ground truth (``benchmarks/groundtruth.py``; default ``digits201.csv``: 200
archs trained from scratch, 8 seeds). For each supernet seed and method
(one-shot, GM few-shot), the supernet estimates every ground-truth arch's
val accuracy (weights inherited, BN recalibrated); the archs on the front of
(estimated accuracy, params) are the supernet's answer. Their *true*
accuracies and params give a hypervolume, reported as a fraction of the true
front's (the front of true accuracy vs params over the same archs; the same
reference point, 10 % of each range beyond the worst values of the archs above chance). The baseline
is a random score: the front of (random score, params), averaged over 200
draws, which only knows the params.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import groundtruth_lib as local  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph.arch import parse_nb201  # noqa: E402
from gmgraph.config import FewShotConfig, TrainConfig  # noqa: E402
from gmgraph.search.evaluation import evaluate  # noqa: E402
from gmgraph.search.pareto import hypervolume, non_dominated  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train.fewshot import locate, run_fewshot  # noqa: E402

SENSES = ("max", "min")  # accuracy up, params down
METHODS = {"one-shot": FewShotConfig(method="oneshot"),
           "GM few-shot": FewShotConfig(method="gm", split_at=(10, 20), rounds=4)}


CHANCE = 0.1


def reference(points: np.ndarray) -> tuple[float, float]:
    """10 % of each range beyond the worst value (below for accuracy, above for params), the ranges taken
    over the archs above chance + 5 points: cells with no path to the output sit at chance and would
    stretch the accuracy axis until every front looked alike (they add nothing below the reference)."""
    alive = points[points[:, 0] > CHANCE + 0.05]
    low, high = alive.min(axis=0), alive.max(axis=0)
    pad = 0.1 * (high - low)
    return float(low[0] - pad[0]), float(high[1] + pad[1])


def front_fraction(scores: np.ndarray, truth: np.ndarray, ref, true_hv: float) -> float:
    """Hypervolume (in true values) of the archs on the (score, params) front, over the true front's."""
    chosen = non_dominated(np.column_stack([scores, truth[:, 1]]), SENSES)
    return hypervolume(truth[chosen], ref, SENSES) / true_hv


def estimates(method: str, seed: int, archs: list[str], loaders, epochs: int, steps: int | None,
              rounds: int | None = None) -> np.ndarray:
    """Every arch's val accuracy estimated by a supernet of ``method`` (``rounds``: GM's R, default the METHODS')."""
    torch.manual_seed(seed)
    gm = gmgraph.trace(nb201.supernet(C=8, N=1, num_classes=10, in_channels=1))
    config = METHODS[method]
    if config.method != "oneshot":
        config = FewShotConfig(method=config.method, rounds=rounds or config.rounds,
                               split_at=tuple(e for e in (epochs // 3, 2 * epochs // 3) if 0 < e < epochs))
    result = run_fewshot(gm, loaders, config, TrainConfig(sampler="uniform", epochs=epochs, steps_per_epoch=steps),
                         seed=seed,
                         quiet=True)
    calib, val = list(loaders.train)[:4], list(loaders.val)
    out = []
    for text in archs:
        arch = parse_nb201(text)
        out.append(evaluate(locate(result, arch).gm, arch, val, calib_loader=calib, bn_batches=4))
    return np.array(out)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groundtruth", type=Path, default=local.DEFAULT_PATH)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="3 epochs, 2 steps, 1 seed, 12 archs, GM R=1")
    p.add_argument("--out", type=Path, default=None, help="folder for pareto_supernet.md (default benchmarks/results)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    epochs, steps, seeds, n = (3, 2, 1, 12) if args.quick else (args.epochs, None, args.seeds, None)
    rounds = 1 if args.quick else METHODS["GM few-shot"].rounds
    truth_acc = local.load_groundtruth(args.groundtruth)
    settings = json.loads(args.groundtruth.with_suffix(".json").read_text())
    archs = list(truth_acc)[:n]
    params = {r["arch"]: r["params"] / 1e6 for r in local.read_rows(args.groundtruth)}
    truth = np.array([[truth_acc[a], params[a]] for a in archs])
    ref = reference(truth)
    true_hv = hypervolume(truth, ref, SENSES)
    loaders = local.load_data(settings["dataset"], settings["schedule"]["batch_size"])
    rng = np.random.default_rng(0)
    baseline = float(np.mean([front_fraction(rng.random(len(archs)), truth, ref, true_hv) for _ in range(200)]))
    rows, start = [], time.perf_counter()
    for method in METHODS:
        fractions = [front_fraction(estimates(method, s, archs, loaders, epochs, steps, rounds), truth, ref, true_hv)
                     for s in range(seeds)]
        rows.append([method, seeds, f"{np.mean(fractions):.4f}", f"{min(fractions):.4f}-{max(fractions):.4f}",
                     f"{np.mean(fractions) - baseline:+.4f}"])
        print(rows[-1], flush=True)
    rows.append(["random score (knows params only)", 200, f"{baseline:.4f}", "", "+0.0000"])
    command = "benchmarks/bench_pareto_supernet.py" + (" --quick" if args.quick else "")
    notes = (f"Command: `.venv/bin/python {command}` ({(time.perf_counter() - start) / 60:.1f} min). Ground truth "
             f"`{args.groundtruth.name}` ({len(archs)} archs, {settings['dataset']}); supernets NB201 C=8, N=1, "
             f"{epochs} epochs, uniform sampling (GM: splits at {epochs // 3} and {2 * epochs // 3}, R={rounds}). "
             f"Reference point (accuracy, M params) = ({ref[0]:.4f}, {ref[1]:.4f}); the true front's "
             f"hypervolume is {true_hv:.6f}. A fraction of 1 means the supernet's front holds the true front.")
    headers = ["method", "seeds", "hypervolume / true front's (mean)", "range", "vs random score"]
    title = "Supernet-estimated accuracy/params front vs the true front (local ground truth)"
    if args.out is None:
        return _table.save("pareto_supernet", title, headers, rows, notes)
    path = args.out / "pareto_supernet.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n{_table.markdown(headers, rows)}\n\n{notes}\n")
    return path


if __name__ == "__main__":
    print(main())
