"""The whole-space outcome benchmark's statistics, report and figure.

Each search's pick gets its true accuracy: the mean over the training seeds
of its from-scratch results on this machine (``picks.csv``). Per method: that
accuracy's mean and interval, its percentile among the ground truth's
architectures and the regret against
the best of them, how often one architecture is picked, the cost, and the
paired difference to one-shot uniform (Wilcoxon, Holm), as ``outcome.py``
reports the picks among the 155. Then the rule that names the default::

    >>> o = {"oneshot": {"truth": 0.60, "cost": 40, "seconds": 50, "per_seed": {0: {"truth": 0.60}, 1: {"truth": 0.61}}},
    ...      "gm": {"truth": 0.62, "cost": 110, "seconds": 90, "per_seed": {0: {"truth": 0.62}, 1: {"truth": 0.62}}}}
    >>> best_measured(o, n_boot=200)["method"]
    'gm'
"""

from __future__ import annotations

from pathlib import Path

import groundtruth_lib as local
import numpy as np
import outcome
import ranking_stats as rs
from outcome_search_jobs import BASELINE, METHODS, Plan, method

ORDER = [m.key for m in METHODS]


def pick_truths(plan: Plan) -> dict[str, dict[int, float]]:
    """arch -> {training seed: accuracy} (val and test pooled as the ground truth pools them) of the picks
    trained so far."""
    return local.per_seed(plan.picks_csv) if plan.picks_csv.exists() else {}


def mean_truth(table: dict, arch: str, seeds) -> float | None:
    """``arch``'s mean accuracy over ``seeds``; None while one of them is not trained.

    Example:
        >>> mean_truth({"a": {0: 0.5, 1: 0.7}}, "a", (0, 1)), mean_truth({"a": {0: 0.5}}, "a", (0, 1))
        (0.6, None)
    """
    values = table.get(arch, {})
    if any(s not in values for s in seeds):
        return None
    return float(np.mean([values[s] for s in seeds]))


def reference(plan: Plan) -> np.ndarray:
    """The ground truth's architectures' accuracies over the plan's training seeds (what percentiles and regret
    are measured against)."""
    table = local.per_seed(plan.groundtruth)
    return np.array([mean_truth(table, a, plan.train_seeds) for a in table], dtype=float)


def seed_outcome(result: dict, truth: float, ref: np.ndarray, in_ref: bool) -> dict:
    """One search's pick and its measures.

    Example:
        >>> o = seed_outcome({"arch": "x", "supernet_epochs": 40, "seconds": 9.0}, 0.5, np.array([0.4, 0.6]), False)
        >>> o["percentile"], round(o["regret"], 3), o["in_reference"]
        (50.0, 0.1, False)
    """
    return {"arch": result["arch"], "truth": truth, "percentile": 100.0 * float(np.mean(ref <= truth)),
            "regret": float(ref.max() - truth), "in_reference": in_ref, "cost": result["supernet_epochs"],
            "seconds": result["seconds"]}


def outcomes(plan: Plan, results: list[dict], *, n_boot: int) -> dict[str, dict]:
    """method -> its outcome over the seeds whose pick is trained, paired with one-shot uniform by seed."""
    table = pick_truths(plan)
    ref = reference(plan)
    ref_archs = set(local.load_groundtruth(plan.groundtruth))
    per_method: dict[str, dict[int, dict]] = {}
    for r in results:
        truth = mean_truth(table, r["arch"], plan.train_seeds)
        if truth is not None:
            per_method.setdefault(r["method"], {})[r["seed"]] = seed_outcome(r, truth, ref, r["arch"] in ref_archs)
    base = per_method.get(BASELINE, {})
    out = {m: _method_row(per_method[m], None if m == BASELINE else base, n_boot)
           for m in sorted(per_method, key=ORDER.index)}
    compared = [m for m in out if "p" in out[m]]
    for m, adjusted in zip(compared, rs.holm([out[m]["p"] for m in compared])):
        out[m]["p_holm"] = adjusted
    return out


