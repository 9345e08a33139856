"""Ranking quality of one-shot and few-shot supernets against local ground truth, at equal budgets.

Run: ``.venv/bin/python benchmarks/ranking.py`` (after ``benchmarks/groundtruth.py``);
``--quick`` checks the pipeline in seconds. Every method trains an NB201
supernet of the ground truth's size (C, N) on the ground truth's data for the
same number of supernet-epochs (one epoch of one (sub-)supernet = 1), then
estimates the accuracy of every ground-truth architecture on the val split
(weights inherited from its sub-supernet, BatchNorm recalibrated on fixed
training batches) and compares the estimates with the true mean accuracy
(Kendall tau, Spearman rho, precision of the top 10%), mean ± std over seeds.

Equal budgets: one-shot methods train ``budget`` epochs; exhaustive few-shot
splits the first edge once (5 leaves) and 2-way splitters (GM, synflow metric,
random) split twice (4 leaves), each with as many epochs as make the same
budget. Writes ``benchmarks/results/ranking.md``, the per-architecture
estimates ``benchmarks/data/ranking_estimates.csv`` and, with matplotlib,
``benchmarks/results/ranking.png`` (``--plot-only`` redraws it from the CSV).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import groundtruth_lib as local  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.arch import parse_nb201  # noqa: E402
from gmgraph.errors import ConfigError, GmGraphError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402
from gmgraph.scores.zero_cost import zero_cost  # noqa: E402
from gmgraph.search.evaluation import evaluate_many  # noqa: E402
from gmgraph.search.ranking import summarize  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train.fewshot import FewShotConfig, locate, run_fewshot  # noqa: E402
from gmgraph.train.loop import TrainConfig  # noqa: E402

HERE = Path(__file__).resolve().parent
ESTIMATES = HERE / "data" / "ranking_estimates.csv"
PLOT = _table.RESULTS / "ranking.png"


@dataclass(frozen=True)
class Method:
    """One row of the table: a few-shot splitter, a training sampler, and its split tree's shape."""

    name: str
    method: str
    sampler: str = "uniform"
    fanout: int = 1  # children per split (exhaustive: one per op of the first edge)
    splits: int = 0  # split points: at first_split, 2 * first_split, ...


METHODS = (
    Method("one-shot (uniform)", "oneshot"),
    Method("one-shot (PA&DA)", "oneshot", sampler="pada"),
    Method("few-shot exhaustive", "exhaustive", fanout=5, splits=1),
    Method("GM split", "gm", fanout=2, splits=2),
    Method("metric split (synflow)", "metric:synflow", fanout=2, splits=2),
    Method("random split", "random", fanout=2, splits=2),
)


def epochs_for(budget: int, split_at: tuple[int, ...], fanout: int) -> int:
    """Epochs of a schedule splitting every leaf ``fanout``-ways at ``split_at`` that cost ``budget``.

    >>> epochs_for(70, (10,), 5), epochs_for(70, (10, 20), 2), epochs_for(70, (), 1)
    (22, 30, 70)
    """
    spent = 0
    for epoch in itertools.count():
        if spent == budget and epoch > max(split_at, default=0):
            return epoch
        if spent >= budget:
            raise ConfigError(f"no schedule splitting at {list(split_at)} into {fanout} costs exactly {budget} "
                              "supernet-epochs; choose another --budget or --first-split")
        spent += fanout ** sum(s <= epoch for s in split_at)
    raise AssertionError("unreachable")


def schedule(m: Method, budget: int, first_split: int) -> tuple[int, tuple[int, ...]]:
    split_at = tuple(first_split * (i + 1) for i in range(m.splits))
    return epochs_for(budget, split_at, m.fanout), split_at


# ---------------------------------------------------------------- running


@dataclass
class Setup:
    """What every method shares: the ground truth, the data and the evaluation batches."""

    archs: list[str]
    truth: list[float]
    gt_settings: dict
    loaders: tuple
    calib: list
    args: argparse.Namespace


def setup(args: argparse.Namespace) -> Setup:
    gt = local.load_groundtruth(args.groundtruth)
    archs = list(gt)  # the file's (sample) order
    if args.archs:
        archs = archs[: args.archs]
    settings = json.loads(Path(args.groundtruth).with_suffix(".json").read_text())
    loaders = local.load_data(settings["dataset"], settings["schedule"]["batch_size"])
    order = DataLoader(loaders.train.dataset, batch_size=loaders.train.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(12345))
    calib = list(itertools.islice(order, args.bn_batches))  # the same BN batches for every child
    return Setup(archs, [gt[a] for a in archs], settings, loaders, calib, args)


