"""A known answer on a small OFA space: Kendall tau of supernet estimates against subnets trained from scratch.

Issue 28's third target at CPU scale. The space is Once-for-All's MobileNetV3
(``gmgraph.spaces.ofa``) at width 0.25 with ``--downsamplings`` (default 1)
stride-2 layers on ``--dataset`` (default the 1x8x8 digits), each stage's
depth **restricted** (``gmgraph.passes.restrict``) to ``--depths`` (default
d2,d3,d4: free), so the free labels are those depths and the kernel
(k3/k5/k7) and expansion (e3/e4/e6) of every block that runs: about 2.2e19
subnets (``--depths d2``: the 20 labels of 10 blocks, 3^20).

* **Ground truth**: ``--archs`` subnets sampled with a fixed seed, each
  ``derive(..., inherit=False)`` and trained from scratch with
  ``groundtruth_lib.fit`` (the NB201 ground truths' recipe: SGD Nesterov,
  cosine to 0 per batch) for ``--gt-epochs`` epochs at ``--gt-lr`` (defaults
  6 and 0.2: the pilot's setting whose seeds agreed), with each of
  ``--gt-seeds`` seeds; accuracy on val and test, pooled (weighted by size)
  and averaged over seeds. Its self-agreement is the Kendall tau of seed
  against seed (every pair), with a 95% bootstrap interval over architectures.
* **Supernet estimates**: per method and seed, the supernet (the same
  restricted space, initialised from the seed) is trained ``--epochs``
  epochs with ``gmgraph.train.run_fewshot``; each subnet's estimate is its
  val accuracy inside its leaf supernet after BN recalibration on fixed
  training batches, ties broken by the val loss (as ``benchmarks/ranking.py``).
  Methods: ``uniform`` (single path), ``sandwich`` (largest + smallest + 2
  random, in-place distillation), ``shrink`` (uniform with progressive
  shrinking in OFA's order, ``full,kernel,depth,width``; no depth phase
  when the depth is fixed), ``gm`` and ``random`` (uniform, then one
  few-shot split of one kernel label into 2 groups half-way; gradient
  matching chooses the partition, ``random`` draws one).
* **Statistics** (``ranking_stats``, ``ranking_summary``): tau per seed
  against the ground truth's mean, a two-level bootstrap interval (seeds and
  architectures); every method paired with ``uniform`` by seed, and ``gm``
  with ``random``: mean difference, interval, Wilcoxon p, Holm over the
  family, and the minimum detectable effect.

Rows are saved as they finish (``<workdir>/groundtruth.csv``,
``<workdir>/estimates.csv``, atomically); a rerun skips what is there and
adds the rest, so ``--gt-seeds 3`` after a 2-seed run trains only seed 2.
``<workdir>/settings.json`` records what the rows depend on (space, data,
schedules); a workdir whose rows came from other settings is refused.

Run: ``.venv/bin/python benchmarks/ofa_ranking.py`` (``--quick``: tiny
synthetic data and schedule, for the test). Writes benchmarks/results/ofa_ranking.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import groundtruth_lib as local  # noqa: E402
import ranking_stats as rs  # noqa: E402
from ranking_jobs import accuracy_and_loss  # noqa: E402
from ranking_summary import paired_difference  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import module_copy  # noqa: E402
from gmgraph.config import FewShotConfig, TrainConfig  # noqa: E402
from gmgraph.errors import ConfigError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402
from gmgraph.passes.derive import derive  # noqa: E402
from gmgraph.passes.restrict import restrict  # noqa: E402
from gmgraph.search.evaluation import recalibrate_bn  # noqa: E402
from gmgraph.spaces import ofa  # noqa: E402
from gmgraph.train.fewshot import locate, run_fewshot  # noqa: E402

METHODS = ("uniform", "sandwich", "shrink", "gm", "random")
BASELINE = "uniform"
SPLIT_LABEL = "s1.b1.kernel"
DEPTHS = ("d2", "d3", "d4")  # --depths default: every stage free to run 2, 3 or 4 blocks
DOWNSAMPLINGS = 1  # --downsamplings default
DATASET = "digits"  # --dataset default
GT_EPOCHS = 6  # --gt-epochs default
GT_LR = 0.2  # --gt-lr default (0.1 and 0.05 left seeds disagreeing in the pilot)
GT_FIELDS = ("arch", "seed", "val", "test", "val_loss", "params", "seconds")
EST_FIELDS = ("method", "seed", "index", "arch", "estimate", "loss", "cost", "seconds")
BN_BATCHES = 4
N_BOOT = 2000


def space(seed: int = 0, in_channels: int = 1, num_classes: int = 10, depths: tuple[str, ...] = DEPTHS,
          downsamplings: int = DOWNSAMPLINGS) -> torch.fx.GraphModule:
    """The OFA supernet with every stage's depth restricted to ``depths``, initialised from ``seed`` alone.

    Example:
        >>> gm = space(depths=("d2",))
        >>> len(gmgraph.space(gm)), sorted({ops for ops in gmgraph.space(gm).values()})[0]
        (25, ('d2',))
        >>> again = space(depths=("d2",))
        >>> gm is again, torch.equal(next(gm.parameters()), next(again.parameters())), "s1.b3.kernel" in gm.meta["dropped_labels"]
        (False, True, True)
        >>> free = space(depths=("d2", "d4"))
        >>> len(gmgraph.space(free)), gmgraph.space(free)["s5.depth"]
        (45, ('d2', 'd4'))
    """
    key = (seed, in_channels, num_classes, tuple(depths), downsamplings)
    if key not in _SPACES:  # built once per process, handed out as copies (a copy is cheaper than a build)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gm = gmgraph.trace(ofa.supernet(num_classes=num_classes, width_mult=0.25,
                                            strides=ofa.strides_for(downsamplings), divisor=4,
                                            in_channels=in_channels))
            _SPACES[key] = restrict(gm, {f"s{s}.depth": tuple(depths) for s in range(1, ofa.STAGES + 1)})
    return module_copy.deepcopy(_SPACES[key])  # copy.deepcopy's copy, about 4x sooner


_SPACES: dict[tuple, torch.fx.GraphModule] = {}


def parse_depths(text: str) -> tuple[str, ...]:
    """The ``--depths`` option: OFA depth labels, comma-separated, in OFA's order.

    Example:
        >>> parse_depths("d4, d2")
        ('d2', 'd4')
        >>> parse_depths("d5")
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: --depths 'd5': each depth is one of d2, d3, d4 (comma-separated, e.g. d2,d3,d4)
    """
    allowed = [f"d{d}" for d in ofa.DEPTHS]
    got = {d.strip() for d in text.split(",") if d.strip()}
    if not got or not got <= set(allowed):
        raise ConfigError(f"--depths {text!r}: each depth is one of {', '.join(allowed)} (comma-separated, "
                          "e.g. d2,d3,d4)")
    return tuple(d for d in allowed if d in got)


def subnet_count(depths: tuple[str, ...]) -> int:
    """Distinct subnets when every stage's depth is one of ``depths`` (a block past the depth has no choice).

    Example:
        >>> subnet_count(("d2",)) == 3 ** 20, subnet_count(("d2", "d3", "d4")) == (9**2 + 9**3 + 9**4) ** 5
        (True, True)
    """
    per_stage = sum((len(ofa.KERNELS) * len(ofa.EXPANSIONS)) ** int(d[1:]) for d in depths)
    return per_stage ** ofa.STAGES


def sample_archs(gm: torch.fx.GraphModule, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` distinct subnets of ``gm`` drawn uniformly by one generator seeded ``seed``.

    Example:
        >>> archs = sample_archs(space(), 3)
        >>> len({name(a) for a in archs}), archs == sample_archs(space(), 3)
        (3, True)
    """
    generator, out, seen = torch.Generator().manual_seed(seed), [], set()
    while len(out) < n:
        arch = gmgraph.sample(gm, generator)
        if name(arch) not in seen:
            seen.add(name(arch))
            out.append(arch)
    return out