def _method_row(per_seed: dict[int, dict], base: dict[int, dict] | None, n_boot: int) -> dict:
    truths = [o["truth"] for o in per_seed.values()]
    arch, count, _ = rs.modal_share([o["arch"] for o in per_seed.values()])
    row = {"seeds": len(per_seed), "truth": float(np.mean(truths)), "truth_ci": rs.bootstrap_mean_ci(truths, n_boot=n_boot),
           **{k: float(np.mean([o[k] for o in per_seed.values()])) for k in ("percentile", "regret", "cost", "seconds")},
           "in_reference": sum(o["in_reference"] for o in per_seed.values()),
           "modal": arch, "modal_count": count, "per_seed": per_seed}
    paired = sorted(set(per_seed) & set(base or {}))
    if paired:
        row.update(outcome.paired_fields([per_seed[s]["truth"] - base[s]["truth"] for s in paired], n_boot=n_boot))
    return row


def setting_effects(rows: dict[str, dict], *, n_boot: int) -> dict[str, dict]:
    """variant -> what changing one setting does to the pick: the paired difference (by seed) of each method that
    is a variant of another (GM-NAS's leaf restart, R = 100) to that method, Holm over the variants measured.

    Example:
        >>> rows = {"gm": {"per_seed": {0: {"truth": 0.60}, 1: {"truth": 0.62}}},
        ...         "gm-r100": {"per_seed": {0: {"truth": 0.61}, 1: {"truth": 0.64}}}}
        >>> e = setting_effects(rows, n_boot=100)["gm-r100"]
        >>> e["against"], round(e["diff"], 3), (e["wins"], e["losses"])
        ('gm', 0.015, (2, 0))
    """
    out = {}
    for key, row in rows.items():
        base = rows.get(method(key).variant_of)
        paired = sorted(set(row["per_seed"]) & set(base["per_seed"])) if base else []
        if paired:
            diffs = [row["per_seed"][s]["truth"] - base["per_seed"][s]["truth"] for s in paired]
            out[key] = {"against": method(key).variant_of, **outcome.paired_fields(diffs, n_boot=n_boot)}
    for key, adjusted in zip(out, rs.holm([e["p"] for e in out.values()])):
        out[key]["p_holm"] = adjusted
    return out


def setting_rows(effects: dict[str, dict]) -> list[list]:
    """The setting effects as table rows (the headers: :data:`SETTING_HEADERS`)."""
    return [[method(key).label, method(e["against"]).label, e["paired"], f"{e['diff']:+.4f} {_ci(e['diff_ci'])}",
             f"{e['wins']}/{e['losses']}", f"{e['p']:.3g} ({e['p_holm']:.3g})"] for key, e in effects.items()]


SETTING_HEADERS = ["variant", "against", "paired seeds", "Δ true acc of the pick [95% CI]", "wins/losses",
                   "Wilcoxon p (Holm)"]


def setting_verdicts(effects: dict[str, dict]) -> list[str]:
    """One sentence per variant: better or worse than the method it varies, or what its interval leaves open."""
    lines = []
    for key, e in effects.items():
        lines += outcome.reading({key: e}, {}, name=lambda k: method(k).label, baseline=method(e["against"]).label)
    return lines


