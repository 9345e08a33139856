"""What each method hands a user: the architecture its supernet ranks first, and how good it truly is.

Issue 30's first question, answered on the ranking benchmark's own runs
(``benchmarks/ranking.py``): the same jobs, ground truth (155 NB201
architectures trained from scratch on digits16 for 40 epochs, 6 seeds) and
statistics. For every method and seed, the search is the exhaustive one over
the ground truth's architectures: the architecture whose supernet estimate is
highest (ties broken by the lower validation loss, as the ranking does). Its
true accuracy needs no new training: every candidate was trained from scratch
with the ground truth's protocol, so the truth of the pick *is* the from-scratch
result (a mean over 6 training seeds).

Per method, over its seeds:

* the chosen architecture's true accuracy (mean, 95% bootstrap interval over seeds);
* its percentile among the 155 (the share of architectures it is at least as good as);
* regret: the best architecture's truth minus the pick's;
* precision@5 and @10: how many of the estimate's top k are in the truth's top k, over k;
* how often the same architecture is chosen across seeds (the modal pick's share);
* cost: supernet-epochs and the runs' mean wall time (from the ranking summary);
* the paired difference of the pick's true accuracy to one-shot uniform of the same seed,
  with Wilcoxon's signed-rank test, Holm-corrected over the methods of each cell.

What it does not measure: a search over the whole space (15,625 architectures) with
evolution, whose pick has no from-scratch truth here. Within the 155 the argmax is
the best that search could do with these estimates.

Run: ``.venv/bin/python benchmarks/outcome.py`` (seconds; reads
``benchmarks/data/ranking_estimates.csv.gz`` and ``ranking_summary.json``, written by
``ranking.py``). Writes ``benchmarks/results/outcome.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import ranking_stats as rs  # noqa: E402
from ranking_plots import ALPHA  # noqa: E402
from ranking_protocol import METHODS  # noqa: E402
from ranking_report import label  # noqa: E402

HERE = Path(__file__).resolve().parent
ESTIMATES = HERE / "data" / "ranking_estimates.csv.gz"
SUMMARY = HERE / "data" / "ranking_summary.json"
BASELINE = "oneshot"
TOP_K = rs.TOP_K


def read_estimates(path: Path) -> dict[tuple[str, int, str], dict[int, dict]]:
    """(rule, cell, method) -> seed -> {"archs", "estimate", "loss", "truth"} arrays, in the file's arch order.

    Example:
        >>> runs = read_estimates(ESTIMATES)
        >>> run = runs[("a", 40, "oneshot")][0]
        >>> len(run["archs"]), bool(run["truth"].max() <= 1.0)
        (155, True)
    """
    opener = gzip.open if path.suffix == ".gz" else open
    runs: dict = defaultdict(lambda: defaultdict(lambda: {"archs": [], "estimate": [], "loss": [], "truth": []}))
    with opener(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            run = runs[(row["rule"], int(row["cell"]), row["method"])][int(row["seed"])]
            run["archs"].append(row["arch"])
            for key in ("estimate", "loss", "truth"):
                run[key].append(float(row[key]) if row[key] != "" else float("nan"))
    return {key: {seed: {k: (v if k == "archs" else np.asarray(v)) for k, v in run.items()}
                  for seed, run in seeds.items()} for key, seeds in runs.items()}


def pick(run: dict) -> int:
    """Index of the architecture the estimate ranks first (ties: the lower loss, then the first).

    Example:
        >>> pick({"estimate": np.array([0.5, 0.9, 0.9]), "loss": np.array([1.0, 2.0, 1.5])})
        2
    """
    scores = rs.tiebroken(run["estimate"], run["loss"])
    return int(np.flatnonzero(scores == scores.max())[0])


def precision_at(run: dict, k: int) -> float:
    """Share of the estimate's top ``k`` (ties: the lower loss) that are in the truth's top ``k``.

    Example:
        >>> precision_at({"estimate": np.array([4., 3, 2, 1]), "loss": np.zeros(4), "truth": np.array([1., 4, 3, 2])}, 2)
        0.5
    """
    return rs.precision_at(rs.tiebroken(run["estimate"], run["loss"]), run["truth"], k)


def seed_outcome(run: dict) -> dict:
    """One seed's pick and its measures.

    Example:
        >>> out = seed_outcome({"archs": ["a", "b", "c"], "estimate": np.array([0.1, 0.3, 0.2]),
        ...                     "loss": np.zeros(3), "truth": np.array([0.9, 0.5, 0.7])})
        >>> out["arch"], out["truth"], round(out["regret"], 3), round(out["percentile"], 1), round(out["tau"], 3)
        ('b', 0.5, 0.4, 33.3, -1.0)
    """
    i = pick(run)
    truth = run["truth"]
    return {"arch": run["archs"][i], "truth": float(truth[i]), "regret": float(truth.max() - truth[i]),
            "percentile": 100.0 * float(np.mean(truth <= truth[i])),
            "tau": rs.kendall_tau(rs.tiebroken(run["estimate"], run["loss"]), truth),
            **{f"p@{k}": precision_at(run, k) for k in TOP_K}}


def method_outcome(seeds: dict[int, dict], base: dict[int, dict] | None, *, n_boot: int) -> dict:
    """Every seed's outcome, their means and intervals, and the pairing with ``base`` (one-shot) by seed."""
    per_seed = {seed: seed_outcome(run) for seed, run in sorted(seeds.items())}
    truths = [o["truth"] for o in per_seed.values()]
    arch, count, total = rs.modal_share([o["arch"] for o in per_seed.values()])
    row = {"seeds": len(per_seed), "truth": float(np.mean(truths)),
           "truth_ci": rs.bootstrap_mean_ci(truths, n_boot=n_boot),
           "percentile": float(np.mean([o["percentile"] for o in per_seed.values()])),
           "regret": float(np.mean([o["regret"] for o in per_seed.values()])),
           **{f"p@{k}": float(np.mean([o[f"p@{k}"] for o in per_seed.values()])) for k in TOP_K},
           "tau": float(np.mean([o["tau"] for o in per_seed.values()])),
           "modal": arch, "modal_count": count, "per_seed": per_seed}
    if base is not None:
        paired = sorted(set(per_seed) & set(base))
        row.update(paired_fields([per_seed[s]["truth"] - seed_outcome(base[s])["truth"] for s in paired],
                                 n_boot=n_boot))
    return row


