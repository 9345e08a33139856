"""benchmarks/outcome.py: each method's pick among the ground truth's architectures, and its true accuracy."""

import csv
import doctest
import gzip
import json

import numpy as np
import outcome
import pytest


def test_doctests():
    assert doctest.testmod(outcome, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


def _write_estimates(path, rows):
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rule", "cell", "method", "seed", "arch", "estimate", "loss", "truth"])
        writer.writerows(rows)


TRUTH = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}


def _run(method, seed, estimates, losses=None):
    losses = losses or [1.0] * len(estimates)
    return [["a", 40, method, seed, arch, est, loss, TRUTH[arch]]
            for arch, est, loss in zip(TRUTH, estimates, losses)]


@pytest.fixture
def worked_example(tmp_path):
    """Two seeds of one-shot and of PA&DA on four architectures, worked out by hand below."""
    rows = (_run("oneshot", 0, [0.1, 0.2, 0.3, 0.4])      # picks d (truth 0.6)
            + _run("oneshot", 1, [0.1, 0.3, 0.3, 0.2], [1.0, 2.0, 1.0, 1.0])  # b and c tie: c has the lower loss
            + _run("pada", 0, [0.4, 0.3, 0.2, 0.1])       # picks a (0.9)
            + _run("pada", 1, [0.3, 0.4, 0.2, 0.1]))      # picks b (0.8)
    estimates = tmp_path / "est.csv.gz"
    _write_estimates(estimates, rows)
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"cells": [{"rule": "a", "cell": 40, "methods": [
        {"method": "oneshot", "cost": 40, "seconds": 10.0}, {"method": "pada", "cost": 40, "seconds": 12.0}]}]}))
    return estimates, summary


def test_the_pick_its_truth_regret_percentile_and_the_pairing_are_the_hand_computed_ones(worked_example):
    estimates, _ = worked_example
    cell = outcome.cell_outcomes(outcome.read_estimates(estimates), "a", 40, n_boot=200)
    oneshot, pada = cell["oneshot"], cell["pada"]
    assert [o["arch"] for o in oneshot["per_seed"].values()] == ["d", "c"]
    assert [o["arch"] for o in pada["per_seed"].values()] == ["a", "b"]
    assert oneshot["truth"] == pytest.approx((0.6 + 0.7) / 2)
    assert pada["regret"] == pytest.approx((0.0 + 0.1) / 2)
    assert oneshot["percentile"] == pytest.approx((25.0 + 50.0) / 2)
    assert pada["diff"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.7)) / 2)
    assert (pada["wins"], pada["losses"], pada["paired"]) == (2, 0, 2)
    assert pada["modal_count"] == 1 and "p" not in oneshot
    # precision@5 with 4 archs: k is all four, every arch is in both top-k sets
    assert pada["p@5"] == 1.0


def test_the_report_is_written_whole_with_one_table_per_cell(worked_example, tmp_path):
    estimates, summary = worked_example
    out = tmp_path / "outcome.md"
    outcome.main(["--estimates", str(estimates), "--summary", str(summary), "--out", str(out), "--n-boot", "200"])
    text = out.read_text()
    assert text.count("### Rule (a)") == 1
    assert "| one-shot (PA&DA) | 2 | 0.8500" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["est.csv.gz", "outcome.md", "summary.json"]


def test_on_the_committed_ranking_runs_every_cell_has_its_seeds_and_truths_within_the_ground_truth():
    runs = outcome.read_estimates(outcome.ESTIMATES)
    cell = outcome.cell_outcomes(runs, "a", 40, n_boot=200)
    assert cell["oneshot"]["seeds"] == 20
    best = max(run["truth"].max() for run in runs[("a", 40, "oneshot")].values())
    for row in cell.values():
        assert all(0 <= o["regret"] <= best and 0 < o["percentile"] <= 100 for o in row["per_seed"].values())
        assert np.isclose(row["truth"], np.mean([o["truth"] for o in row["per_seed"].values()]))


def test_a_samplers_own_alpha_pick_is_a_row_of_its_own_paired_with_one_shot(tmp_path):
    rows = (_run("oneshot", 0, [0.1, 0.2, 0.3, 0.4]) + _run("oneshot", 1, [0.4, 0.3, 0.2, 0.1])
            + _run("darts", 0, [0.1, 0.2, 0.3, 0.4]) + _run("darts", 1, [0.1, 0.2, 0.3, 0.4])
            + _run("darts-alpha", 0, [-1.0, -2.0, -3.0, -4.0], [""] * 4)   # its alphas favour a (0.9)
            + _run("darts-alpha", 1, [-2.0, -1.0, -3.0, -4.0], [""] * 4))  # and b (0.8)
    estimates = tmp_path / "est.csv.gz"
    _write_estimates(estimates, rows)
    runs = outcome.read_estimates(estimates)

    cell = outcome.cell_outcomes(runs, "a", 40, n_boot=200)
    text = outcome.render(runs, {"cells": []}, n_boot=200, argv=[], estimates=estimates)

    assert list(cell) == ["oneshot", "darts", "darts-alpha"]
    assert [o["arch"] for o in cell["darts-alpha"]["per_seed"].values()] == ["a", "b"]
    assert cell["darts-alpha"]["diff"] == pytest.approx(((0.9 - 0.6) + (0.8 - 0.9)) / 2)
    assert "| one-shot (DARTS), argmax of its alphas | 2 |" in text and "argmax of its alphas': the" in text