def best_measured(rows: dict[str, dict], *, n_boot: int) -> dict:
    """The method a user should get by default: the highest mean true accuracy; among the methods whose paired
    difference to it has a 95 % interval reaching 0 (not told apart), the cheapest (supernet-epochs, then wall
    time). Returns ``{"method", "top", "tied"}`` (``tied``: in ``rows``' order, the top included)."""
    top = max(rows, key=lambda m: rows[m]["truth"])
    tied = [top]
    for m, row in rows.items():
        paired = sorted(set(row["per_seed"]) & set(rows[top]["per_seed"]))
        if m == top or len(paired) < 2:
            continue
        diffs = [row["per_seed"][s]["truth"] - rows[top]["per_seed"][s]["truth"] for s in paired]
        if rs.bootstrap_mean_ci(diffs, n_boot=n_boot)[1] >= 0:
            tied.append(m)
    chosen = min(tied, key=lambda m: (rows[m]["cost"], rows[m]["seconds"]))
    return {"method": chosen, "top": top, "tied": [m for m in rows if m in tied]}


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def headers(reference_size: int) -> list[str]:
    return ["method", "seeds", "true acc of the pick [95% CI]", "percentile", "regret",
            f"picks among the {reference_size}", "same pick", "supernet-epochs", "s/run",
            "Δ acc vs one-shot [95% CI]", "wins/losses", "Wilcoxon p (Holm)"]


def table_rows(rows: dict[str, dict]) -> list[list]:
    out = []
    for key, o in rows.items():
        compared = "p" in o
        out.append([method(key).label, o["seeds"], f"{o['truth']:.4f} {_ci(o['truth_ci'])}", f"{o['percentile']:.1f}",
                    f"{o['regret']:+.4f}", f"{o['in_reference']}/{o['seeds']}", f"{o['modal_count']}/{o['seeds']}",
                    f"{o['cost']:.0f}", f"{o['seconds']:.0f}",
                    f"{o['diff']:+.4f} {_ci(o['diff_ci'])}" if compared else "-",
                    f"{o['wins']}/{o['losses']}" if compared else "-",
                    f"{o['p']:.3g} ({o['p_holm']:.3g})" if compared else "-"])
    return out


def verdicts(rows: dict[str, dict], default: dict | None, *, complete: bool = True) -> list[str]:
    """The report's sentences: one per method against one-shot, then the default's rule applied (on a partial
    run: what it would name so far, which names no default yet)."""
    lines = outcome.reading(rows, {}, name=lambda key: method(key).label)
    if default is not None:
        top, chosen = method(default["top"]).label, method(default["method"]).label
        tied = [method(m).label for m in default["tied"] if m != default["top"]]
        among = f"; not told apart from it (paired 95% interval reaching 0): {', '.join(tied)}" if tied else ""
        if complete:
            named = f"The cheapest of these, the default this result names: {chosen}." if tied else \
                f"It is the default this result names: {chosen}."
        else:
            named = (f"The cheapest of these so far: {chosen}" if tied else "No method is tied with it") \
                + " (a partial run names no default yet)."
        lines.append(f"Highest mean true accuracy{'' if complete else ' so far'}: {top}{among}. {named}")
    return lines


def draw(rows: dict[str, dict], ref: np.ndarray, path: Path) -> Path:
    """Each method's picks (one dot per seed) beside the ground truth's distribution, as true accuracy."""
    from ranking_plots import _pyplot, _save

    plt = _pyplot()
    names = [f"ground truth's {len(ref)}"] + [method(k).label for k in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    jitter = np.random.default_rng(0)
    known = ref[~np.isnan(ref)]
    ax.scatter(known, jitter.uniform(-0.25, 0.25, len(known)), s=6, color="grey", alpha=0.5)
    for i, o in enumerate(rows.values(), start=1):
        values = [s["truth"] for s in o["per_seed"].values()]
        ax.scatter(values, i + jitter.uniform(-0.15, 0.15, len(values)), s=14, alpha=0.7)
        ax.plot([o["truth"]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=1.5)
    ax.axvline(np.nanmax(ref), color="grey", linestyle=":", linewidth=1)
    picks = [s["truth"] for o in rows.values() for s in o["per_seed"].values()]
    ax.set_xlim(left=min(np.nanpercentile(ref, 10), min(picks)) - 0.01)  # the few near-chance archs off the left
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"true accuracy (from scratch, mean of training seeds); dotted: the best of the {len(ref)}\n"
                  "(their lowest 10 % lie left of the axis); bars: a method's mean")
    return _save(fig, path)
