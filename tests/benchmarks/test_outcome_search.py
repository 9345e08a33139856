"""benchmarks/outcome_search.py: `gmgraph search` over the whole space, its picks trained from scratch, and the
statistics that name the default."""

import doctest
import json
import shutil

import groundtruth_lib as local
import numpy as np
import outcome_search
import outcome_search_jobs as jobs
import outcome_search_report as report
import pytest

from gmgraph.arch import parse_nb201
from gmgraph.errors import ConfigError, DataError


@pytest.mark.parametrize("module", [outcome_search, jobs, report], ids=lambda m: m.__name__)
def test_doctests(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One --quick run (one-shot and GM, 2 seeds, in this process), then the same command again."""
    folder = tmp_path_factory.mktemp("outcome_search")
    argv = ["--quick", "--workers", "1", "--workdir", str(folder / "work"), "--out", str(folder / "outcome.md")]
    rows = outcome_search.main(argv)
    first = (folder / "outcome.md").read_text()
    again = outcome_search.main(argv)
    return {"folder": folder, "argv": argv, "rows": rows, "again": again, "first": first,
            "plan": outcome_search.make_plan(outcome_search.parse_args(argv))}


def test_every_search_has_a_pick_and_every_pick_a_from_scratch_truth(quick):
    plan = quick["plan"]
    results = jobs.load_results(plan)
    assert sorted((r["method"], r["seed"]) for r in results) == [("gm", 0), ("gm", 1), ("oneshot", 0), ("oneshot", 1)]
    for r in results:
        parse_nb201(r["arch"])  # a whole NB201 architecture
        assert r["sampler"] == "uniform" and r["evaluations"] == 2
    assert {r["method"]: r["leaves"] for r in results} == {"oneshot": 1, "gm": 2}  # one split, at epoch 1
    truths = local.per_seed(plan.picks_csv)
    for row in quick["rows"].values():
        for o in row["per_seed"].values():
            assert o["truth"] == pytest.approx(np.mean([truths[o["arch"]][s] for s in plan.train_seeds]))
    # every pick was trained here with the ground truth's schedule, one row per training seed
    trained = local.read_rows(plan.picks_csv)
    assert sorted((r["arch"], r["seed"]) for r in trained) == sorted(
        {(r["arch"], s) for r in results for s in plan.train_seeds})
    again = jobs.train_pick(plan, trained[0]["arch"], trained[0]["seed"])
    assert again["val"] == trained[0]["val"] and again["params"] == trained[0]["params"]


def test_the_table_pairs_gm_with_one_shot_by_seed(quick):
    gm, oneshot = quick["rows"]["gm"], quick["rows"]["oneshot"]
    diffs = [gm["per_seed"][s]["truth"] - oneshot["per_seed"][s]["truth"] for s in (0, 1)]
    assert gm["diff"] == pytest.approx(np.mean(diffs)) and gm["paired"] == 2 and "p" not in oneshot
    text = quick["first"]
    assert "| one-shot (uniform) | 2 |" in text and "| GM split (R=10) | 2 |" in text
    summary = json.loads((quick["folder"] / "outcome_summary.json").read_text())
    assert summary["complete"] and summary["default"]["method"] in ("oneshot", "gm")
    assert (quick["folder"] / "outcome.png").stat().st_size > 0


def test_a_rerun_runs_nothing_and_writes_the_same_report(quick):
    assert (quick["folder"] / "outcome.md").read_text() == quick["first"]
    assert {k: r["truth"] for k, r in quick["again"].items()} == {k: r["truth"] for k, r in quick["rows"].items()}
    assert outcome_search.main([*quick["argv"], "--plan"])["plan"][-1].startswith("0 searches left: about 0.00 h")


def test_the_plan_times_what_is_left_from_what_has_run(quick):
    lines = outcome_search.main([*quick["argv"], "--seeds", "3", "--plan"])["plan"]
    assert lines[0].startswith("oneshot: 1 searches left, about ") and lines[1].startswith("gm: 1 searches left")
    assert lines[-1].startswith("2 searches left: about ")


def test_a_search_resumed_from_its_checkpoint_picks_what_a_fresh_one_picks(quick, tmp_path):
    plan = quick["plan"]
    fresh = json.loads(plan.result_path("oneshot", 1).read_text())
    moved = jobs.Plan(tmp_path, plan.groundtruth, plan.epochs, plan.split_at, plan.train_seeds, plan.extra,
                      plan.settings)
    # a search that stopped after its last checkpoint: the folder has checkpoint.pt and no report
    from gmgraph.cli import main

    out = moved.run_dir("oneshot", 1)
    assert main(jobs.search_argv(moved, jobs.method("oneshot"), 1, out)) == 0
    (out / "report.json").unlink()
    assert jobs.run_search(moved, "oneshot", 1)["arch"] == fresh["arch"]
    assert not out.exists()  # the run folder goes once its result is written


def test_a_work_folder_of_other_settings_is_refused(quick):
    plan = quick["plan"]
    with pytest.raises(ConfigError, match=r"holds a run with other settings \(epochs\); choose another --workdir"):
        jobs.load_plan(plan.workdir, plan.groundtruth, plan.epochs + 1, split_at=plan.split_at,
                       train_seeds=plan.train_seeds, extra=plan.extra)


def test_a_ground_truth_without_its_side_file_is_refused_with_the_reason(quick, tmp_path):
    truth = tmp_path / "gt.csv"
    shutil.copy(quick["plan"].groundtruth, truth)
    with pytest.raises(DataError, match=r"gt.csv has no side file gt.json: its training protocol"):
        jobs.load_plan(tmp_path / "work", truth, 2)


def test_a_report_without_one_shot_picks_says_what_to_do(quick, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(quick["plan"].workdir, work)
    for path in (work / "results").glob("oneshot-*.json"):
        path.unlink()
    argv = ["--quick", "--workdir", str(work), "--out", str(tmp_path / "o.md"), "--report-only"]
    with pytest.raises(ConfigError, match="no one-shot search has a trained pick yet"):
        outcome_search.main(argv)


def _rows(truths: dict[str, list[float]], costs: dict[str, int]) -> dict:
    return {m: {"truth": float(np.mean(t)), "cost": costs[m], "seconds": costs[m],
                "per_seed": {s: {"truth": v} for s, v in enumerate(t)}} for m, t in truths.items()}


def test_the_default_is_the_cheapest_method_not_told_apart_from_the_best():
    truths = {"oneshot": [0.60, 0.61, 0.59, 0.60], "pada": [0.640, 0.641, 0.639, 0.640],
              "gm": [0.639, 0.642, 0.640, 0.641], "random": [0.62, 0.62, 0.62, 0.62]}
    rows = _rows(truths, {"oneshot": 40, "pada": 40, "gm": 110, "random": 110})
    named = report.best_measured(rows, n_boot=500)
    assert named["top"] == "gm" and named["tied"] == ["pada", "gm"] and named["method"] == "pada"
    assert "the default this result names: one-shot (PA&DA)." in report.verdicts({}, named)[-1]
    assert "so far: one-shot (PA&DA) (a partial run names no default yet)." in report.verdicts(
        {}, named, complete=False)[-1]


def test_a_best_method_with_no_tie_is_named_alone():
    rows = _rows({"oneshot": [0.60, 0.61, 0.59, 0.60], "pada": [0.640, 0.641, 0.639, 0.640]},
                 {"oneshot": 40, "pada": 40})
    named = report.best_measured(rows, n_boot=500)
    assert named == {"method": "pada", "top": "pada", "tied": ["pada"]}
    assert report.verdicts({}, named)[-1] == ("Highest mean true accuracy: one-shot (PA&DA). "
                                              "It is the default this result names: one-shot (PA&DA).")
    assert report.verdicts({}, named, complete=False)[-1] == (
        "Highest mean true accuracy so far: one-shot (PA&DA). No method is tied with it "
        "(a partial run names no default yet).")


def test_a_reference_setting_is_measured_against_the_method_it_varies_paired_by_seed():
    gm = [0.60, 0.62, 0.61, 0.63, 0.60, 0.62, 0.61, 0.64, 0.60, 0.62]
    restart = [t - 0.02 - 0.001 * s for s, t in enumerate(gm)]  # worse at every seed
    r100 = [t + d for t, d in zip(gm, [0.01, -0.01, 0.0, 0.005, -0.005, 0.01, -0.01, 0.002, -0.002, 0.0])]
    rows = _rows({"oneshot": [0.6] * 10, "gm": gm, "gm-restart": restart, "gm-r100": r100[:8]},
                 {"oneshot": 40, "gm": 110, "gm-restart": 110, "gm-r100": 110})
    effects = report.setting_effects(rows, n_boot=500)
    assert list(effects) == ["gm-restart", "gm-r100"]  # one-shot and GM vary nothing
    assert effects["gm-restart"]["diff"] == pytest.approx(np.mean(np.subtract(restart, gm)))
    assert (effects["gm-restart"]["wins"], effects["gm-restart"]["losses"], effects["gm-r100"]["paired"]) == (0, 10, 8)
    assert effects["gm-restart"]["p_holm"] == pytest.approx(2 * effects["gm-restart"]["p"])  # Holm over the two
    lines = report.setting_verdicts(effects)
    assert lines[0].startswith("GM split (R=10), leaves restarted: worse than GM split (R=10) by -0.0245")
    assert lines[1].startswith("GM split (R=100): not significant after Holm")
    shown = outcome_search._settings_section(effects)
    assert "| GM split (R=100) | GM split (R=10) | 8 |" in shown and outcome_search._settings_section({}) == ""
