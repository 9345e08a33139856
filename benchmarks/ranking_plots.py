"""The ranking benchmark's figures, drawn from its saved summary JSON and estimates CSV (``--plot-only``).

Four PNGs beside the report: tau against supernet epochs with interval bands,
a forest plot of the paired differences, estimated against true accuracy, and
the op-count bias. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_protocol import METHODS  # noqa: E402
from ranking_report import label  # noqa: E402
from ranking_stats import kendall_tau  # noqa: E402

from gmgraph.errors import ConfigError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402

NAMES = ("tau_epochs", "forest", "scatter", "op_bias")


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("the ranking plots need matplotlib (pip install matplotlib); "
                          "the report and its data are written without them") from None
    return plt


def _save(fig, path: Path, *, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    fig.clf()
    return path


def _rounds(summary: dict) -> dict:
    return {r["method"]: r["rounds"] for c in summary["cells"] for r in c["methods"]}


def _tau_vs_epochs(summary: dict, path: Path) -> Path:
    """Mean tau with its 95% band against lineage epochs (rule a) and against total supernet-epochs.

    Log-2 epoch axes; rule (b) points (one budget) are spread a little sideways so they stay apart.
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    rounds = _rounds(summary)
    a_cells = [c for c in summary["cells"] if c["rule"] == "a"]
    keys = list(dict.fromkeys(r["method"] for c in summary["cells"] for r in c["methods"]))
    for i, key in enumerate(keys):
        color = f"C{i}"
        rows = [(c["cell"], r) for c in a_cells for r in c["methods"] if r["method"] == key]
        if rows:
            y = [r["tau_mean"] for _, r in rows]
            lo, hi = zip(*(r["tau_ci"] for _, r in rows))
            for ax, x in ((left, [e for e, _ in rows]), (right, [r["cost"] for _, r in rows])):
                ax.plot(x, y, "o-", color=color, label=label(key, rounds.get(key)) if ax is left else None)
                ax.fill_between(x, lo, hi, color=color, alpha=0.1)
        for c in summary["cells"]:
            for r in c["methods"]:
                if c["rule"] == "b" and r["method"] == key:
                    x = r["cost"] * 2 ** (0.03 * (i - len(keys) / 2))
                    right.errorbar([x], [r["tau_mean"]], yerr=[[r["tau_mean"] - r["tau_ci"][0]],
                                   [r["tau_ci"][1] - r["tau_mean"]]], fmt="s", mfc="none", color=color, capsize=3)
    for j, z in enumerate(summary["zero_cost"]):
        for ax in (left, right):
            ax.axhline(z["tau_mean"], color="0.5", ls=("--", ":", "-.")[j % 3], lw=1,
                       label=f"zero-cost {z['metric']} (untrained)" if ax is left else None)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    left.set_xticks(sorted(c["cell"] for c in a_cells))
    left.set_xlabel("epochs per leaf lineage E (rule a)")
    right.set_xlabel("total supernet-epochs (circles and bands: rule a; squares: rule b)")
    left.set_ylabel("Kendall tau vs ground truth\n(mean over seeds, 95% two-level band)")
    fig.legend(fontsize=7, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return _save(fig, path, layout=False)


def _forest(summary: dict, path: Path) -> Path:
    """Paired difference to one-shot per method and cell, with the two-level 95% interval."""
    plt = _pyplot()
    rounds = _rounds(summary)
    rows = [(c, r) for c in summary["cells"] for r in c["methods"] if "diff_mean" in r]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    for i, (_, r) in enumerate(rows):
        y = len(rows) - i
        lo, hi = r["diff_ci"]
        ax.plot([lo, hi], [y, y], color="C0")
        ax.plot([r["diff_mean"]], [y], "o", color="C3" if r.get("p_holm", 1) < summary["alpha"] else "C0")
    ax.set_yticks([len(rows) - i for i in range(len(rows))])
    ax.set_yticklabels([f"{c['rule']}{c['cell']}: {label(r['method'], rounds.get(r['method']))}"
                        f" (p={r.get('p_holm', float('nan')):.2g})" for c, r in rows], fontsize=7)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_xlabel("Δ Kendall tau vs one-shot (paired by seed; red: Holm p < alpha)")
    return _save(fig, path)


def _scatter(estimates: list[dict], summary: dict, path: Path) -> Path:
    """Estimated (mean over seeds) vs true accuracy per architecture, one panel per method of the primary cell."""
    plt = _pyplot()
    rule, cell = summary["primary"]
    order = [m.key for m in METHODS]  # a sampler's own alpha scores (``<method>-alpha``) are no accuracy estimate
    rows = [e for e in estimates if e["rule"] == rule and int(e["cell"]) == cell and e["method"] in order]
    keys = sorted(dict.fromkeys(e["method"] for e in rows), key=order.index)
    rounds = _rounds(summary)
    cols = 4
    fig, axes = plt.subplots(-(-len(keys) // cols) or 1, cols, figsize=(4 * cols, 3.3 * (-(-len(keys) // cols) or 1)),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        per_arch: dict[str, list[float]] = {}
        truth: dict[str, float] = {}
        for e in rows:
            if e["method"] == key:
                per_arch.setdefault(e["arch"], []).append(float(e["estimate"]))
                truth[e["arch"]] = float(e["truth"])
        x, y = [truth[a] for a in per_arch], [float(np.mean(v)) for v in per_arch.values()]
        ax.scatter(x, y, s=8, alpha=0.6)
        ax.set_title(f"{label(key, rounds.get(key))}\ntau of the seed-mean estimate {kendall_tau(y, x):.3f}", fontsize=9)
        ax.set_xlabel("true accuracy (mean of seeds)")
        ax.set_ylabel("estimated accuracy")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    return _save(fig, path)


def _op_bias(summary: dict, path: Path) -> Path:
    """Grouped bars: tau of each op's count vs the truth and vs each method's estimates."""
    plt = _pyplot()
    bias, rounds = summary["op_bias"], _rounds(summary)
    columns = list(bias)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(columns), 1)
    for i, c in enumerate(columns):
        x = np.arange(len(nb201.OPS)) + i * width
        ax.bar(x, [bias[c][op] for op in nb201.OPS], width, label=c if c == "ground truth" else label(c, rounds.get(c)),
               color="k" if c == "ground truth" else f"C{i}")
    ax.set_xticks(np.arange(len(nb201.OPS)) + 0.4 - width / 2)
    ax.set_xticklabels(nb201.OPS)
    ax.axhline(0, color="0.3", lw=1)
    ax.set_ylabel("Kendall tau of op count vs score")
    ax.legend(fontsize=7)
    return _save(fig, path)


ALPHA = "-alpha"
"""Suffix of the pseudo-method whose estimates are a sampler's own architecture log-probabilities."""


def write_estimates(results: list[dict], archs: list[str], truth: list[float], path: Path) -> Path:
    """Every estimate of every job, one CSV row per (job, architecture), gzipped: what the scatter plot draws.

    Zero-cost scores are rows of rule ``zc`` with the metric as the method; a sampler with architecture
    parameters adds rows of method ``<method>-alpha`` whose estimate is the architecture's log-probability
    under them (``ranking_jobs.alpha_scores``).
    Gzip (without a timestamp, so equal rows give equal bytes) keeps the full
    benchmark's 45,000 rows at 0.5 MB instead of 5.6 MB; ``gzip.open(path, "rt")``
    or pandas read it.

    Example:
        >>> import tempfile, ranking_summary
        >>> results, archs, truth = ranking_summary.example_results()
        >>> path = write_estimates(results, archs, truth.tolist(), Path(tempfile.mkdtemp()) / "e.csv.gz")
        >>> lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        >>> lines[0], len(lines)   # 8 trained results and 2 x 3 zero-cost scores, 6 archs each
        ('rule,cell,method,seed,arch,estimate,loss,truth', 85)
    """
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["rule", "cell", "method", "seed", "arch", "estimate", "loss", "truth"])
    for r in results:
        if r["kind"] == "zerocost":
            for metric, values in r["scores"].items():
                for arch, v, t in zip(archs, values, truth):
                    writer.writerow(["zc", 0, metric, r["seed"], arch, f"{v:.6g}", "", f"{t:.6g}"])
            continue
        for arch, e, loss, t in zip(archs, r["estimates"], r["losses"], truth):
            writer.writerow([r["rule"], r["cell"], r["method"], r["seed"], arch, f"{e:.6g}", f"{loss:.6g}", f"{t:.6g}"])
        for arch, a, t in zip(archs, r.get("alpha_scores") or (), truth):  # the sampler's own ranking
            writer.writerow([r["rule"], r["cell"], f"{r['method']}{ALPHA}", r["seed"], arch, f"{a:.8g}", "", f"{t:.6g}"])
    packed = gzip.compress(text.getvalue().encode(), mtime=0)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(packed))


def _read_estimates(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def draw_all(summary: dict, estimates: Path, prefix: Path) -> list[Path]:
    """Every figure, as ``<prefix>_<name>.png``; returns their paths.

    Raises:
        ConfigError: matplotlib is not installed.

    Example:
        >>> import tempfile, ranking_summary
        >>> results, archs, truth = ranking_summary.example_results()
        >>> s = ranking_summary.summarize(results, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
        >>> folder = Path(tempfile.mkdtemp())
        >>> estimates = write_estimates(results, archs, truth.tolist(), folder / "e.csv.gz")
        >>> [p.name for p in draw_all(s, estimates, folder / "ranking")]
        ['ranking_tau_epochs.png', 'ranking_forest.png', 'ranking_scatter.png', 'ranking_op_bias.png']
    """
    out = [_tau_vs_epochs(summary, Path(f"{prefix}_tau_epochs.png")),
           _forest(summary, Path(f"{prefix}_forest.png")),
           _scatter(_read_estimates(estimates), summary, Path(f"{prefix}_scatter.png")),
           _op_bias(summary, Path(f"{prefix}_op_bias.png"))]
    _pyplot().close("all")
    return out