def supernet(s: Setup, seed: int) -> torch.fx.GraphModule:
    sched, info = s.gt_settings["schedule"], data.info(s.loaders)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gmgraph.trace(nb201.supernet(sched["C"], sched["N"], info.num_classes, info.shape[0]))


def run_method(s: Setup, m: Method, seed: int) -> dict:
    """Train one method with one seed; estimate every ground-truth architecture."""
    a = s.args
    epochs, split_at = schedule(m, a.budget, a.first_split)
    config = FewShotConfig(method=m.method, split_at=split_at, groups=2, rounds=a.rounds,
                           metric_children=a.metric_children)
    train = TrainConfig(sampler=m.sampler, epochs=epochs, steps_per_epoch=a.steps_per_epoch)
    start = time.perf_counter()
    result = run_fewshot(supernet(s, seed), s.loaders, config, train, seed=seed, shared=nb201.shared_parameters,
                         quiet=True)
    trained = time.perf_counter() - start
    estimates = estimate(s, result)
    return {"method": m.name, "seed": seed, "epochs": epochs, "split_at": split_at, "budget": result.budget,
            "leaves": len(result.leaves), "estimates": estimates, "train_seconds": trained,
            "seconds": time.perf_counter() - start, **measure(estimates, s.truth)}


def estimate(s: Setup, result) -> list[float]:
    """Accuracy of each ground-truth architecture on the val split, in its own leaf."""
    archs = [parse_nb201(a) for a in s.archs]
    by_leaf: dict[str, list[int]] = {}
    for i, arch in enumerate(archs):
        by_leaf.setdefault(locate(result, arch).id, []).append(i)
    out = [0.0] * len(archs)
    for leaf in result.leaves:
        idx = by_leaf.get(leaf.id, [])
        accs = evaluate_many(leaf.gm, [archs[i] for i in idx], s.loaders.val, calib_loader=s.calib,
                             bn_batches=len(s.calib))
        for i, acc in zip(idx, accs):
            out[i] = acc
    return out


def measure(estimates: list[float], truth: list[float]) -> dict:
    try:
        return summarize(estimates, truth, k=0.1)
    except GmGraphError:  # constant estimates (a tiny quick run): no ranking at all
        return {"kendall_tau": float("nan"), "spearman": float("nan"), "top_k_precision": float("nan")}


def zero_cost_rows(s: Setup) -> list[dict]:
    """Untrained baselines at the ground truth's size: parameters and synflow (budget 0)."""
    gm = supernet(s, 0)
    x = next(iter(s.loaders.val))[0][:1]
    rows = []
    for metric in ("params", "synflow"):
        start = time.perf_counter()
        scores = [zero_cost(gm, parse_nb201(a), metric, (x, None)) for a in s.archs]
        rows.append({"method": f"zero-cost {metric} (untrained)", "seed": 0, "budget": 0, "estimates": scores,
                     "seconds": time.perf_counter() - start, **measure(scores, s.truth)})
    return rows


# ---------------------------------------------------------------- reporting


def _stat(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs]
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table_rows(s: Setup, runs: list[dict], ceilings: dict) -> list[list]:
    rows = []
    for label, c in ceilings.items():
        if c is None:  # e.g. a seed whose accuracies are all equal: a correlation is undefined
            rows.append([f"ceiling: {label}", "-", "-", "undefined", "undefined", "-", "-"])
        else:
            rows.append([f"ceiling: {label}", "-", "-", f"{c['kendall_tau']:.3f}", f"{c['spearman']:.3f}", "-", "-"])
    for name in dict.fromkeys(r["method"] for r in runs):
        group = [r for r in runs if r["method"] == name]
        first = group[0]
        shape = "-" if "epochs" not in first else f"{first['epochs']} epochs"
        if first.get("split_at"):
            shape += f", split at {', '.join(map(str, first['split_at']))}"
        rows.append([name, first["budget"], shape, _stat(group, "kendall_tau"), _stat(group, "spearman"),
                     _stat(group, "top_k_precision"), f"{statistics.mean(r['seconds'] for r in group):.0f}"])
    return rows


