"""From the ranking benchmark's result files to its statistics: one JSON-able summary.

A *cell* is one comparison setting: rule (a) at ``E`` lineage epochs, or rule
(b) at a budget of ``B`` supernet-epochs (its one-shot rows are the rule (a)
runs of length ``B``: for one-shot both rules agree). Within a cell every
method is paired with one-shot (uniform) seed by seed, tested with the
Wilcoxon signed-rank test and Holm-corrected over the cell's methods (one
family per cell); every data-driven splitter is also paired with the random
split of its sampler the same way (``against_random_split``: does the choice
of split matter?), and every split trained with another sampler (``gm-darts``)
with its own sampler's one-shot run (``against_own_sampler``). Intervals: a two-level bootstrap over seeds and architectures
(``ranking_stats.tau_ci``). Architectures are ranked by
accuracy, ties broken by the validation loss (where the ground truth has it)::

    >>> results, archs, truth = example_results()
    >>> s = summarize(results, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
    >>> [(c["rule"], c["cell"], [r["method"] for r in c["methods"]]) for c in s["cells"]]
    [('a', 4, ['oneshot', 'random']), ('b', 8, ['oneshot', 'random'])]
    >>> row = s["cells"][0]["methods"][1]
    >>> row["tau_mean"], row["diff_mean"], row["p"], row["p_holm"]
    (-1.0, -2.0, 0.5, 0.5)
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ranking_stats as rs  # noqa: E402
from ranking_protocol import BASELINE, METHODS, ZERO_COST  # noqa: E402

from gmgraph.arch import format_nb201, parse_nb201  # noqa: E402
from gmgraph.nasbench import nb201 as table  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402

ALPHA = 0.05


def scores(result: dict) -> np.ndarray:
    """A result's estimates as ranking scores: accuracy, ties broken by the val loss.

    Example:
        >>> scores({"estimates": [0.5, 0.5, 0.9], "losses": [1.0, 2.0, 0.1]}).tolist()
        [2.0, 1.0, 3.0]
    """
    return rs.tiebroken(result["estimates"], result.get("losses"))


def cells(results: list[dict], epochs: Sequence[int], budget: int | None) -> dict[tuple[str, int], list[dict]]:
    """The results of each cell: ``("a", E)`` for each E, and ``("b", B)`` if there is a budget.

    Example:
        >>> rows = [{"kind": "oneshot", "rule": "a", "cell": 40}, {"kind": "fork", "rule": "b", "cell": 40}]
        >>> {k: len(v) for k, v in cells(rows, [40], 40).items()}
        {('a', 40): 1, ('b', 40): 2}
    """
    trained = [r for r in results if r["kind"] != "zerocost"]
    out = {("a", e): [r for r in trained if r["rule"] == "a" and r["cell"] == e] for e in epochs}
    if budget:
        out[("b", budget)] = [r for r in trained if (r["rule"] == "b" and r["cell"] == budget)
                              or (r["kind"] == "oneshot" and r["cell"] == budget)]
    return out


def job_seconds(result: dict) -> float:
    """A job's own time: its training (summed over the invocations of a job cut off and resumed) plus its
    estimates; a zero-cost job's wall time. ``seconds``, the last invocation's wall time alone, under-counts a
    resumed job.

    Example:
        >>> job_seconds({"seconds": 5.0, "train_seconds": 90.0, "estimate_seconds": 4.0})  # resumed near its end
        94.0
        >>> job_seconds({"seconds": 0.4})
        0.4
    """
    if "train_seconds" not in result:
        return float(result["seconds"])
    return float(result["train_seconds"] + result["estimate_seconds"])


def _by_seed(rows: list[dict], key: str) -> dict[int, dict]:
    return {r["seed"]: r for r in rows if r["method"] == key}


def method_row(rows: list[dict], key: str, truth: np.ndarray, *, n_boot: int,
               accuracy: np.ndarray | None = None) -> dict | None:
    """Every statistic of one method in one cell (None when it has no result there). ``truth``: the ranking
    scores the estimates are compared with; ``accuracy``: the true accuracies (for the top-1's, if given).

    Example:
        >>> results, archs, truth = example_results()
        >>> row = method_row(cells(results, [4], None)[("a", 4)], "oneshot", truth, n_boot=20)
        >>> row["taus"], row["self_consistency"], "diff_mean" in row   # the baseline has no difference
        ([1.0, 1.0], 1.0, False)
    """
    mine, base = _by_seed(rows, key), _by_seed(rows, BASELINE)
    if not mine:
        return None
    seeds = sorted(mine)
    matrix = np.array([scores(mine[s]) for s in seeds])
    taus = rs.kendall_tau_rows(matrix, truth)
    first = mine[seeds[0]]
    row = {"method": key, "seeds": seeds, "taus": taus.tolist(), "tau_mean": float(np.nanmean(taus)),
           "tau_ci": rs.tau_ci(matrix, truth, n_boot=n_boot),
           "top20": float(np.nanmean([rs.top_fraction_tau(m, truth, 0.2) for m in matrix])),
           **rs.top_measures(matrix, truth, accuracy),
           "self_consistency": rs.self_consistency(matrix),
           "cost": first["cost"], "epochs": first["epochs"], "split_at": first["split_at"],
           "rounds": first.get("rounds"), "seconds": float(np.mean([job_seconds(mine[s]) for s in seeds])),
           "scoring_seconds": float(np.mean([mine[s]["scoring_seconds"] for s in seeds]))}
    if key != BASELINE:
        row.update(paired_difference(mine, base, truth, n_boot=n_boot))
    return row


def paired_difference(mine: dict[int, dict], base: dict[int, dict], truth: np.ndarray, *, n_boot: int) -> dict:
    """Tau of ``mine`` minus tau of ``base`` over the seeds both have: per seed, mean, intervals, p and MDE.

    Empty when they share no seed.

    Example:
        >>> results, archs, truth = example_results()
        >>> rows = cells(results, [4], None)[("a", 4)]
        >>> d = paired_difference(_by_seed(rows, "random"), _by_seed(rows, "oneshot"), truth, n_boot=20)
        >>> d["paired"], d["diffs"], d["p"]
        (2, [-2.0, -2.0], 0.5)
    """
    paired = sorted(s for s in mine if s in base)
    if not paired:
        return {}
    mine_m = np.array([scores(mine[s]) for s in paired])
    base_m = np.array([scores(base[s]) for s in paired])
    diffs = rs.kendall_tau_rows(mine_m, truth) - rs.kendall_tau_rows(base_m, truth)
    sd = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
    return {"paired": len(paired), "diffs": diffs.tolist(), "diff_mean": float(np.mean(diffs)), "diff_sd": sd,
            "diff_ci": rs.tau_ci(mine_m, truth, baseline=base_m, n_boot=n_boot),
            "diff_ci_seeds": rs.bootstrap_mean_ci(diffs, n_boot=n_boot),
            "p": rs.wilcoxon_p(diffs), "mde": rs.mde(sd, len(diffs), alpha=ALPHA)}


RANDOM_SPLIT = "random"
"""The splitter every other splitter is also paired with: does choosing the split beat splitting at random?"""


def random_split_for(key: str) -> str | None:
    """The random split whose supernets train with the sampler of method ``key`` (None: no such method).

    Example:
        >>> random_split_for("gm"), random_split_for("gm-darts"), random_split_for("darts2")
        ('random', 'random-darts', None)
    """
    m = next(m for m in METHODS if m.key == key)
    return next((r.key for r in METHODS if r.splitter == RANDOM_SPLIT and (r.sampler, r.darts_order)
                 == (m.sampler, m.darts_order)), None)


def paired_comparisons(rule: str, cell: int, rows: list[dict], truth: np.ndarray, pairs: Sequence[tuple[str, str]],
                       *, n_boot: int) -> dict:
    """Each ``(method, reference)`` pair's paired difference over the seeds both have, Holm-corrected within
    the cell; a pair with no seed in common is left out.

    Example:
        >>> results, archs, truth = example_results()
        >>> rows = cells(results, [4], None)[("a", 4)]
        >>> out = paired_comparisons("a", 4, rows, truth, [("random", "oneshot"), ("gm", "oneshot")], n_boot=20)
        >>> [(r["method"], r["versus"], r["diffs"], r["p_holm"]) for r in out["methods"]]
        [('random', 'oneshot', [-2.0, -2.0], 0.5)]
    """
    diffs = [(key, ref, paired_difference(_by_seed(rows, key), _by_seed(rows, ref), truth, n_boot=n_boot))
             for key, ref in pairs]
    methods = [{"method": key, "versus": ref, **diff} for key, ref, diff in diffs if diff]
    for r, adjusted in zip(methods, rs.holm([r["p"] for r in methods])):
        r["p_holm"] = adjusted
    return {"rule": rule, "cell": cell, "methods": methods}


def against_random_split(rule: str, cell: int, rows: list[dict], truth: np.ndarray, *, n_boot: int) -> dict:
    """Each data-driven splitter against the random split of the same seeds and sampler (``gm`` against
    ``random``, ``gm-darts`` against ``random-darts``), Holm-corrected within the cell.

    Few-shot gains over one-shot may come from splitting itself (more weights, less sharing) rather than
    from the choice of edge and grouping; this pairing separates the two.

    Example:
        >>> results, archs, truth = example_results()
        >>> rows = cells(results, [4], None)[("a", 4)]
        >>> gm = [dict(r, method="gm", estimates=[v / 10 for v in truth]) for r in rows if r["method"] == "random"]
        >>> out = against_random_split("a", 4, rows + gm, truth, n_boot=20)
        >>> [(r["method"], r["diff_mean"], r["p_holm"]) for r in out["methods"]]
        [('gm', 2.0, 0.5)]
    """
    pairs = [(m.key, random_split_for(m.key)) for m in METHODS if m.fanout > 1 and m.splitter != RANDOM_SPLIT]
    return paired_comparisons(rule, cell, rows, truth, [(k, r) for k, r in pairs if r], n_boot=n_boot)


def against_own_sampler(rule: str, cell: int, rows: list[dict], truth: np.ndarray, *, n_boot: int) -> dict:
    """Each few-shot method of another sampler than uniform against the one-shot run it forked from (its
    :attr:`~ranking_protocol.Method.base`: ``gm-darts`` against ``darts``), paired by seed and Holm-corrected
    within the cell as :func:`against_random_split`; no rows where no such method ran.

    Example:
        >>> results, archs, truth = example_results()
        >>> rows = cells(results, [4], None)[("a", 4)]
        >>> darts = [dict(r, method="darts") for r in rows if r["method"] == "oneshot"]
        >>> gm = [dict(r, method="gm-darts") for r in rows if r["method"] == "random"]
        >>> [(r["method"], r["versus"], r["diff_mean"]) for r in against_own_sampler("a", 4, rows + darts + gm,
        ...                                                                         truth, n_boot=20)["methods"]]
        [('gm-darts', 'darts', -2.0)]
        >>> against_own_sampler("a", 4, rows, truth, n_boot=20)["methods"]
        []
    """
    pairs = [(m.key, m.base) for m in METHODS if m.forked and m.base != BASELINE]
    return paired_comparisons(rule, cell, rows, truth, pairs, n_boot=n_boot)


def cell_summary(rule: str, cell: int, rows: list[dict], truth: np.ndarray, *, n_boot: int,
                 accuracy: np.ndarray | None = None) -> dict:
    """The methods of one cell, with Holm-adjusted p-values over the cell's comparisons (see the module)."""
    methods = [r for r in (method_row(rows, m.key, truth, n_boot=n_boot, accuracy=accuracy) for m in METHODS)
               if r is not None]
    compared = [r for r in methods if "p" in r]
    for r, adjusted in zip(compared, rs.holm([r["p"] for r in compared])):
        r["p_holm"] = adjusted
    return {"rule": rule, "cell": cell, "methods": methods}


def zero_cost_rows(results: list[dict], truth: np.ndarray, *, n_boot: int,
                   accuracy: np.ndarray | None = None) -> list[dict]:
    """Tau of each untrained proxy per seed (its supernet's initialisation), with a two-level interval.

    Example:
        >>> results, archs, truth = example_results()
        >>> [(z["metric"], z["tau_mean"]) for z in zero_cost_rows(results, truth, n_boot=20)]
        [('params', 1.0), ('synflow', -1.0), ('naswot', 1.0)]
    """
    zc = sorted((r for r in results if r["kind"] == "zerocost"), key=lambda r: r["seed"])
    out = []
    for metric in ZERO_COST:
        if not zc:
            break
        matrix = np.array([rs.tiebroken(r["scores"][metric]) for r in zc])
        taus = rs.kendall_tau_rows(matrix, truth)
        out.append({"metric": metric, "taus": taus.tolist(), "tau_mean": float(np.nanmean(taus)),
                    "tau_ci": rs.tau_ci(matrix, truth, n_boot=n_boot),
                    "top20": float(np.nanmean([rs.top_fraction_tau(m, truth, 0.2) for m in matrix])),
                    **rs.top_measures(matrix, truth, accuracy)})
    return out


def op_bias(rows: list[dict], archs: list[str], truth: np.ndarray, *,
            top: float | None = None) -> dict[str, dict[str, float]]:
    """Kendall tau of each op's count vs the truth and vs each method's estimates (mean over seeds).

    ``top`` (a fraction) measures it over the true top share only (the
    architectures that :func:`ranking_stats.top_fraction_tau` orders), where
    which ops win may differ from the whole range.

    Example:
        >>> results, archs, truth = example_results()
        >>> bias = op_bias(cells(results, [4], None)[("a", 4)], archs, truth)
        >>> list(bias), bias["oneshot"] == bias["ground truth"]   # one-shot here ranks like the truth
        (['ground truth', 'oneshot', 'random'], True)
        >>> top = op_bias(cells(results, [4], None)[("a", 4)], archs, truth, top=0.5)   # the best 3 of 6
        >>> round(top["ground truth"]["none"], 3), round(top["random"]["none"], 3)   # random ranks in reverse
        (-0.333, 0.333)
    """
    keep = np.arange(len(archs)) if top is None else rs.top_indices(truth, top)
    parsed = [parse_nb201(archs[i]) for i in keep]
    out = {"ground truth": rs.op_count_bias(parsed, np.asarray(truth)[keep], nb201.OPS)}
    for m in METHODS:
        mine = _by_seed(rows, m.key)
        if mine:
            per_seed = [rs.op_count_bias(parsed, scores(r)[keep], nb201.OPS) for r in mine.values()]
            out[m.key] = {op: _nanmean([p[op] for p in per_seed]) for op in nb201.OPS}
    return out


def _nanmean(values: Sequence[float]) -> float:
    """Mean over the defined values; NaN (without numpy's warning) when none is."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def _groups(groups: list[list[str]]) -> tuple:
    return tuple(sorted(tuple(sorted(g)) for g in groups))


def split_consistency(rows: list[dict]) -> list[dict]:
    """How often the data-driven splitters make the same decisions across seeds.

    For each method with a tree: the share of seeds whose first split picks
    the modal edge, the modal edge *and* grouping, and the modal whole tree.

    Example:
        >>> tree = lambda label: [{"node": "root", "epoch": 1, "label": label, "groups": [["a"], ["b"]]}]
        >>> rows = [{"method": "gm", "seed": s, "tree": tree(l)} for s, l in enumerate("xxy")]
        >>> split_consistency(rows)[0]["first_edge"]
        ['x', 2, 3]
    """
    out = []
    for m in METHODS:
        trees = [r["tree"] for r in sorted(_by_seed(rows, m.key).values(), key=lambda r: r["seed"]) if r.get("tree")]
        if not trees or m.splitter == "exhaustive":
            continue
        edge = rs.modal_share([t[0]["label"] for t in trees])
        split = rs.modal_share([(t[0]["label"], _groups(t[0]["groups"])) for t in trees])
        whole = rs.modal_share([tuple(sorted((s["node"].count("/"), s["label"], _groups(s["groups"])) for s in t))
                                for t in trees])
        out.append({"method": m.key, "first_edge": [edge[0], edge[1], edge[2]],
                    "first_split": [_describe(*split[0]), split[1], split[2]],
                    "whole_tree": [whole[1], whole[2]]})
    return out


def _describe(label: str, groups: tuple) -> str:
    return f"{label}: " + " | ".join("+".join(g) for g in groups)


def summarize(results: list[dict], archs: list[str], truth: np.ndarray, *, epochs: Sequence[int],
              budget: int | None, primary: int, n_boot: int = 2000, accuracy: np.ndarray | None = None) -> dict:
    """The whole summary: every cell, the zero-cost lines, op bias and split consistency (see the module).
    ``truth``: the ranking scores of the archs; ``accuracy``: their true accuracies, for the top-1 measure."""
    by_cell = cells(results, epochs, budget)
    summary = {"archs": len(archs), "primary": ["a", primary], "n_boot": n_boot, "alpha": ALPHA,
               "cells": [cell_summary(rule, c, rows, truth, n_boot=n_boot, accuracy=accuracy)
                         for (rule, c), rows in by_cell.items()],
               "zero_cost": zero_cost_rows(results, truth, n_boot=n_boot, accuracy=accuracy),
               "op_bias": op_bias(by_cell.get(("a", primary), []), archs, truth),
               "op_bias_top20": op_bias(by_cell.get(("a", primary), []), archs, truth, top=0.2),
               "against_random": [against_random_split(rule, c, rows, truth, n_boot=n_boot)
                                  for (rule, c), rows in by_cell.items()],
               "against_own_sampler": [against_own_sampler(rule, c, rows, truth, n_boot=n_boot)
                                       for (rule, c), rows in by_cell.items()],
               "consistency": {f"{rule}-{c}": split_consistency(rows) for (rule, c), rows in by_cell.items()},
               "job_seconds": float(sum(job_seconds(r) for r in results))}
    return summary


def example_results() -> tuple[list[dict], list[str], np.ndarray]:
    """Hand-made results of two seeds over 6 architectures, for the examples: ``(results, archs, truth)``.

    One-shot ranks exactly like the truth, the random split exactly reversed,
    in cell (a, 4) and (b, 8); zero-cost: params right, synflow reversed,
    naswot right.

    Example:
        >>> results, archs, truth = example_results()
        >>> len(results), len(archs), truth.tolist()
        (10, 6, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    """
    archs = [format_nb201(table.arch_of(i)) for i in range(6)]
    truth = np.arange(1.0, 7.0)
    results = []
    for seed in (0, 1):
        for rule, cell, kind, key, est in (("a", 4, "oneshot", "oneshot", truth), ("a", 4, "fork", "random", -truth),
                                           ("a", 8, "oneshot", "oneshot", truth), ("b", 8, "fork", "random", -truth)):
            results.append({"id": f"{rule}-{cell}-{key}-s{seed}", "kind": kind, "method": key, "rule": rule,
                            "cell": cell, "seed": seed, "estimates": (est / 10).tolist(), "losses": [1.0] * 6,
                            "cost": cell, "epochs": cell, "split_at": [2] if kind == "fork" else [], "rounds": None,
                            "seconds": 1.0, "scoring_seconds": 0.0, "lr": [0.001] * cell,
                            "tree": [{"node": "root", "epoch": 2, "label": "1<-0",
                                      "groups": [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3",
                                                                            "avg_pool_3x3"]], "score": 0.0}]
                            if kind == "fork" else []})
        results.append({"id": f"zc-0-zerocost-s{seed}", "kind": "zerocost", "method": "zerocost", "rule": "zc",
                        "cell": 0, "seed": seed, "seconds": 1.0,
                        "scores": {"params": truth.tolist(), "synflow": (-truth).tolist(), "naswot": truth.tolist()}})
    return results, archs, truth