def name(arch: dict[str, str]) -> str:
    """OFA's string of a subnet of the restricted space (blocks past the stage's depth are ``-``).

    Example:
        >>> name(sample_archs(space(depths=("d2",)), 1)[0]).count("d2:")
        5
        >>> sorted({part[:2] for part in name(sample_archs(space(depths=("d3", "d4")), 1)[0]).split("/")})
        ['d3', 'd4']
    """
    return ofa.to_str({**{label: "k3" if label.endswith("kernel") else "e3" for label in ofa.LABELS}, **arch})


# ------------------------------------------------------------------ rows on disk


def row_settings(args) -> dict[str, dict]:
    """What the rows depend on: ``truth`` (ground-truth rows) and ``supernet`` (estimate rows) settings."""
    both = {"dataset": args.dataset, "batch": args.batch, "depths": list(args.depths),
            "downsamplings": args.downsamplings}
    return {"truth": {**both, "gt_epochs": args.gt_epochs, "gt_lr": args.gt_lr},
            "supernet": {**both, "epochs": args.epochs, "steps": args.steps, "lr": args.lr, "rounds": args.rounds}}


ROW_FILES = {"truth": "groundtruth.csv", "supernet": "estimates.csv"}


def check_workdir(workdir: Path, settings: dict[str, dict]) -> None:
    """Record ``settings`` in ``workdir/settings.json``, or refuse a workdir whose rows came from others.

    Rows are keyed by arch and seed only, so rows of another space or schedule would mix silently.
    Each part (``truth``, ``supernet``) is checked only once its rows exist.

    Example:
        >>> import tempfile
        >>> work = Path(tempfile.mkdtemp())
        >>> check_workdir(work, {"truth": {"gt_epochs": 8}, "supernet": {"epochs": 12}})
        >>> _ = (work / "groundtruth.csv").write_text("arch,seed\\n")
        >>> check_workdir(work, {"truth": {"gt_epochs": 4}, "supernet": {"epochs": 12}})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: ... holds truth rows of gt_epochs 8, not 4; use another --workdir
    """
    path = workdir / "settings.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for part, now in settings.items():
        if not (workdir / ROW_FILES[part]).is_file():
            continue
        if part not in saved:
            raise ConfigError(f"{workdir} holds {part} rows without a settings.json (made before it was "
                              "written); use another --workdir")
        diff = [k for k in sorted(set(now) | set(saved[part])) if now.get(k) != saved[part].get(k)]
        if diff:
            raise ConfigError(f"{workdir} holds {part} rows of {', '.join(f'{k} {saved[part].get(k)}' for k in diff)}"
                              f", not {', '.join(str(now.get(k)) for k in diff)}; use another --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1) + "\n"))


def read_csv(path: Path) -> list[dict]:
    """The rows of one of the benchmark's CSVs (empty when it does not exist yet)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict]) -> None:
    """``rows`` as a CSV with columns ``fields``, written atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in fields} for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text.getvalue()))