def notes(s: Setup, runs: list[dict], ceilings: dict) -> str:
    g, a = s.gt_settings, s.args
    seeds = len({r["seed"] for r in runs if "epochs" in r})
    text = (f"Ground truth: {len(s.archs)} NB201 architectures trained from scratch on {g['dataset']} "
            f"(C={g['schedule']['C']}, N={g['schedule']['N']}, {g['schedule']['epochs']} epochs, "
            f"seeds {g['seeds']}); true accuracy = mean over seeds of val+test accuracy "
            f"({Path(a.groundtruth).name}). Supernets have the same C and N and train on the same data "
            f"(SGD lr 0.05, cosine over each schedule, batch {g['schedule']['batch_size']}). Estimates: val "
            f"accuracy with weights inherited from the architecture's leaf, BN recalibrated on "
            f"{len(s.calib)} fixed training batches. Budget: {a.budget} supernet-epochs for every method; "
            f"first split at epoch {a.first_split}; GM with R={a.rounds} rounds and the NB201 shared set, "
            f"synflow metric with {a.metric_children} children per distance; all 2-way splits balanced. "
            f"Mean ± std over {seeds} seed(s); top-k = precision of the top 10%; seconds = mean wall time "
            f"per run (training + estimation) at {torch.get_num_threads()} thread(s).")
    text += ("\n\nCeilings: Kendall tau / Spearman rho between disjoint groups of training seeds of the "
             "ground-truth architectures (each group's accuracy averaged over its seeds; every split of the "
             "seeds, averaged). '1 seed vs 1 seed' is how well one training run predicts another; the "
             "half-vs-half row is how well a mean over half the seeds predicts the other half's mean. The "
             "true accuracy above averages all seeds, so it is somewhat less noisy than either half: an "
             "estimate could exceed the half-vs-half value a little, but not by much.")
    text += ("\n\nPlot (ranking.png, if matplotlib is installed): estimated vs true accuracy per "
             "architecture, the estimate averaged over the seeds (so its tau is higher than the per-seed mean "
             "in the table); zero-cost scores on a log axis; the few architectures at chance accuracy "
             "(disconnected cells) are left off the axes.")
    return text


def write_report(s: Setup, runs: list[dict], ceilings: dict, out: Path | None) -> Path:
    headers = ["method", "budget (supernet-epochs)", "schedule", "Kendall tau", "Spearman rho",
               "top-10% precision", "seconds"]
    title = "Ranking quality of one-shot vs few-shot supernets at equal budgets (local NB201 ground truth)"
    rows, text = table_rows(s, runs, ceilings), notes(s, runs, ceilings)
    if out is None:
        return _table.save("ranking", title, headers, rows, notes=text)
    body = f"# {title}\n\nMachine: {_table.machine()}\n\n{_table.markdown(headers, rows)}\n\n{text}\n"
    print(body)
    return atomic_write(out, lambda tmp: Path(tmp).write_text(body))


def write_estimates(s: Setup, runs: list[dict], path: Path) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["method", "seed", "arch", "estimate", "truth"])
    for r in runs:
        for arch, est, true in zip(s.archs, r["estimates"], s.truth):
            writer.writerow([r["method"], r["seed"], arch, f"{est:.6g}", f"{true:.6g}"])
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text.getvalue()))


