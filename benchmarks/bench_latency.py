"""Latency predictor vs measured end-to-end latency in onnxruntime, on every ready space.

Run: ``.venv/bin/python benchmarks/bench_latency.py`` (about 3 minutes; ``--quick``: seconds,
a tiny NB201 and 4 archs, for the test). For each configuration: build the space's
``LatencyTable`` afresh (its build time is reported), derive ``ARCHS`` random
architectures (seeded, none of them among the table's calibration archs), export
each to onnxruntime (1 intra-op thread) and time them all in ``ROUNDS`` rounds;
a round visits every arch once in a new random order and takes the median of
``RUNS`` calls after ``WARMUP``; an arch's latency is the median of its rounds.
Alternating archs within a round spreads the load of other processes over all of
them. Timings use the calling thread's CPU time (what ``gmgraph.latency`` uses
for one thread; the wall clock on this shared 2-core machine swings by 2x).

Before deriving, every BatchNorm of the supernet gets random running statistics
(as trained ones have): with the initial statistics all equal, onnxruntime would
merge the identical pool+BN ops of DARTS, which trained networks never allow.

A table whose timings stayed unstable is built again (up to ``BUILDS`` times), as
the cache would make a search do: such a table is not cached.

Reported: Spearman rho and the share within +-10 % of the plain prediction (fixed
+ sum of the table's op and sum times, ``predict(arch, corrected=False)``) and of the
corrected one (the default: a line fitted to the table's calibration archs), each
against the measured latency.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import machine, markdown, save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import spaces  # noqa: E402
from gmgraph.arch import key as arch_key  # noqa: E402
from gmgraph.latency import LatencyTable  # noqa: E402
from gmgraph.latency.measure import CLOCKS, time_runs  # noqa: E402
from gmgraph.latency.runtimes import onnxruntime_runner  # noqa: E402
from gmgraph.passes.derive import derive  # noqa: E402

ARCHS = 50
ROUNDS = 7
RUNS = 10
WARMUP = 2
CALIBRATION = 16
BUILDS = 3  # a table with unstable timings is built again, at most this many times in all
TOLERANCE = 0.10
TARGET_RHO, TARGET_WITHIN = 0.95, 0.90  # on NB201


@dataclass(frozen=True)
class Config:
    space: str
    width: int
    cells: int
    shape: tuple[int, ...]
    batch: int
    note: str = ""

    @property
    def name(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"{self.space} w{self.width} c{self.cells} {shape} b{self.batch}{self.note}"


CONFIGS = (
    Config("nb201", 16, 5, (1, 8, 8), 64, " (search defaults)"),
    Config("nb201", 8, 1, (1, 8, 8), 64),
    Config("nb201", 16, 5, (1, 8, 8), 1),
    Config("darts", 8, 1, (1, 8, 8), 64),
    Config("mobilenet", 8, 1, (3, 32, 32), 16),
)
QUICK = (Config("nb201", 4, 1, (1, 8, 8), 1),)


def supernet(config: Config) -> torch.fx.GraphModule:
    """The seeded supernet, its BatchNorms given random running statistics (as if trained)."""
    torch.manual_seed(0)
    model = spaces.get(config.space).build(width=config.width, cells=config.cells, num_classes=10,
                                           in_channels=config.shape[0])
    gm = gmgraph.trace(model).eval()
    generator = torch.Generator().manual_seed(1)
    for m in gm.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return gm


def validation_archs(gm, table: LatencyTable, n: int) -> list[dict]:
    """``n`` distinct random archs, none of them a calibration arch of the table."""
    seen = {arch_key(c["arch"]) for c in table.calibration}
    generator, archs = torch.Generator().manual_seed(1000), []
    while len(archs) < n:
        arch = gmgraph.sample(gm, generator)
        if arch_key(arch) not in seen:
            seen.add(arch_key(arch))
            archs.append(arch)
    return archs


def measured(gm, archs: list[dict], config: Config, rounds: int, runs: int, warmup: int) -> np.ndarray:
    """Median over rounds of each arch's per-round median ms (archs alternate within a round)."""
    x = torch.randn((config.batch, *config.shape), generator=torch.Generator().manual_seed(0))
    runners = [onnxruntime_runner(derive(gm, arch), (x,), threads=1) for arch in archs]
    per_round: list[list[float]] = [[] for _ in archs]
    order = list(range(len(archs)))
    for r in range(rounds):
        random.Random(r).shuffle(order)
        for i in order:
            per_round[i].append(statistics.median(time_runs(runners[i], warmup=warmup, runs=runs,
                                                            clock=CLOCKS["cpu"])))
    return np.array([statistics.median(times) for times in per_round])


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(Spearman rho, share within +-TOLERANCE, median relative error)."""
    error = predicted / truth - 1
    return float(spearmanr(predicted, truth)[0]), float(np.mean(np.abs(error) <= TOLERANCE)), float(np.median(error))


def choice_shift(config: Config, archs: list[dict], predicted: np.ndarray, truth: np.ndarray) -> list[list]:
    """How far the predictor moves a latency-limited choice: for limits at quartiles of the measured ms, the
    most accurate arch (NB201 table, CIFAR-10 test, 200 epochs) within the limit by predicted vs by measured ms.

    One row per limit: whether both pick the same arch, the accuracy given up, and whether the predicted
    pick breaks the limit when measured (and by how much).
    """
    from gmgraph.nasbench import nb201 as table

    accuracy = np.array([table.query(a) for a in archs])
    rows = []
    for q in (25, 50, 75):
        limit = float(np.percentile(truth, q))
        by_measured = max(np.flatnonzero(truth <= limit), key=lambda i: accuracy[i])
        inside = np.flatnonzero(predicted <= limit)
        if len(inside) == 0:
            rows.append([config.name, f"{q}th pct {limit:.3f}", "none predicted within", "", "", ""])
            continue
        by_predicted = max(inside, key=lambda i: accuracy[i])
        over = truth[by_predicted] / limit - 1
        rows.append([config.name, f"{q}th pct {limit:.3f}", "yes" if by_predicted == by_measured else "no",
                     f"{accuracy[by_measured] - accuracy[by_predicted]:+.2f}",
                     f"{truth[by_predicted]:.3f}", f"{max(over, 0.0):+.1%}"])
    return rows


SHIFT_HEADERS = ["space", "limit (ms, quartile of measured)", "same arch", "accuracy given up (points)",
                 "predicted pick measured ms", "over the limit"]


def run(config: Config, n: int, rounds: int, runs: int, warmup: int, calibration: int, cache: str,
        shifts: list | None = None) -> list:
    gm = supernet(config)
    table, builds = None, 0
    while builds < BUILDS and (table is None or table.unstable):  # unstable tables are not cached: build again
        builds += 1
        start = time.perf_counter()
        table = LatencyTable.build(gm, config.shape, batch=config.batch, cache_dir=cache, calibration=calibration,
                                   rebuild=True, quiet=True)
        build_s = time.perf_counter() - start
    archs = validation_archs(gm, table, n)
    truth = measured(gm, archs, config, rounds, runs, warmup)
    plain = accuracy(np.array([table.predict(a, corrected=False) for a in archs]), truth)
    if table.correction is not None:
        fitted = accuracy(np.array([table.predict(a, corrected=True) for a in archs]), truth)
        corrected = [f"{fitted[0]:.3f}", f"{fitted[1]:.0%}", f"{fitted[2]:+.1%}"]
    else:
        corrected = ["n/a"] * 3
    if shifts is not None and config.space == "nb201":
        shifts += choice_shift(config, archs, np.array([table.predict(a) for a in archs]), truth)
    distinct = len({e["signature"] for e in table.entries}) + len(table.sums)
    row = [config.name, len(archs), f"{np.median(truth):.3f}", f"{truth.min():.3f}-{truth.max():.3f}",
           f"{plain[0]:.3f}", f"{plain[1]:.0%}", f"{plain[2]:+.1%}", *corrected,
           f"{build_s:.1f}", distinct, builds, len(table.unstable)]
    print(row, flush=True)
    return row


HEADERS = ["space (width, cells, input, batch)", "archs", "median ms", "range ms", "rho", "within 10%",
           "median err", "rho (corr.)", "within 10% (corr.)", "median err (corr.)", "table build s",
           "ops timed", "builds", "unstable"]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny NB201 and 4 archs (seconds), for the test")
    parser.add_argument("--out", help="write the table into this folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    configs, n, rounds, runs, warmup, calibration = (
        (QUICK, 4, 2, 3, 1, 3) if args.quick else (CONFIGS, ARCHS, ROUNDS, RUNS, WARMUP, CALIBRATION))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        shifts: list = []
        rows = [run(c, n, rounds, runs, warmup, calibration, cache, shifts) for c in configs]
    command = "benchmarks/bench_latency.py" + (" --quick" if args.quick else "")
    notes = notes_text(command, time.perf_counter() - start, calibration, rounds, runs, warmup)
    notes += ("\n\n## How far the predictor moves a latency-limited choice (NB201)\n\n"
              + markdown(SHIFT_HEADERS, shifts) + "\n\nFor each limit (a quartile of the validation archs' "
              "measured ms), the most accurate validation arch by the NB201 table (CIFAR-10 test, 200 epochs) "
              "within it by predicted ms (`predict`, corrected) against by measured ms: 'same arch', the table "
              "accuracy the predicted pick gives up, and by how much the predicted pick breaks the limit when "
              "measured (0: it keeps it).")
    title = "Latency predictor vs measured onnxruntime latency (1 thread)"
    if args.out is None:
        return save("latency", title, HEADERS, rows, notes)
    path = Path(args.out) / "latency.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\nMachine: {machine()}\n\n{markdown(HEADERS, rows)}\n\n{notes}\n")
    return path


def notes_text(command: str, seconds: float, calibration: int, rounds: int, runs: int, warmup: int) -> str:
    return (
        f"Command: `.venv/bin/python {command}` ({seconds / 60:.1f} min in all). Per row: a fresh "
        f"`LatencyTable.build` (onnxruntime, 1 thread, {calibration} calibration archs; 'ops timed' counts "
        f"the distinct op and sum timings it took, 'table build s' the seconds of the last build; a table with "
        f"unstable timings is not cached, so it is built again, up to {BUILDS} 'builds' in all, and "
        f"'unstable' counts those left in the table used); random archs disjoint from "
        f"the calibration archs, each derived, exported and timed end to end in {rounds} alternating rounds "
        f"of {runs} calls after {warmup} (median of round medians, thread CPU time). 'rho' is Spearman's "
        f"rank correlation of predicted and measured ms, 'within 10%' the share of archs whose prediction is "
        f"within +-10 % of the measured ms, 'median err' the median of predicted/measured - 1. Plain: "
        f"`predict(arch, corrected=False)`, fixed part + sum of the table's op and sum times. Corrected: "
        f"`predict(arch)` (the default), the line of least absolute relative error through the calibration "
        f"archs. Targets on NB201: rho >= {TARGET_RHO}, >= {TARGET_WITHIN:.0%} within 10 %. The machine is "
        f"shared with other jobs (load average {load():.1f} at the end), so absolute times drift between the "
        f"table's build and the validation timings."
    )


def load() -> float:
    import os

    return os.getloadavg()[0]


if __name__ == "__main__":
    main()