def paired_fields(diffs: list[float], *, n_boot: int) -> dict:
    """A method's paired differences to the baseline (one per seed) as a table row's fields: their count, mean,
    95 % bootstrap interval, Wilcoxon p, wins and losses.

    Example:
        >>> f = paired_fields([0.02, 0.01, -0.01], n_boot=100)
        >>> f["paired"], round(f["diff"], 4), f["wins"], f["losses"]
        (3, 0.0067, 2, 1)
    """
    return {"paired": len(diffs), "diff": float(np.mean(diffs)), "diff_ci": rs.bootstrap_mean_ci(diffs, n_boot=n_boot),
            "p": rs.wilcoxon_p(diffs), "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}


def cell_outcomes(runs: dict, rule: str, cell: int, *, n_boot: int) -> dict[str, dict]:
    """method -> its outcome in one cell of the ranking protocol, Holm over the cell's comparisons."""
    methods = [m for (r, c, m) in runs if (r, c) == (rule, cell)]
    # Rule (b) spends one budget on every method; its baseline is one-shot over that budget (rule a's cell).
    base = runs.get((rule, cell, BASELINE)) or runs.get(("a", cell, BASELINE))
    out = {m: method_outcome(runs[(rule, cell, m)], None if m == BASELINE else base, n_boot=n_boot)
           for m in _ordered(methods)}
    compared = [m for m in out if "p" in out[m]]
    for m, adjusted in zip(compared, rs.holm([out[m]["p"] for m in compared])):
        out[m]["p_holm"] = adjusted
    return out


ORDER = tuple(key for m in METHODS for key in (m.key, m.key + ALPHA))
"""The tables' order: the ranking protocol's, each sampler's alpha pick after its supernet's pick."""


def _ordered(methods) -> list[str]:
    return sorted(set(methods), key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def method_label(method: str, rounds: dict) -> str:
    """The table's name of ``method``; ``<sampler>-alpha`` is that sampler's pick by its own architecture weights.

    Example:
        >>> method_label("darts-alpha", {}), method_label("gm", {"gm": 1})
        ('one-shot (DARTS), argmax of its alphas', 'GM split (R=1)')
    """
    if method.endswith(ALPHA):
        return f"{label(method[:-len(ALPHA)], None)}, argmax of its alphas"
    return label(method, rounds.get(method))


def costs(summary: dict) -> dict[tuple[str, int, str], tuple[float, float]]:
    """(rule, cell, method) -> (supernet-epochs, mean seconds per run), from the ranking summary."""
    return {(c["rule"], c["cell"], m["method"]): (m.get("cost"), m.get("seconds"))
            for c in summary["cells"] for m in c["methods"]}


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


HEADERS = ["method", "seeds", "true acc of the pick [95% CI]", "percentile", "regret", "precision@5",
           "precision@10", "Kendall tau", "same pick", "supernet-epochs", "s/run", "Δ acc vs one-shot [95% CI]",
           "wins/losses", "Wilcoxon p (Holm)"]


def cell_rows(outcomes: dict[str, dict], cost: dict, rule: str, cell: int, rounds: dict) -> list[list]:
    rows = []
    for method, o in outcomes.items():
        epochs, seconds = cost.get((rule, cell, method), (None, None))
        compared = "p" in o
        rows.append([
            method_label(method, rounds), o["seeds"], f"{o['truth']:.4f} {_ci(o['truth_ci'])}",
            f"{o['percentile']:.1f}", f"{o['regret']:.4f}", f"{o['p@5']:.2f}", f"{o['p@10']:.2f}", f"{o['tau']:.3f}",
            f"{o['modal_count']}/{o['seeds']}", "-" if epochs is None else epochs,
            "-" if seconds is None else f"{seconds:.0f}",
            f"{o['diff']:+.4f} {_ci(o['diff_ci'])}" if compared else "-",
            f"{o['wins']}/{o['losses']}" if compared else "-",
            f"{o['p']:.3g} ({o['p_holm']:.3g})" if compared else "-",
        ])
    return rows


def reading(outcomes: dict[str, dict], rounds: dict, alpha: float = 0.05, *,
            name: Callable[[str], str] | None = None, baseline: str = "one-shot") -> list[str]:
    """One line per method compared with the baseline: better, worse, or what the interval leaves open.
    ``name``: a method's name in the lines (default: the ranking benchmark's, :func:`method_label`);
    ``baseline``: what the differences are measured against, as the lines name it.

    Example:
        >>> reading({"gm": {"p": 0.01, "p_holm": 0.2, "diff": 0.01, "diff_ci": (0.002, 0.02)}}, {"gm": 1})
        ['GM split (R=1): not significant after Holm (p 0.2): +0.0100 [0.002, 0.020]; a difference beyond 0.0200 is unlikely.']
    """
    lines = []
    for method, o in outcomes.items():
        if "p" not in o:
            continue
        shown, (lo, hi) = (name or (lambda m: method_label(m, rounds)))(method), o["diff_ci"]
        if o["p_holm"] < alpha:
            verdict = "better than" if o["diff"] > 0 else "worse than"
            lines.append(f"{shown}: {verdict} {baseline} by {o['diff']:+.4f} true accuracy "
                         f"({_ci(o['diff_ci'])}, Holm p {o['p_holm']:.3g}).")
        else:
            lines.append(f"{shown}: not significant after Holm (p {o['p_holm']:.3g}): {o['diff']:+.4f} "
                         f"{_ci(o['diff_ci'])}; a difference beyond {max(abs(lo), abs(hi)):.4f} is unlikely.")
    return lines


ALPHA_NOTE = (" A sampler with architecture parameters (DARTS, GDAS, SNAS, ProxylessNAS) also has a row 'argmax of "
              "its alphas': the architecture its own weights rank first among the 155 (the highest sum of log "
              "softmax(alpha) over the labels), which is what that search hands over, besides its supernet's pick.")


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def render(runs: dict, summary: dict, *, n_boot: int, argv: list[str], estimates: Path = ESTIMATES) -> str:
    cost = costs(summary)
    rounds = {"gm": 1, "gm-large": 10}
    cells = sorted({(r, c) for (r, c, _) in runs if r in ("a", "b")})
    any_alpha = any(m.endswith(ALPHA) for (_, _, m) in runs)
    parts = [
        "# What each method hands a user: the true accuracy of the architecture it picks (issue 30)",
        "",
        f"Machine: {_table.machine()}",
        "",
        f"Command: `python benchmarks/outcome.py{' ' + ' '.join(argv) if argv else ''}` (reads the ranking "
        f"benchmark's estimates, `{_shown(estimates)}`; no training).",
        "",
        "Each seed of each method picks the architecture its supernet estimates best among the ground truth's 155 "
        "(ties: lower val loss). The pick's true accuracy is its from-scratch result (digits16, 40 epochs, mean of "
        "6 seeds), so no retraining is needed. Percentile: share of the 155 it is at least as good as. Regret: "
        f"best truth ({max(next(iter(s.values()))['truth'].max() for s in runs.values()):.4f}) minus the pick's. "
        "Precision@k: share of the estimate's top k in the truth's top k. Kendall tau: of the scores against the "
        "truth over the 155, mean over seeds (a sampler's alpha rows: how its own weights rank them). Same pick: the modal pick's count over "
        "seeds. Δ: paired by seed to one-shot uniform; Wilcoxon signed-rank, Holm over each table's methods; "
        f"95% percentile bootstrap over seeds ({n_boot} draws).{ALPHA_NOTE if any_alpha else ''}",
    ]
    for rule, cell in cells:
        outcomes = cell_outcomes(runs, rule, cell, n_boot=n_boot)
        title = (f"Rule (a), equal epochs per leaf lineage: E = {cell}" if rule == "a"
                 else f"Rule (b), equal supernet-epochs: {cell} (Δ against one-shot over the same {cell})")
        parts += ["", f"### {title}", "", _table.markdown(HEADERS, cell_rows(outcomes, cost, rule, cell, rounds)),
                  "", *[f"- {line}" for line in reading(outcomes, rounds)]]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> Path:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--estimates", type=Path, default=ESTIMATES)
    p.add_argument("--summary", type=Path, default=SUMMARY)
    p.add_argument("--out", type=Path, default=_table.RESULTS / "outcome.md")
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args(argv)
    runs = read_estimates(args.estimates)
    summary = json.loads(args.summary.read_text())
    text = render(runs, summary, n_boot=args.n_boot, argv=argv, estimates=args.estimates)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from gmgraph.files import atomic_write

    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    return args.out


if __name__ == "__main__":
    main()