def _zoom(ax, x: list[float], y: list[float]) -> int:
    """Limit the axes to the bulk of the points (2nd percentile and up); return how many fall outside.

    Architectures whose cell output is disconnected sit at chance accuracy
    and would otherwise squeeze every other point into a corner.
    """
    lo_x, lo_y = (sorted(v)[len(v) // 50] for v in (x, y))
    hi_x, hi_y = max(x), max(y)
    pad_x, pad_y = 0.05 * (hi_x - lo_x or 1), 0.05 * (hi_y - lo_y or 1)
    ax.set_xlim(lo_x - pad_x, hi_x + pad_x)
    ax.set_ylim(lo_y - pad_y, hi_y + pad_y)
    return sum(a < lo_x - pad_x or b < lo_y - pad_y for a, b in zip(x, y))


def plot(estimates: Path, out: Path) -> Path:
    """Estimated vs true accuracy, one panel per method (mean estimate over seeds).

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the ranking plot needs matplotlib, which is not installed "
                          "(pip install matplotlib); the table and estimates CSV are written without it") from None
    with estimates.open(newline="") as f:
        rows = list(csv.DictReader(f))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cols = 3
    fig, axes = plt.subplots(-(-len(methods) // cols), cols, figsize=(4 * cols, 3.4 * -(-len(methods) // cols)),
                             squeeze=False)
    for ax, name in zip(axes.flat, methods):
        per_arch: dict[str, list] = {}
        for r in rows:
            if r["method"] == name:
                per_arch.setdefault(r["arch"], [float(r["truth"])]).append(float(r["estimate"]))
        truth = [v[0] for v in per_arch.values()]
        est = [statistics.mean(v[1:]) for v in per_arch.values()]
        zero_cost = name.startswith("zero-cost")
        if zero_cost:  # scores span orders of magnitude (synflow); a log axis keeps them apart
            est = [math.log10(max(e, 1e-300)) for e in est]
        ax.scatter(truth, est, s=8, alpha=0.6)
        tau = measure(est, truth)["kendall_tau"]
        hidden = _zoom(ax, truth, est)
        extra = f", {hidden} off-axis" if hidden else ""
        ax.set_title(f"{name}\ntau {tau:.3f} of the seed-mean{extra}", fontsize=9)
        ax.set_xlabel("true accuracy (mean of seeds)")
        ax.set_ylabel("log10 score" if zero_cost else "estimated accuracy")
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groundtruth", type=Path, default=local.DEFAULT_PATH)
    p.add_argument("--budget", type=int, default=70, help="supernet-epochs per method (default 70)")
    p.add_argument("--first-split", type=int, default=10, help="epoch of the first split (default 10)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--archs", type=int, default=0, help="use only the first N ground-truth archs (0: all)")
    p.add_argument("--bn-batches", type=int, default=4)
    p.add_argument("--rounds", type=int, default=10, help="gradient-matching rounds R")
    p.add_argument("--metric-children", type=int, default=4)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--methods", nargs="+", default=None, help="names of a subset of methods (default all)")
    p.add_argument("--out", type=Path, default=None, help="report path (default benchmarks/results/ranking.md)")
    p.add_argument("--estimates", type=Path, default=None, help=f"per-arch CSV (default {ESTIMATES})")
    p.add_argument("--plot", choices=("auto", "yes", "no"), default="auto")
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from the estimates CSV")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny settings: checks the pipeline, not the numbers")
    args = p.parse_args(argv)
    if args.quick:  # every method, one seed, a handful of steps
        args.budget, args.first_split, args.seeds, args.bn_batches = 11, 1, 1, 1
        args.rounds, args.metric_children, args.steps_per_epoch = 1, 1, 2
        args.archs = args.archs or 10
        args.plot = "no" if args.plot == "auto" else args.plot
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    estimates_path = args.estimates or ESTIMATES
    plot_path = (args.out.with_suffix(".png") if args.out else PLOT)
    if args.plot_only:
        print(f"wrote {plot(estimates_path, plot_path)}")
        return {}
    s = setup(args)
    methods = [m for m in METHODS if args.methods is None or m.name in args.methods]
    runs = zero_cost_rows(s)
    for m in methods:
        schedule(m, args.budget, args.first_split)  # a budget no schedule meets fails before any training
    for seed, m in itertools.product(range(args.seeds), methods):
        r = run_method(s, m, seed)
        runs.append(r)
        print(f"{m.name} seed {seed}: tau={r['kendall_tau']:.3f} rho={r['spearman']:.3f} "
              f"top10={r['top_k_precision']:.2f} budget={r['budget']} leaves={r['leaves']} "
              f"{r['seconds']:.0f}s", flush=True)
        if r["budget"] != args.budget:
            raise AssertionError(f"{m.name} spent {r['budget']} supernet-epochs, not {args.budget}")
    runs.sort(key=lambda r: [x.name for x in METHODS].index(r["method"]) if "epochs" in r else -1)
    ceilings = seed_ceilings(args.groundtruth, len(s.gt_settings["seeds"]))
    report = write_report(s, runs, ceilings, args.out)
    write_estimates(s, runs, estimates_path)
    if args.plot == "yes" or (args.plot == "auto" and _has_matplotlib()):
        print(f"wrote {plot(estimates_path, plot_path)}")
    elif args.plot == "auto":
        print("note: matplotlib is not installed; no plot (rerun with --plot-only once it is)")
    return {"report": report, "runs": runs, "ceilings": ceilings}


def seed_ceilings(path: Path, seeds: int) -> dict[str, dict | None]:
    """Seed-vs-seed and half-vs-half agreement of the ground truth (None where undefined)."""
    out = {}
    for k in dict.fromkeys((1, seeds // 2)):
        if k < 1:
            continue
        label = "1 seed vs 1 seed" if k == 1 else f"{k}-seed mean vs {k}-seed mean"
        try:
            out[label] = local.seed_agreement(path, per_side=k)
        except GmGraphError:
            out[label] = None
    return out


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


if __name__ == "__main__":
    main()
