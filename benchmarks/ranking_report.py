"""The ranking benchmark's markdown report and its verdicts, from the summary (``ranking_summary``).

The report ends with one sentence per method, read off the primary cell
(rule (a) at the primary ``E``) and the rule (b) cell::

    >>> row = {"diff_mean": 0.01, "diff_ci": [-0.02, 0.04], "p_holm": 0.5}
    >>> verdict(row, 0.05)
    'no difference detectable; effects larger than 0.040 are excluded (Δτ = +0.010, 95% CI [-0.020, +0.040], Holm p = 0.5)'
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
from ranking_protocol import BASELINE, METHODS  # noqa: E402

from gmgraph.spaces import nb201  # noqa: E402


def label(key: str, rounds: int | None = None) -> str:
    """The table name of a method (GM with its R filled in).

    Example:
        >>> label("gm-large", 10), label("exhaustive"), label("gm-darts", 1)
        ('GM split (R=10)', 'few-shot exhaustive', 'GM split (DARTS, R=1)')
    """
    name = next(m.label for m in METHODS if m.key == key)
    if rounds is not None and name.startswith("GM split"):
        return re.sub(r"R (small|large)", f"R={rounds}", name)
    return name


def _ci(ci) -> str:
    lo, hi = ci
    return "-" if math.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"


def _num(value, fmt: str = ".3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def verdict(row: dict, alpha: float, baseline: str = "one-shot") -> str:
    """Better, worse, or what the interval excludes, for one method's paired difference to the baseline.

    The test pairs seeds over these architectures; the interval also resamples the architectures. A test
    that finds a difference while the interval reaches 0 is said so: it may not hold on other architectures.

    Example:
        >>> verdict({"diff_mean": -0.05, "diff_ci": [-0.08, -0.02], "p_holm": 0.01}, 0.05)
        'worse than one-shot (Δτ = -0.050, 95% CI [-0.080, -0.020], Holm p = 0.01)'
        >>> verdict({"diff_mean": 0.04, "diff_ci": [-0.01, 0.09], "p_holm": 0.04}, 0.05)[:95]
        'better than one-shot on these seeds, though the interval over seeds and architectures reaches 0'
    """
    lo, hi = row["diff_ci"]
    p = row["p_holm"]
    detail = f"Δτ = {row['diff_mean']:+.3f}, 95% CI {_ci(row['diff_ci'])}, Holm p = {p:.3g}"
    if p < alpha:
        caveat = (" on these seeds, though the interval over seeds and architectures reaches 0 (it may not hold "
                  "on other architectures)" if lo <= 0 <= hi else "")
        return f"{'better' if row['diff_mean'] > 0 else 'worse'} than {baseline}{caveat} ({detail})"
    return f"{_undecided(row)}; effects larger than {max(abs(lo), abs(hi)):.3f} are excluded ({detail})"


def _undecided(row: dict) -> str:
    """What a difference the Holm-corrected test does not find is called, flagging an interval that excludes 0.

    The bootstrap interval is not corrected for the comparisons, so it may lie on one side of 0 while the
    corrected test stays above alpha: that is a lean, not a finding, and the verdict says so.

    Example:
        >>> _undecided({"diff_ci": [0.002, 0.114]}), _undecided({"diff_ci": [-0.03, 0.12]})
        ('no difference detectable (the uncorrected interval lies above 0)', 'no difference detectable')
    """
    lo, hi = row["diff_ci"]
    if lo > 0 or hi < 0:
        return f"no difference detectable (the uncorrected interval lies {'above' if lo > 0 else 'below'} 0)"
    return "no difference detectable"


def _cell_title(cell: dict) -> str:
    if cell["rule"] == "a":
        return f"Rule (a), equal epochs per leaf lineage: E = {cell['cell']}"
    return f"Rule (b), equal total budget: {cell['cell']} supernet-epochs per method"


def _cell_table(cell: dict) -> str:
    headers = ["method", "supernet-epochs", "lineage (splits)", "Kendall tau [95% CI]", "Δτ vs one-shot [95% CI]",
               "Wilcoxon p (Holm)", "MDE 80%", "tau top-20%", *TOP_HEADERS, "self-consistency", "seeds", "s/run",
               "scoring s"]
    rows = []
    for r in cell["methods"]:
        splits = f" ({', '.join(map(str, r['split_at']))})" if r["split_at"] else ""
        diff = "-" if "diff_mean" not in r else f"{r['diff_mean']:+.3f} {_ci(r['diff_ci'])}"
        p = "-" if "p" not in r else f"{r['p']:.3g} ({r['p_holm']:.3g})"
        rows.append([label(r["method"], r["rounds"]), r["cost"], f"{r['epochs']}{splits}",
                     f"{r['tau_mean']:.3f} {_ci(r['tau_ci'])}", diff, p, _num(r.get("mde")), _num(r["top20"]),
                     *_top_cells(r), _num(r["self_consistency"]), len(r["seeds"]), f"{r['seconds']:.0f}",
                     f"{r['scoring_seconds']:.1f}" if r["split_at"] else "-"])
    return f"### {_cell_title(cell)}\n\n{_table.markdown(headers, rows)}"


def _zero_cost_table(summary: dict) -> str:
    rows = [[f"zero-cost {z['metric']} (untrained)", f"{z['tau_mean']:.3f} {_ci(z['tau_ci'])}", _num(z["top20"]),
             *_top_cells(z)] for z in summary["zero_cost"]]
    return _table.markdown(["reference", "Kendall tau [95% CI]", "tau top-20%", *TOP_HEADERS], rows)


TOP_HEADERS = ("precision@5", "precision@10", "true acc of its top-1")


def _top_cells(row: dict) -> list[str]:
    """The top-k columns (``-`` in a summary written before they existed).

    Example:
        >>> _top_cells({"p@5": 0.2, "p@10": 0.3, "top1": 0.61234}), _top_cells({})
        (['0.20', '0.30', '0.6123'], ['-', '-', '-'])
    """
    return [_num(row.get("p@5"), ".2f"), _num(row.get("p@10"), ".2f"), _num(row.get("top1"), ".4f")]


def _ceiling_table(ceilings: dict) -> str:
    rows = [[k, _num(v["kendall_tau"]) if v else "undefined", _num(v["spearman"]) if v else "undefined"]
            for k, v in ceilings.items()]
    return _table.markdown(["ground truth vs itself", "Kendall tau", "Spearman rho"], rows)


def _op_bias_table(summary: dict, rounds: dict, key: str = "op_bias") -> str:
    bias = summary[key]
    columns = list(bias)
    headers = ["op"] + [c if c == "ground truth" else label(c, rounds.get(c)) for c in columns]
    rows = [[op] + [_num(bias[c][op], "+.2f") for c in columns] for op in nb201.OPS]
    return _table.markdown(headers, rows)


def _consistency_table(summary: dict, rounds: dict) -> str:
    rows = []
    for cell, entries in summary["consistency"].items():
        for e in entries:
            edge, split, whole = e["first_edge"], e["first_split"], e["whole_tree"]
            rows.append([cell, label(e["method"], rounds.get(e["method"])), f"{edge[1]}/{edge[2]} ({edge[0]})",
                         f"{split[1]}/{split[2]}", split[0], f"{whole[0]}/{whole[1]}"])
    headers = ["cell", "method", "same first edge (most frequent edge)", "same first edge + grouping",
               "most frequent edge + grouping", "same whole tree"]
    return _table.markdown(headers, rows)


def verdicts(summary: dict) -> list[str]:
    """One sentence per compared method: the primary cell, then the rule (b) cell if there is one.

    Example:
        >>> import ranking_summary
        >>> results, archs, truth = ranking_summary.example_results()
        >>> s = ranking_summary.summarize(results, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
        >>> print(verdicts(s)[0])
        - **random split**: at equal lineage epochs (E = 4), no difference detectable (the uncorrected interval lies below 0); effects larger than 2.000 are excluded (Δτ = -2.000, 95% CI [-2.000, -2.000], Holm p = 0.5); at an equal budget of 8 supernet-epochs, no difference detectable (the uncorrected interval lies below 0); effects larger than 2.000 are excluded (Δτ = -2.000, 95% CI [-2.000, -2.000], Holm p = 0.5).
    """
    alpha = summary["alpha"]
    primary = next(c for c in summary["cells"] if [c["rule"], c["cell"]] == summary["primary"])
    budget = next((c for c in summary["cells"] if c["rule"] == "b"), None)
    lines = []
    for r in primary["methods"]:
        if r["method"] == BASELINE or "p_holm" not in r:
            continue
        text = f"- **{label(r['method'], r['rounds'])}**: at equal lineage epochs (E = {primary['cell']}), "
        text += verdict(r, alpha)
        other = next((o for o in budget["methods"] if o["method"] == r["method"]), None) if budget else None
        if other is not None and "p_holm" in other:
            text += f"; at an equal budget of {budget['cell']} supernet-epochs, {verdict(other, alpha)}"
        others = [_in_brief(c, r["method"], alpha) for c in summary["cells"] if c["rule"] == "a" and c is not primary]
        if any(others):
            text += "; at the other E: " + ", ".join(s for s in others if s)
        for key, article in (("against_random", "the "), ("against_own_sampler", "")):
            versus = _comparison_row(summary, key, primary, r["method"])
            if versus is not None:
                name = article + label(versus.get("versus", "random"))
                text += f"; against {name} at E = {primary['cell']}, {verdict(versus, alpha, name)}"
        lines.append(text + ".")
    return lines


def _comparison_row(summary: dict, key: str, cell: dict, method: str) -> dict | None:
    """The method's row in the cell's comparison ``key`` of the summary (``against_random``,
    ``against_own_sampler``); None where there is none."""
    versus = next((v for v in summary.get(key, []) if (v["rule"], v["cell"]) == (cell["rule"], cell["cell"])), None)
    return next((r for r in versus["methods"] if r["method"] == method), None) if versus else None


def _comparison_section(summary: dict, rounds: dict, key: str, title: str, reading: str) -> list[str]:
    """Title, reading and table of the summary's paired comparison ``key`` ([] when no cell has a row)."""
    headers = ["cell", "method", "against", "Δτ [95% CI]", "Wilcoxon p (Holm)", "MDE 80%", "seeds"]
    rows = [[f"{v['rule']}-{v['cell']}", label(r["method"], rounds.get(r["method"])),
             label(r.get("versus", "random")),  # a summary written before the pairs were named: the random split
             f"{r['diff_mean']:+.3f} {_ci(r['diff_ci'])}", f"{r['p']:.3g} ({r['p_holm']:.3g})", _num(r["mde"]),
             r["paired"]]
            for v in summary.get(key, []) for r in v["methods"]]
    return [f"### {title}", reading, _table.markdown(headers, rows)] if rows else []


def _against_random_section(summary: dict, rounds: dict) -> list[str]:
    """The splitters against the random split of their sampler ([] when no cell has both)."""
    return _comparison_section(
        summary, rounds, "against_random", "Does the choice of split matter? Each splitter against the random split",
        "Paired by seed like the comparison with one-shot (Holm within each cell), each against the random split "
        "trained with its own sampler. A splitter that beats one-shot but not the random split gains from "
        "splitting, not from the split it chose.")


def _against_own_sampler_section(summary: dict, rounds: dict) -> list[str]:
    """The splits trained with another sampler than uniform against their sampler's one-shot run ([] when none
    ran)."""
    return _comparison_section(
        summary, rounds, "against_own_sampler", "Splitting with another sampler: each split against its sampler's "
        "one-shot run", "Paired by seed (Holm within each cell): the split forks from the one-shot run of its own "
        "sampler and seed (weights, architecture parameters, optimizer and RNG), so the two share their first "
        "epochs; Δτ here is the gain of splitting under that sampler, where the tables above pair it with "
        "one-shot (uniform).")


def _in_brief(cell: dict, method: str, alpha: float) -> str:
    """``E = 60: better (Δτ = +0.085 [+0.042, +0.133])``, or '' when the cell lacks the method."""
    row = next((o for o in cell["methods"] if o["method"] == method and "p_holm" in o), None)
    if row is None:
        return ""
    word = ("better" if row["diff_mean"] > 0 else "worse") if row["p_holm"] < alpha else _undecided(row)
    return f"E = {cell['cell']}: {word} (Δτ = {row['diff_mean']:+.3f} {_ci(row['diff_ci'])})"


def render(summary: dict, *, ceilings: dict, settings_text: str, timing_text: str, plots: list[str]) -> str:
    """The whole report as markdown: one table per cell, references, ceilings, biases, plots, verdicts.

    Example:
        >>> import ranking_summary
        >>> results, archs, truth = ranking_summary.example_results()
        >>> s = ranking_summary.summarize(results, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
        >>> text = render(s, ceilings={"1 seed vs 1 seed": None}, settings_text="", timing_text="", plots=[])
        >>> text.count("### Rule"), text.splitlines()[-1][:20]
        (2, '- **random split**: ')
    """
    rounds = {r["method"]: r["rounds"] for c in summary["cells"] for r in c["methods"]}
    primary = f"rule (a), E = {summary['primary'][1]}"
    parts = ["# Ranking fidelity: one-shot vs few-shot supernets, paired by seed (local NB201 ground truth)",
             f"Machine: {_table.machine()}", settings_text, timing_text]
    parts += [_cell_table(c) for c in summary["cells"]]
    parts += ["### Untrained references", _zero_cost_table(summary),
              "### Ceilings: the ground truth against itself", _ceiling_table(ceilings),
              f"### Op-count bias ({primary})",
              "Kendall tau between the number of edges holding each op and the score (ground truth: the "
              "true accuracy; methods: their estimates, mean over seeds). A sign the ground truth does not "
              "share is a bias of the estimate.", _op_bias_table(summary, rounds),
              f"### Op-count bias within the true top 20 % ({primary})",
              "The same over the architectures that 'tau top-20%' orders. Where the ground truth's sign "
              "here differs from its sign over the whole range, a different op wins among the best "
              "architectures; an estimate that keeps the whole-range preference orders the top wrongly, "
              "and its tau top-20% turns negative. Compare 'tau top-20%' with the ground truth's own "
              "agreement within its top 20 % (Ceilings).", _op_bias_table(summary, rounds, "op_bias_top20"),
              *_against_random_section(summary, rounds),
              *_against_own_sampler_section(summary, rounds),
              "### Do the data-driven splitters agree with themselves across seeds?",
              "Share of seeds whose split tree matches the most frequent one (random split: the chance level). "
              "Each column has its own mode: the most frequent edge + grouping can sit on another edge "
              "than the most frequent edge.",
              _consistency_table(summary, rounds)]
    if plots:
        parts += ["### Plots", "\n".join(f"![{Path(p).stem}]({Path(p).name})" for p in plots)]
    parts += ["## Verdict", f"Against one-shot (uniform), paired by seed; Holm-corrected Wilcoxon signed-rank "
              f"test at α = {summary['alpha']} within each cell; 95% intervals from the two-level bootstrap "
              "(seeds and architectures).", "\n".join(verdicts(summary))]
    return "\n\n".join(p for p in parts if p) + "\n"
