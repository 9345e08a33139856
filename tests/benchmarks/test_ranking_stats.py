"""Tests of benchmarks/ranking_stats.py against scipy, brute force and hand-computed values."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
import ranking_stats as rs
from scipy import stats


def brute_tau_b(x, y) -> float:
    concordant = discordant = untied_x = untied_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        concordant += sx * sy > 0
        discordant += sx * sy < 0
        untied_x += sx != 0
        untied_y += sy != 0
    return (concordant - discordant) / math.sqrt(untied_x * untied_y)


def test_vectorised_tau_matches_scipy_and_brute_force_with_ties():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(5, 23)).astype(float)  # many ties
    y = rng.integers(0, 4, size=(5, 23)).astype(float)
    taus = rs.kendall_tau_rows(x, y)
    for row in range(5):
        assert taus[row] == pytest.approx(stats.kendalltau(x[row], y[row]).statistic, abs=1e-12)
        assert taus[row] == pytest.approx(brute_tau_b(x[row], y[row]), abs=1e-12)
    assert math.isnan(rs.kendall_tau([2, 2, 2], [1, 2, 3]))


def test_tiebroken_ranks_by_accuracy_then_by_lower_loss():
    rng = np.random.default_rng(1)
    acc = rng.integers(0, 4, size=30) / 4
    loss = rng.integers(0, 3, size=30).astype(float)
    ranks = rs.tiebroken(acc, loss)
    for i, j in itertools.permutations(range(30), 2):  # brute force: the lexicographic order
        better = acc[i] > acc[j] or (acc[i] == acc[j] and loss[i] < loss[j])
        same = acc[i] == acc[j] and loss[i] == loss[j]
        assert (ranks[i] > ranks[j]) == better and (ranks[i] == ranks[j]) == same
    assert ranks.tolist() == stats.rankdata(ranks).tolist()  # proper ranks: average ranks for exact ties
    assert rs.tiebroken(acc, [float("nan")] * 30).tolist() == stats.rankdata(acc).tolist()


def test_holm_on_known_examples():
    assert rs.holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert rs.holm([0.01, 0.02, 0.03]) == [0.03, 0.04, 0.04]  # step-down keeps it monotone
    assert rs.holm([0.5, 0.9]) == [1.0, 1.0]  # capped
    out = rs.holm([0.02, float("nan"), 0.01])  # NaN stays outside the family of 2
    assert out[0] == 0.02 and math.isnan(out[1]) and out[2] == 0.02


def test_wilcoxon_matches_scipy_and_the_exact_null():
    d = [0.05, -0.01, 0.03, 0.02, 0.04, -0.02, 0.06, 0.01, 0.07, 0.08]
    assert rs.wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert rs.wilcoxon_p([0.1 * (i + 1) for i in range(10)]) == pytest.approx(2 / 2**10)  # all 10 positive
    assert rs.wilcoxon_p([0.0, 0.0, 0.0]) == 1.0


def test_bootstrap_interval_covers_a_known_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    covered, widths = 0, []
    for rep in range(200):
        sample = rng.normal(0.3, 0.1, size=40)
        lo, hi = rs.bootstrap_mean_ci(sample, n_boot=1000, seed=rep)
        covered += lo <= 0.3 <= hi
        widths.append(hi - lo)
    assert 0.88 <= covered / 200 <= 0.99
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 0.1 / math.sqrt(40), rel=0.1)


def test_two_level_interval_degenerates_where_it_must():
    truth = np.arange(12.0)
    perfect = np.tile(truth, (4, 1))
    assert rs.tau_ci(perfect, truth, n_boot=50) == (1.0, 1.0)
    noisy = perfect + np.random.default_rng(3).normal(0, 3, size=perfect.shape)
    assert rs.tau_ci(noisy, truth, baseline=noisy, n_boot=50) == (0.0, 0.0)  # a method against itself
    lo, hi = rs.tau_ci(noisy, truth, n_boot=300)
    assert lo < np.mean(rs.kendall_tau_rows(noisy, truth)) < hi


def test_mde_formula_and_its_power_by_simulation():
    assert rs.mde(0.05, 10) == pytest.approx((stats.t.ppf(0.975, 9) + stats.t.ppf(0.8, 9)) * 0.05 / math.sqrt(10))
    assert rs.mde(1.0, 10**6) * 1000 == pytest.approx(2.8016, abs=1e-3)
    # a true mean difference of exactly the MDE is found about 80% of the time by a paired t-test
    rng = np.random.default_rng(4)
    n, sd = 10, 0.05
    diffs = rng.normal(rs.mde(sd, n), sd, size=(4000, n))
    power = np.mean(stats.ttest_1samp(diffs, 0.0, axis=1).pvalue < 0.05)
    assert power == pytest.approx(0.8, abs=0.03)


def test_top_fraction_self_consistency_and_op_bias_by_hand():
    truth = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    estimate = [10, 9, 8, 7, 6, 5, 4, 3, 1, 2]  # only the top 2 of the truth are in the right order
    assert rs.top_fraction_tau(estimate, truth, 0.2) == 1.0
    assert rs.top_fraction_tau(estimate, truth, 0.3) == pytest.approx(-1 / 3)
    rows = np.array([[1, 2, 3, 4], [1, 2, 4, 3], [4, 3, 2, 1]])
    expected = (rs.kendall_tau(rows[0], rows[1]) + rs.kendall_tau(rows[0], rows[2]) + rs.kendall_tau(rows[1], rows[2])) / 3
    assert rs.self_consistency(rows) == pytest.approx(expected)
    archs = [{"a": "x", "b": "x"}, {"a": "x", "b": "y"}, {"a": "y", "b": "y"}, {"a": "y", "b": "x"}]
    bias = rs.op_count_bias(archs, [4.0, 3.0, 1.0, 2.0], ["x", "y"])
    assert bias["x"] == pytest.approx(brute_tau_b([2, 1, 0, 1], [4, 3, 1, 2]))
    assert bias["y"] == pytest.approx(-bias["x"])


def test_doctests():
    assert doctest.testmod(rs, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


def test_fast_bootstrap_draws_equal_direct_resampling():
    rng = np.random.default_rng(5)
    est = rng.integers(0, 5, size=(6, 40)).astype(float)  # ties, as accuracies have
    base = rng.normal(size=(6, 40))
    truth = rng.normal(size=40)
    draws = rs.bootstrap_taus(est, truth, baseline=base, n_boot=30, seed=7)
    rows, cols = rs._resample_indices(np.random.default_rng(7), 30, 6, 40)
    for b in range(30):
        r, c = rows[b], cols[b]
        direct = np.mean([brute_tau_b(est[s][c], truth[c]) - brute_tau_b(base[s][c], truth[c]) for s in r])
        assert draws[b] == pytest.approx(direct, abs=1e-12)


def test_verdicts_name_the_other_lineage_epochs_in_brief():
    import copy

    import ranking_report
    import ranking_summary

    results, archs, truth = ranking_summary.example_results()
    longer = [copy.deepcopy(r) for r in results if r["rule"] == "a" and r["method"] == "random"]
    for r in longer:
        r.update(id=r["id"].replace("a-4", "a-8"), cell=8, cost=8, epochs=8)
    summary = ranking_summary.summarize(results + longer, archs, truth, epochs=[4, 8], budget=8, primary=4, n_boot=20)
    line = ranking_report.verdicts(summary)[0]
    assert line.startswith("- **random split**: at equal lineage epochs (E = 4)")
    assert line.endswith("; at the other E: E = 8: no difference detectable (the uncorrected interval lies below 0) "
                         "(Δτ = -2.000 [-2.000, -2.000]).")


@pytest.mark.parametrize(("ci", "p", "start"), [
    ([0.002, 0.114], 0.109, "no difference detectable (the uncorrected interval lies above 0); effects larger than 0.114"),
    ([-0.03, 0.12], 0.4, "no difference detectable; effects larger than 0.120 are excluded"),
    ([0.002, 0.114], 0.01, "better than one-shot"),
])
def test_a_verdict_flags_an_interval_that_excludes_zero_without_a_significant_test(ci, p, start):
    import ranking_report

    text = ranking_report.verdict({"diff_mean": 0.05, "diff_ci": ci, "p_holm": p}, 0.05)
    assert text.startswith(start)
    assert f"Holm p = {p:.3g}" in text


def test_op_bias_within_the_top_share_is_measured_on_those_archs_only():
    import ranking_summary

    from gmgraph.arch import parse_nb201

    results, archs, truth = ranking_summary.example_results()
    rows = ranking_summary.cells(results, [4], None)[("a", 4)]
    top = rs.top_indices(truth, 0.5)
    assert top.tolist() == [5, 4, 3]  # truth 6, 5, 4
    bias = ranking_summary.op_bias(rows, archs, truth, top=0.5)
    parsed = [parse_nb201(archs[i]) for i in top]
    by_hand = rs.op_count_bias(parsed, truth[top], ["skip_connect", "nor_conv_3x3"])
    for op, tau in by_hand.items():  # the truth's own column, and one-shot's (it ranks like the truth)
        assert bias["ground truth"][op] == pytest.approx(tau, nan_ok=True)
        assert bias["oneshot"][op] == pytest.approx(tau, nan_ok=True)
        assert bias["random"][op] == pytest.approx(-tau, nan_ok=True)  # the random split ranks in reverse
    assert any(not math.isnan(t) for t in by_hand.values())


def test_splitters_are_paired_with_the_random_split_in_the_summary_the_report_and_the_verdicts():
    import ranking_report
    import ranking_summary

    results, archs, truth = ranking_summary.example_results()
    rng = np.random.default_rng(3)
    gm = []
    for r in results:
        if r["method"] == "random":  # GM ranks by a noisy truth: between one-shot (exact) and random (reversed)
            noisy = (truth + rng.normal(scale=2.0, size=truth.size)) / 10
            gm.append(dict(r, id=r["id"].replace("random", "gm"), method="gm", estimates=noisy.tolist()))
    summary = ranking_summary.summarize(results + gm, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
    versus = {(v["rule"], v["cell"]): v["methods"] for v in summary["against_random"]}
    assert set(versus) == {("a", 4), ("b", 8)}
    for (rule, cell), rows in versus.items():
        assert [r["method"] for r in rows] == ["gm"]
        mine = [r for r in gm if (r["rule"], r["cell"]) == (rule, cell)]
        by_hand = [brute_tau_b(ranking_summary.scores(r), truth) - (-1.0) for r in sorted(mine, key=lambda r: r["seed"])]
        assert rows[0]["diffs"] == pytest.approx(by_hand)
        assert rows[0]["p_holm"] == rows[0]["p"]  # one comparison: Holm leaves it
    text = ranking_report.render(summary, ceilings={}, settings_text="", timing_text="", plots=[])
    assert "### Does the choice of split matter?" in text
    gm_line = next(v for v in ranking_report.verdicts(summary) if v.startswith("- **GM split"))
    assert "; against the random split at E = 4, " in gm_line
    assert f"Δτ = {versus[('a', 4)][0]['diff_mean']:+.3f}" in gm_line.split("against the random split")[1]