# ------------------------------------------------------------------ ground truth


def train_subnet(gm, arch: dict[str, str], seed: int, loaders, epochs: int, lr: float) -> dict:
    """Train ``arch`` from scratch (``derive(inherit=False)``, weights and batch order from ``seed``)."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = derive(gm, arch, inherit=False)
    order = DataLoader(loaders.train.dataset, batch_size=loaders.train.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    local.fit(net, order, epochs, lr=lr, momentum=0.9, weight_decay=5e-4, grad_clip=5.0)
    val, val_loss = local.evaluate(net, loaders.val)
    return {"val": val, "test": local.evaluate(net, loaders.test)[0], "val_loss": val_loss,
            "params": sum(p.numel() for p in net.parameters()), "seconds": time.perf_counter() - start}


def ground_truth(path: Path, gm, archs: list[dict], seeds: list[int], loaders, epochs: int, lr: float,
                 deadline: float) -> list[dict]:
    """Every (arch, seed) row, training those not in ``path`` yet (saved after each) until ``deadline``."""
    rows = read_csv(path)
    done = {(r["arch"], int(r["seed"])) for r in rows}
    for seed, arch in itertools.product(seeds, archs):  # seed-major: a cut-off run leaves whole seeds
        if (name(arch), seed) in done or time.time() > deadline:
            continue
        rows.append({"arch": name(arch), "seed": seed, **train_subnet(gm, arch, seed, loaders, epochs, lr)})
        write_csv(path, GT_FIELDS, rows)
        print(f"truth {len(rows)}: seed {seed} {rows[-1]['arch']} val {rows[-1]['val']:.3f}", flush=True)
    return rows


def truth_table(rows: list[dict], archs: list[str], sizes: tuple[int, int]) -> dict[str, dict[int, float]]:
    """arch -> {seed: val and test accuracy pooled, weighted by the splits' sizes}."""
    table: dict[str, dict[int, float]] = {a: {} for a in archs}
    for r in rows:
        if r["arch"] in table:
            pooled = (sizes[0] * float(r["val"]) + sizes[1] * float(r["test"])) / sum(sizes)
            table[r["arch"]][int(r["seed"])] = pooled
    return table


def self_agreement(table: dict[str, dict[int, float]], seeds: list[int]) -> dict:
    """Kendall tau of seed against seed (mean over pairs), with a 95% bootstrap interval over architectures.

    Every pair's bootstrap draws the same architecture resamples (same seed and shape), so their
    mean per draw is the bootstrap of the mean.

    Example:
        >>> t = {"a": {0: 0.1, 1: 0.2}, "b": {0: 0.2, 1: 0.1}, "c": {0: 0.3, 1: 0.3}}
        >>> out = self_agreement(t, [0, 1])
        >>> round(out["tau"], 3), out["pairs"]
        (0.333, 1)
    """
    complete = [accs for accs in table.values() if all(s in accs for s in seeds)]
    taus, draws = [], []
    for a, b in itertools.combinations(seeds, 2):
        x, y = np.array([[r[a] for r in complete]]), np.array([r[b] for r in complete])
        taus.append(rs.kendall_tau(x[0], y))
        draws.append(rs.bootstrap_taus(x, y, n_boot=N_BOOT, seed=0))
    if not taus:
        return {"tau": float("nan"), "ci": (float("nan"), float("nan")), "pairs": 0, "n": len(complete)}
    mean_draws = np.mean(draws, axis=0)
    return {"tau": float(np.mean(taus)), "ci": rs._percentiles(mean_draws[~np.isnan(mean_draws)], 0.95),
            "pairs": len(taus), "n": len(complete)}


# ------------------------------------------------------------------ supernet estimates


def method_configs(method: str, epochs: int, steps: int | None, lr: float, rounds: int,
                   depth: bool = False) -> tuple:
    """(FewShotConfig, TrainConfig, run_fewshot keywords) of one method (``depth``: the depth is free).

    Example:
        >>> few, train, extra = method_configs("gm", 8, None, 0.1, 4)
        >>> few.method, few.split_at, few.labels, train.sampler
        ('gm', (4,), ('s1.b1.kernel',), 'uniform')
        >>> method_configs("shrink", 12, None, 0.1, 4, depth=True)[1].shrink
        'full:2,kernel:2,depth:2+2,width:2+2'
    """
    base = {"epochs": epochs, "steps_per_epoch": steps, "lr": lr, "device": "cpu"}
    if method in ("uniform", "sandwich"):
        return FewShotConfig(method="oneshot"), TrainConfig(sampler=method, **base), {}
    if method == "shrink":
        return (FewShotConfig(method="oneshot"), TrainConfig(sampler="uniform", shrink=shrink_text(epochs, depth), **base),
                {"before_phase": ofa.before_phase})
    if method in ("gm", "random"):
        few = FewShotConfig(method=method, split_at=(max(1, epochs // 2),), groups=2, rounds=rounds,
                            labels=(SPLIT_LABEL,))
        return few, TrainConfig(sampler="uniform", **base), {"shared": ofa.shared_parameters}
    raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def shrink_text(epochs: int, depth: bool = False) -> str:
    """The progressive-shrinking schedule of ``epochs`` in OFA's order, full -> kernel -> (depth ->) width.

    Depth fixed: a quarter each for full, kernel, width (2 stages); under 4 epochs (quick runs) kernel
    for one epoch, then width. Depth free (``depth``): a sixth each for full and kernel, two for depth
    and two for width (2 stages each); under 6 epochs one epoch each of kernel, depth, width (as many
    as fit, the last takes the rest).

    Example:
        >>> shrink_text(12), shrink_text(2)
        ('full:3,kernel:3,width:3+3', 'kernel:1,width:1')
        >>> shrink_text(12, depth=True), shrink_text(4, depth=True), shrink_text(2, depth=True)
        ('full:2,kernel:2,depth:2+2,width:2+2', 'kernel:1,depth:1,width:2', 'kernel:1,depth:1')
    """
    if depth and epochs < 6:
        phases = ("kernel", "depth", "width")[:epochs]
        return ",".join(f"{p}:{1 if i < len(phases) - 1 else epochs - i}" for i, p in enumerate(phases))
    if depth:
        q = epochs // 6
        return f"full:{q},kernel:{q},depth:{q}+{q},width:{q}+{epochs - 5 * q}"
    if epochs < 4:
        return f"kernel:1,width:{max(1, epochs - 1)}"
    q = epochs // 4
    return f"full:{q},kernel:{q},width:{q}+{epochs - 3 * q}"


def run_method(method: str, seed: int, archs: list[dict], loaders, calib, args) -> list[dict]:
    """Train one supernet of ``method`` from ``seed`` and estimate every arch in its leaf: one row each."""
    start = time.perf_counter()
    few, train, extra = method_configs(method, args.epochs, args.steps, args.lr, args.rounds, len(args.depths) > 1)
    gm = space(seed, *shape(loaders), args.depths, args.downsamplings)
    result = run_fewshot(gm, loaders, few, train, seed=seed, quiet=True, **extra)
    rows = []
    for i, arch in enumerate(archs):
        net = derive(locate(result, arch).gm, arch)
        recalibrate_bn(net, calib)
        acc, loss = accuracy_and_loss(net, loaders.val)
        rows.append({"method": method, "seed": seed, "index": i, "arch": name(arch), "estimate": acc, "loss": loss,
                     "cost": result.budget})
    for row in rows:
        row["seconds"] = time.perf_counter() - start
    return rows


def estimates(path: Path, archs: list[dict], loaders, args, deadline: float) -> list[dict]:
    """Every (method, seed) job's rows, running those not in ``path`` yet (saved after each) until ``deadline``."""
    rows = read_csv(path)
    done = {(r["method"], int(r["seed"])) for r in rows}
    calib = calibration(loaders)
    for seed, method in itertools.product(range(args.seeds), args.methods):  # seed-major: pairs finish together
        if (method, seed) in done or time.time() > deadline:
            continue
        rows += run_method(method, seed, archs, loaders, calib, args)
        write_csv(path, EST_FIELDS, rows)
        print(f"supernet {method} seed {seed}: {float(rows[-1]['seconds']):.0f} s", flush=True)
    return rows


def calibration(loaders) -> list:
    """The fixed training batches every estimate recalibrates BN on."""
    order = DataLoader(loaders.train.dataset, batch_size=loaders.train.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(12345))
    return list(itertools.islice(order, BN_BATCHES))


def shape(loaders) -> tuple[int, int]:
    """(input channels, classes) of the data."""
    info = gmgraph.data.info(loaders)
    return info.shape[0], info.num_classes


# ------------------------------------------------------------------ statistics and the report


def by_method(rows: list[dict], archs: list[str]) -> dict[str, dict[int, dict]]:
    """method -> seed -> {"estimates", "losses"} in the order of ``archs`` (complete jobs only)."""
    out: dict[str, dict[int, dict]] = {}
    for (method, seed), group in itertools.groupby(sorted(rows, key=lambda r: (r["method"], int(r["seed"]))),
                                                   key=lambda r: (r["method"], int(r["seed"]))):
        got = {r["arch"]: r for r in group}
        if all(a in got for a in archs):
            out.setdefault(method, {})[seed] = {
                "estimates": [float(got[a]["estimate"]) for a in archs], "losses": [float(got[a]["loss"]) for a in archs],
                "cost": int(got[archs[0]]["cost"]), "seconds": float(got[archs[0]]["seconds"])}
    return out


def _mean_tau(taus) -> float:
    """The mean of the defined taus (a seed whose estimates are all equal has none); nan when none is.

    >>> _mean_tau([0.2, float("nan"), 0.4]), _mean_tau([float("nan")])
    (0.30000000000000004, nan)
    """
    defined = [t for t in taus if not np.isnan(t)]
    return float(np.mean(defined)) if defined else float("nan")


def method_rows(results: dict[str, dict[int, dict]], truth: np.ndarray) -> list[list]:
    """[method, seeds, tau per seed, mean tau, 95% interval, supernet self-consistency, cost, seconds]."""
    table = []
    for method in [m for m in METHODS if m in results]:
        seeds = sorted(results[method])
        matrix = np.array([rs.tiebroken(results[method][s]["estimates"], results[method][s]["losses"])
                           for s in seeds])
        taus = rs.kendall_tau_rows(matrix, truth)
        lo, hi = rs.tau_ci(matrix, truth, n_boot=N_BOOT)
        first = results[method][seeds[0]]
        table.append([method, len(seeds), " ".join(f"{t:.3f}" for t in taus), f"{_mean_tau(taus):.3f}",
                      f"{lo:.3f} to {hi:.3f}", f"{rs.self_consistency(matrix):.3f}", first["cost"],
                      f"{np.mean([results[method][s]['seconds'] for s in seeds]):.0f}"])
    return table


def comparisons(results: dict[str, dict[int, dict]], truth: np.ndarray) -> list[dict]:
    """Each method against uniform, and gm against random: paired by seed, Holm over the family."""
    pairs = [(m, BASELINE) for m in METHODS if m != BASELINE] + [("gm", "random")]
    found = [(a, b, paired_difference(results[a], results[b], truth, n_boot=N_BOOT))
             for a, b in pairs if a in results and b in results]
    found = [(a, b, d) for a, b, d in found if d]
    adjusted = rs.holm([d["p"] for _, _, d in found])
    return [{"method": a, "against": b, **d, "p_holm": p} for (a, b, d), p in zip(found, adjusted)]


def comparison_rows(found: list[dict]) -> list[list]:
    return [[f"{d['method']} - {d['against']}", d["paired"], " ".join(f"{x:+.3f}" for x in d["diffs"]),
             f"{d['diff_mean']:+.3f}", f"{d['diff_ci'][0]:+.3f} to {d['diff_ci'][1]:+.3f}",
             f"{d['diff_ci_seeds'][0]:+.3f} to {d['diff_ci_seeds'][1]:+.3f}", f"{d['p']:.3f}", f"{d['p_holm']:.3f}",
             "n/a" if not np.isfinite(d["mde"]) else f"{d['mde']:.3f}"] for d in found]


def report(args, argv: list[str], gt_rows: list[dict], est_rows: list[dict], archs: list[str], sizes, wall: float,
           complete: bool) -> str:
    """The markdown report: settings, ground truth and its self-agreement, the taus, the paired tests."""
    seeds = sorted({int(r["seed"]) for r in gt_rows})
    table = truth_table(gt_rows, archs, sizes)
    usable = [a for a in archs if table[a] and all(s in table[a] for s in seeds)]
    truth = np.array([np.mean(list(table[a].values())) for a in usable])
    agree = self_agreement(table, seeds)
    results = by_method(est_rows, usable) if len(usable) >= 2 else {}
    found = comparisons(results, truth) if results else []
    gt_secs = [float(r["seconds"]) for r in gt_rows]
    command = " ".join(["benchmarks/ofa_ranking.py", *argv])
    lines = ["# Kendall tau of supernet estimates on a small OFA space (issue 28)\n",
             f"Machine: {_table.machine()}\n",
             ("" if complete else "**PARTIAL**: the run stopped at its deadline; the tables use the finished rows.\n"),
             f"Command: `.venv/bin/python {command}` ({wall / 60:.1f} min this invocation; the rows it "
             f"reports took {sum(gt_secs) / 60:.1f} min of ground-truth training and "
             f"{supernet_seconds(est_rows) / 60:.1f} min of supernet training and estimates, all runs together).\n",
             settings_text(args, len(archs), sizes),
             "## Ground truth\n",
             _table.markdown(["archs (all seeds)", "seeds", "epochs", "s per training (mean)", "pooled acc min / mean / max",
                              "seed-vs-seed tau (pairs)", "95% interval (archs)", "seed sd within an arch",
                              "sd of the arch means"],
                             [[len(usable), " ".join(map(str, seeds)), args.gt_epochs,
                               f"{np.mean(gt_secs):.1f}" if gt_secs else "-",
                               f"{truth.min():.3f} / {truth.mean():.3f} / {truth.max():.3f}" if len(truth) else "-",
                               f"{agree['tau']:.3f} ({agree['pairs']})",
                               f"{agree['ci'][0]:.3f} to {agree['ci'][1]:.3f}", *spreads(table, usable)]]) + "\n",
             "## Kendall tau of each method's estimates against the ground truth's seed mean\n",
             _table.markdown(["method", "seeds", "tau per seed", "mean tau", "95% interval (seeds x archs)",
                              "self-consistency (seeds)", "cost (supernet-epochs)", "s per run"],
                             method_rows(results, truth)) + "\n",
             "## Paired differences of tau (by seed; Wilcoxon, Holm over the family)\n",
             _table.markdown(["comparison", "pairs", "diff per seed", "mean", "95% interval (seeds x archs)",
                              "95% interval (seeds)", "p", "p (Holm)", "MDE (80% power)"],
                             comparison_rows(found)) + "\n",
             "## Reading\n", reading(agree, results, truth, found)]
    return "\n".join(lines) + "\n"


def spreads(table: dict[str, dict[int, float]], archs: list[str]) -> list[str]:
    """[mean over archs of the seeds' sd (ddof 1), sd of the archs' seed means]: noise against signal.

    Example:
        >>> spreads({"a": {0: 0.5, 1: 0.7}, "b": {0: 0.6, 1: 0.8}}, ["a", "b"])
        ['0.141', '0.071']
    """
    if not archs or min(len(table[a]) for a in archs) < 2:
        return ["-", "-"]
    within = np.mean([np.std(list(table[a].values()), ddof=1) for a in archs])
    return [f"{within:.3f}", f"{np.std([np.mean(list(table[a].values())) for a in archs], ddof=1):.3f}"]


def supernet_seconds(rows: list[dict]) -> float:
    """Seconds of every supernet job in ``rows`` (each job's rows repeat its time)."""
    return sum({(r["method"], r["seed"]): float(r["seconds"]) for r in rows}.values())


def reading(agree: dict, results: dict, truth: np.ndarray, found: list[dict]) -> str:
    """The tables in words: the ceiling, each method's tau, and what each paired interval rules out.

    Example:
        >>> reading({"tau": 0.5, "ci": (0.3, 0.7), "pairs": 3, "n": 40}, {}, np.zeros(40), [])
        '- Ground truth: seed against seed, tau 0.500 (0.300 to 0.700): the ceiling of any estimate.\\n'
    """
    lines = [f"- Ground truth: seed against seed, tau {agree['tau']:.3f} ({agree['ci'][0]:.3f} to "
             f"{agree['ci'][1]:.3f}): the ceiling of any estimate."]
    if not agree["ci"][0] > 0:
        lines.append("- **The ground truth fails its self-agreement check**: its interval reaches 0, so the seeds do "
                     "not agree on any ranking of these subnets; the taus below measure agreement with noise and "
                     "cannot rank the methods.")
    for method in [m for m in METHODS if m in results]:
        seeds = sorted(results[method])
        matrix = np.array([rs.tiebroken(results[method][s]["estimates"], results[method][s]["losses"])
                           for s in seeds])
        lines.append(f"- {method}: mean tau {_mean_tau(rs.kendall_tau_rows(matrix, truth)):.3f} over "
                     f"{len(seeds)} seed(s).")
    for d in found:
        lo, hi = d["diff_ci"]
        floor = 2 / 2 ** d["paired"]  # the smallest two-sided exact Wilcoxon p with n pairs
        verdict = ("neither direction is excluded" if lo <= 0 <= hi else
                   f"{d['method']} {'above' if lo > 0 else 'below'} {d['against']} by the interval")
        lines.append(f"- {d['method']} - {d['against']}: {d['diff_mean']:+.3f} ({lo:+.3f} to {hi:+.3f}); "
                     f"differences outside that interval are unlikely, {verdict}; with {d['paired']} pairs the "
                     f"smallest possible Wilcoxon p is {floor:.3f}, so no test can be significant at 0.05"
                     if floor > 0.05 else
                     f"- {d['method']} - {d['against']}: {d['diff_mean']:+.3f} ({lo:+.3f} to {hi:+.3f}), "
                     f"Holm p {d['p_holm']:.3f}; {verdict}.")
    return "\n".join(lines) + "\n"


def settings_text(args, n_archs: int, sizes) -> str:
    blocks = ofa.STAGES * int(args.depths[-1][1:])
    free = ("the depth of each stage and " if len(args.depths) > 1 else "") + \
        f"kernel k3/k5/k7 and expansion e3/e4/e6 of the {blocks} blocks the deepest subnet runs"
    return (f"Space: `ofa.supernet(num_classes=10, width_mult=0.25, strides=ofa.strides_for({args.downsamplings}), "
            f"divisor=4, in_channels={args.in_channels})` restricted with `restrict(gm, {{'s<i>.depth': {tuple(args.depths)!r}}})` "
            f"for all 5 stages: {free}; {subnet_count(args.depths):.3g} distinct subnets. "
            f"Data: `{args.dataset}` (val {sizes[0]}, test {sizes[1]}), batch {args.batch}. "
            f"Ground truth: {n_archs} subnets sampled with seed 0, each `derive(..., inherit=False)` and trained "
            f"from scratch {args.gt_epochs} epochs (SGD Nesterov lr {args.gt_lr}, cosine to 0 per batch, "
            f"`groundtruth_lib.fit`), seeds {args.gt_seeds}; truth = val and test accuracy pooled, mean over seeds. "
            f"Supernets: {args.epochs} epochs{'' if args.steps is None else f' of {args.steps} steps'}, lr "
            f"{args.lr} (cosine to 0.001, `gmgraph.train` defaults otherwise), seeds 0..{args.seeds - 1}; "
            f"sandwich: largest + smallest + 2 random, distillation 1.0; shrink: `{shrink_text(args.epochs, len(args.depths) > 1)}`; "
            f"gm / random: one split of `{SPLIT_LABEL}` into 2 groups at epoch {max(1, args.epochs // 2)} "
            f"(gm: {args.rounds} gradient-matching rounds), each leaf trains the remaining epochs. Estimate: val "
            f"accuracy in the subnet's leaf after BN recalibration on {BN_BATCHES} fixed training batches, ties "
            f"broken by the val loss. Intervals: 95% percentile bootstrap, {N_BOOT} draws.\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=40, help="ground-truth subnets (default 40)")
    p.add_argument("--gt-seeds", type=int, default=3, help="training seeds of each subnet (default 3)")
    p.add_argument("--gt-epochs", type=int, default=GT_EPOCHS, help=f"epochs of each subnet (default {GT_EPOCHS})")
    p.add_argument("--gt-lr", type=float, default=GT_LR, help=f"ground-truth lr (default {GT_LR})")
    p.add_argument("--depths", default=None,
                   help=f"depths each stage may run (default {','.join(DEPTHS)}, with --quick d2: a deep subnet "
                        "trained 2 steps predicts one class; d2 alone fixes the depth)")
    p.add_argument("--downsamplings", type=int, default=DOWNSAMPLINGS,
                   help=f"stride-2 layers kept (ofa.strides_for; default {DOWNSAMPLINGS})")
    p.add_argument("--seeds", type=int, default=5, help="supernet seeds per method (default 5)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--epochs", type=int, default=12, help="supernet epochs (default 12)")
    p.add_argument("--steps", type=int, default=None, help="cap on supernet steps per epoch")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=4, help="gradient-matching rounds (default 4)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--dataset", default=DATASET, help=f"groundtruth_lib.load_data name (default {DATASET})")
    p.add_argument("--minutes", type=float, default=None, help="start no new job after this many minutes")
    p.add_argument("--workdir", type=Path, default=_table.RESULTS / "ofa_ranking")
    p.add_argument("--out", type=Path, default=_table.RESULTS, help="folder for ofa_ranking.md")
    p.add_argument("--quick", action="store_true", help="synthetic data, 4 archs, tiny schedules: for the test")
    args = p.parse_args(argv)
    if args.quick:
        args.archs, args.gt_seeds, args.gt_epochs, args.seeds = 4, 2, 1, 2
        args.epochs, args.steps, args.rounds, args.dataset, args.batch = 2, 1, 1, "synthetic", 32
        args.downsamplings = 1
        args.depths = "d2" if args.depths is None else args.depths
    args.depths = parse_depths(",".join(DEPTHS) if args.depths is None else args.depths)
    args.gt_seeds = list(range(args.gt_seeds))
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    return args


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    deadline = start + 60 * args.minutes if args.minutes is not None else float("inf")
    loaders = local.load_data(args.dataset, args.batch)
    sizes = gmgraph.data.info(loaders).sizes[1:]
    args.in_channels = shape(loaders)[0]
    check_workdir(args.workdir, row_settings(args))
    gm = space(0, *shape(loaders), args.depths, args.downsamplings)
    archs = sample_archs(gm, args.archs)
    gt = ground_truth(args.workdir / "groundtruth.csv", gm, archs, args.gt_seeds, loaders, args.gt_epochs,
                      args.gt_lr, deadline)
    est = estimates(args.workdir / "estimates.csv", archs, loaders, args, deadline)
    complete = (len(gt) == len(archs) * len(args.gt_seeds)
                and len({(r["method"], r["seed"]) for r in est}) == len(args.methods) * args.seeds)
    text = report(args, argv, gt, est, [name(a) for a in archs], sizes, time.time() - start, complete)
    print(text)
    path = args.out / "ofa_ranking.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


if __name__ == "__main__":
    main()
