"""The ranking benchmark's --quick mode runs end to end on a tiny synthetic ground truth, resumably."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import groundtruth_lib as local
import pytest
import ranking_protocol as rp
import ranking_report

from gmgraph.errors import ConfigError, DataError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ranking.py"
FORKED = [m for m in rp.DEFAULT_METHODS if m.forked]
ARCHS = 4  # estimated per job (--quick's default is 6): Kendall tau, its top 20 % (2 archs) and the plots need no more


def load_script():
    spec = importlib.util.spec_from_file_location("ranking_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ranking():
    return load_script()


@pytest.fixture(scope="module")
def quick(ranking, tmp_path_factory):
    root = tmp_path_factory.mktemp("ranking")
    truth = root / "gt.csv"
    # the pipeline reads only the rows and the side file: made-up accuracies spare training 16 networks
    local.made_up(8, [0, 1], out=truth, schedule=local.Schedule(C=2, N=1, epochs=1, batch_size=16))
    argv = ["--quick", "--groundtruth", str(truth), "--archs", str(ARCHS), "--out", str(root / "out" / "ranking.md"),
            "--workdir", str(root / "work")]
    return {"argv": argv, "root": root, **ranking.main(argv)}


@pytest.mark.e2e
def test_quick_mode_runs_every_method_under_both_rules(quick):
    text = (quick["root"] / "out" / "ranking.md").read_text()
    assert "Rule (a), equal epochs per leaf lineage: E = 4" in text and "equal total budget: 20 supernet-epochs" in text
    for m in rp.DEFAULT_METHODS:
        assert text.count(f"| {ranking_report.label(m.key, 1 if m.key == 'gm' else 2 if m.key == 'gm-large' else None)} |") >= 2
    verdicts = text.split("## Verdict")[1]
    assert verdicts.count("\n- **") == len(rp.DEFAULT_METHODS) - 1 and "equal budget of 20" in verdicts
    assert "zero-cost naswot" in text and "1 seed vs 1 seed" in text
    for name in ("tau_epochs", "forest", "scatter", "op_bias"):
        assert (quick["root"] / "out" / f"ranking_{name}.png").stat().st_size > 1000
    results = {r["id"]: r for r in quick["results"]}
    assert len(results) == 2 * (2 + 2 + 2 * len(FORKED) + 1) and quick["ran"] == len(results)
    for r in results.values():
        if r["kind"] == "zerocost":
            assert set(r["scores"]) == set(rp.ZERO_COST) and all(len(v) == ARCHS for v in r["scores"].values())
            continue
        assert len(r["estimates"]) == len(r["losses"]) == ARCHS and all(0 <= e <= 1 for e in r["estimates"])
        rule = rp.schedule_b if r["rule"] == "b" else rp.schedule_a
        expected = rule(rp.method(r["method"]), r["cell"], (0.5,))
        assert (r["epochs"], tuple(r["split_at"]), r["cost"]) == (expected.epochs, expected.split_at, expected.cost)
        assert r["cost"] == 20 if r["rule"] == "b" else r["epochs"] == r["cell"]
        assert len(r["lr"]) == r["epochs"] and r["lr"][-1] == pytest.approx(0.001)  # every schedule anneals
        if r["kind"] == "fork":  # the shared prefix: the one-shot run's own learning rates up to the fork
            parent = results[f"a-{r['parent']}-oneshot-s{r['seed']}"]
            assert r["lr"][: r["fork"]] == parent["lr"][: r["fork"]] and r["tree"][0]["epoch"] == r["fork"]
    summary = json.loads((quick["root"] / "out" / "ranking_summary.json").read_text())
    cell = next(c for c in summary["cells"] if c["rule"] == "a")
    for row in cell["methods"][1:]:
        assert row["diffs"] == pytest.approx([t - b for t, b in zip(row["taus"], cell["methods"][0]["taus"])])
    with gzip.open(quick["root"] / "out" / "ranking_estimates.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 + ARCHS * (len(results) - 2 + 2 * len(rp.ZERO_COST))


def test_a_rerun_skips_finished_jobs_and_redoes_a_missing_one_identically(ranking, quick):
    work = quick["root"] / "work"
    # a random split: the cheapest job that forks and splits (a tree to compare); that a GM split is reproduced
    # bit for bit is test_ranking_protocol's fork test
    gone = work / "results" / "a-4-random-s1.json"
    before = json.loads(gone.read_text())
    gone.unlink()
    (work / "forks" / "E4-s1.pt").unlink()  # a lost fork: its one-shot run is redone for the jobs that need it
    (work / "results" / "b-20-random-s0.json").unlink()
    again = ranking.main(quick["argv"] + ["--plot", "no"])
    assert again["ran"] == 3
    after = json.loads(gone.read_text())
    assert after["estimates"] == before["estimates"] and after["losses"] == before["losses"]
    assert after["tree"] == before["tree"]


def test_report_only_runs_no_job_and_says_the_report_is_partial(ranking, quick, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(quick["root"] / "work", work)
    (work / "results" / "a-4-random-s1.json").unlink()
    argv = [*quick["argv"][:-2], "--workdir", str(work), "--out", str(tmp_path / "r.md"), "--plot", "no"]
    partial = ranking.main([*argv, "--report-only"])
    planned = len(quick["results"])
    assert partial["ran"] == 0 and len(partial["results"]) == planned - 1
    text = (tmp_path / "r.md").read_text()
    assert f"**Partial: {planned - 1} of the {planned} planned jobs have finished**" in text
    random_row = next(r for c in partial["summary"]["cells"] if c["cell"] == 4 for r in c["methods"]
                      if r["method"] == "random")
    assert random_row["seeds"] == [0]
    for path in (work / "results").glob("*oneshot*"):
        path.unlink()
    with pytest.raises(DataError, match="no one-shot job has finished in .*: nothing to report"):
        ranking.main([*argv, "--report-only"])


def test_plot_only_redraws_from_the_saved_summary(ranking, quick):
    out = quick["root"] / "out"
    for png in out.glob("*.png"):
        png.unlink()
    ranking.main(["--plot-only", "--out", str(out / "ranking.md")])
    assert len(list(out.glob("ranking_*.png"))) == 4


def test_a_work_folder_refuses_results_of_other_settings(ranking, quick):
    with pytest.raises(ConfigError, match="other settings"):
        ranking.main(quick["argv"] + ["--rounds-small", "3"])


def test_two_worker_processes_give_the_same_results_and_wait_for_forks(ranking, quick, tmp_path):
    import ranking_jobs
    import ranking_pool

    args = ranking.parse_args(quick["argv"])
    plan = ranking.make_plan(args)
    # the second forks from the first: the cheapest fork (2 leaves; exhaustive's 5 train 2.5x the epochs)
    wanted = ("a-4-oneshot-s1", "a-4-random-s1")
    jobs = [j for j in rp.plan_jobs(tuple(m.key for m in rp.DEFAULT_METHODS), 2, (4,), 20, (0.5,)) if j.id in wanted]
    fresh = ranking_jobs.Plan(**{**plan.__dict__, "workdir": str(tmp_path)})
    ranking_pool.run_jobs(fresh, jobs, workers=2)
    for job in jobs:
        mine = json.loads(fresh.result_path(job).read_text())
        theirs = json.loads(plan.result_path(job).read_text())
        assert (mine["estimates"], mine["losses"], mine["lr"]) == (theirs["estimates"], theirs["losses"], theirs["lr"])


def test_doctests(ranking):
    import doctest

    import ranking_plots
    import ranking_summary

    for module in (ranking_summary, ranking_report, ranking_plots, ranking):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


def test_more_seeds_in_the_primary_cell_run_that_cell_only(ranking, quick):
    """The baseline, another one-shot sampler and a fork: a job of each kind the primary cell holds (the other
    four methods are forks too, each about as dear as this whole test; plan_jobs's example plans them)."""
    with pytest.raises(ConfigError, match="--primary-seeds 1 must be at least --seeds 2"):
        ranking.parse_args(quick["argv"] + ["--primary-seeds", "1"])
    out = quick["root"] / "primary3" / "ranking.md"
    methods = ("oneshot", "pada", "random")  # one-shot always runs
    argv = [*quick["argv"][:-3], str(out), *quick["argv"][-2:], "--primary-seeds", "3", "--plot", "no",
            "--methods", *methods[1:]]

    done = ranking.main(argv)

    assert done["ran"] == len(methods)  # seed 2 of every chosen method at E = 4, rule (a), nothing else
    assert {r["id"] for r in done["results"] if r["seed"] == 2} == {f"a-4-{m}-s2" for m in methods}
    seeds = {c["cell"]: {len(r["seeds"]) for r in c["methods"]} for c in done["summary"]["cells"]}
    assert seeds == {4: {3}, 20: {2}}  # rule (a) at E = 4; rule (b) at 20 supernet-epochs
    assert "Seeds: 2 per method in every cell, 3 in the primary cell (rule a, E = 4)" in out.read_text()
