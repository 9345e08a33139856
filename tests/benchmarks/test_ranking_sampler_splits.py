"""The ranking benchmark's GM and random splits trained with DARTS or SNAS (issue 29): their job plan, their
fork from their own sampler's one-shot run, and their comparison with that run in the summary and report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import ranking_jobs
import ranking_protocol as rp
import ranking_report
import ranking_summary
import torch

from gmgraph.train.checkpoint import load_checkpoint

FRACTIONS = (0.25, 0.5)


def test_a_split_with_a_sampler_forks_from_that_samplers_oneshot_run_which_the_plan_adds():
    jobs = rp.plan_jobs(("oneshot", "darts", "gm-darts", "snas", "random-snas"), 2, (8,), 8, FRACTIONS)
    assert [j.id for j in jobs if j.seed == 0] == [
        "a-8-oneshot-s0", "a-8-darts-s0", "a-8-snas-s0",
        "a-8-gm-darts-s0", "b-8-gm-darts-s0", "a-8-random-snas-s0", "b-8-random-snas-s0", "zc-0-zerocost-s0"]
    by_id = {j.id: j for j in jobs}
    assert by_id["a-8-gm-darts-s1"].needs == "a-8-darts-s1" and by_id["b-8-random-snas-s0"].needs == "a-8-snas-s0"
    gm, gm_darts = rp.schedule_a(rp.method("gm"), 8, FRACTIONS), by_id["a-8-gm-darts-s0"].schedule
    assert gm_darts == gm and (gm_darts.split_at, gm_darts.fork, gm_darts.parent, gm_darts.fanout) == ((2, 4), 2, 8, 2)
    assert by_id["b-8-gm-darts-s0"].schedule == rp.schedule_b(rp.method("gm"), 8, FRACTIONS)
    assert by_id["a-8-darts-s0"].schedule == rp.schedule_a(rp.method("darts"), 8, FRACTIONS)
    for job in jobs:  # every fork's parent is planned, with the fork's sampler and the seed
        if job.kind == "fork":
            parent, m = by_id[job.needs], rp.method(job.method)
            assert (parent.kind, parent.seed, parent.cell) == ("oneshot", job.seed, job.schedule.parent)
            assert (rp.method(parent.method).sampler, rp.method(parent.method).darts_order) == (m.sampler, m.darts_order)
    alone = [j.id for j in rp.plan_jobs(("gm-snas",), 1, (8,), None, FRACTIONS)]  # its one-shot run comes along
    assert alone == ["a-8-oneshot-s0", "a-8-snas-s0", "a-8-gm-snas-s0", "zc-0-zerocost-s0"]
    assert not {m.key for m in rp.SAMPLER_SPLIT_METHODS} & {m.key for m in rp.DEFAULT_METHODS}


def test_the_darts_oneshot_job_leaves_the_fork_its_random_split_continues_with_darts(darts_run):
    plan, oneshot, saved = darts_run  # the job a-4-darts-s0 run whole, and the trainer state of its fork
    jobs = {j.id: j for j in rp.plan_jobs(("random-darts",), 2, (4,), None, plan.fractions)}
    parent, child = jobs["a-4-darts-s0"], jobs["a-4-random-darts-s0"]  # gm-darts: the same fork, plus scoring
    assert _darts_job(plan) == parent  # the job the fixture ran is this parent

    fork = plan.fork_of(child)
    split = ranking_jobs.run_job(plan, child)

    assert fork.name == "E4-darts-s0.pt" and not plan.fork_path(4, 0).exists()  # the uniform fork is another file
    assert saved["sampler"]["name"] == "darts" and saved["epoch"] == 2 and saved["arch_optimizer"] is not None
    assert (split["sampler"], split["leaves"], split["fork"], split["cost"]) == ("darts", 2, 2, 2 + 2 * 2)
    assert split["lr"][:2] == oneshot["lr"][:2] and len(split["lr"]) == 4  # the shared prefix, then its own
    assert [step["epoch"] for step in split["tree"]] == [2] and split["alpha_scores"] is None  # two leaves


def _made_up(results: list[dict], key: str, source: str, rng: np.random.Generator | None) -> list[dict]:
    """Copies of ``source``'s rows as method ``key``, estimates noised (None: unchanged)."""
    out = []
    for r in results:
        if r.get("method") == source:
            est = np.array(r["estimates"]) if rng is None else np.array(r["estimates"]) + rng.normal(0, 0.2, 6)
            out.append(dict(r, id=r["id"].replace(source, key), method=key, estimates=est.tolist()))
    return out


def test_each_split_with_a_sampler_is_paired_with_its_samplers_oneshot_run_only_where_one_ran():
    results, archs, truth = ranking_summary.example_results()
    plain = ranking_summary.summarize(results, archs, truth, epochs=[4], budget=8, primary=4, n_boot=20)
    text = ranking_report.render(plain, ceilings={}, settings_text="", timing_text="", plots=[])
    assert all(not v["methods"] for v in plain["against_own_sampler"]) and "Splitting with another sampler" not in text

    rng = np.random.default_rng(0)  # DARTS one-shot: the truth reversed (as the random split); gm-darts: noisy truth
    darts = _made_up(results, "darts", "random", None)
    gm_darts = _made_up(results, "gm-darts", "oneshot", rng)
    summary = ranking_summary.summarize(results + darts + gm_darts, archs, truth, epochs=[4], budget=8, primary=4,
                                        n_boot=20)

    versus = {(v["rule"], v["cell"]): v["methods"] for v in summary["against_own_sampler"]}
    assert list(versus) == [("a", 4), ("b", 8)]
    for cell, (key, rows) in zip(summary["cells"], versus.items()):
        assert [(r["method"], r["versus"], r["paired"]) for r in rows] == [("gm-darts", "darts", 2)]
        mine = sorted((r for r in gm_darts if r in ranking_summary.cells(gm_darts, [4], 8)[key]), key=lambda r: r["seed"])
        taus = [ranking_summary.rs.kendall_tau(ranking_summary.scores(r), truth) for r in mine]
        assert rows[0]["diffs"] == pytest.approx([t - (-1.0) for t in taus])  # DARTS one-shot ranks in reverse
        assert rows[0]["p_holm"] == rows[0]["p"]  # one pair per cell: Holm leaves it
        main = {r["method"]: r for r in cell["methods"]}["gm-darts"]  # the cell's own table stays vs uniform
        assert main["diffs"] == pytest.approx([t - 1.0 for t in taus])
    assert all(not v["methods"] for v in summary["against_random"])  # no random-darts ran: no pair

    text = ranking_report.render(summary, ceilings={}, settings_text="", timing_text="", plots=[])
    section = text.split("### Splitting with another sampler")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith("| a-4") or line.startswith("| b-8")]
    assert len(rows) == 2 and all("| GM split (DARTS, R small) | one-shot (DARTS) |" in line for line in rows)
    assert f"{versus[('a', 4)][0]['diff_mean']:+.3f}" in rows[0]
    line = next(v for v in ranking_report.verdicts(summary) if v.startswith("- **GM split (DARTS"))
    diff = versus[("a", 4)][0]["diff_mean"]  # 2 seeds: Wilcoxon's p is at least 0.5, never a finding
    assert "; against one-shot (DARTS) at E = 4, no difference detectable" in line and f"Δτ = {diff:+.3f}" in line


def test_a_split_with_a_sampler_is_paired_with_the_random_split_of_that_sampler():
    results, archs, truth = ranking_summary.example_results()
    rows = ranking_summary.cells(results, [4], None)[("a", 4)]
    extra = _made_up(rows, "random-darts", "oneshot", None) + _made_up(rows, "gm-darts", "random", None)
    out = ranking_summary.against_random_split("a", 4, rows + extra + _made_up(rows, "gm", "oneshot", None), truth,
                                               n_boot=20)
    assert [(r["method"], r["versus"], r["diff_mean"]) for r in out["methods"]] == [
        ("gm", "random", 2.0), ("gm-darts", "random-darts", -2.0)]
    assert [r["p_holm"] for r in out["methods"]] == [1.0, 1.0]  # Holm over the cell's two pairs: 2 x 0.5


class _CutOff(Exception):
    """Stands for a worker killed mid-job."""


def _fork_trainer(plan, job) -> dict:
    return load_checkpoint(plan.fork_path(job.cell, job.seed, job.method))["nodes"][0]["trainer"]


def _darts_job(plan) -> rp.Job:
    return next(j for j in rp.plan_jobs(("gm-darts",), 2, (4,), None, plan.fractions) if j.id == "a-4-darts-s0")


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory) -> tuple[ranking_jobs.Plan, dict, dict]:
    """The DARTS one-shot job a-4-darts-s0 run whole, once for the tests that read it: its plan (the work folder
    holding its fork), its result and the trainer state of its fork."""
    whole = dataclasses.replace(ranking_jobs.example_plan(), workdir=str(tmp_path_factory.mktemp("whole")))
    job = _darts_job(whole)
    return whole, ranking_jobs.run_job(whole, job), _fork_trainer(whole, job)


@pytest.mark.parametrize("fork_lost", [False, True])
def test_a_cut_off_oneshot_job_resumes_from_its_checkpoint_to_the_same_result_and_fork(tmp_path, monkeypatch,
                                                                                      fork_lost, darts_run):
    plan = dataclasses.replace(ranking_jobs.example_plan(), workdir=str(tmp_path / "cut"))
    job = _darts_job(plan)
    run, epochs = ranking_jobs.run_fewshot, []

    def cut_after_epoch_3(*args, on_epoch, **kwargs):
        def then_stop(done, result):
            on_epoch(done, result)
            if done == 3:  # after the fork (epoch 2) and the checkpoint of epoch 3
                raise _CutOff
        return run(*args, on_epoch=then_stop, **kwargs)

    def counted(*args, on_epoch, **kwargs):
        return run(*args, on_epoch=lambda done, result: (epochs.append(done), on_epoch(done, result)), **kwargs)

    monkeypatch.setattr(ranking_jobs, "run_fewshot", cut_after_epoch_3)
    with pytest.raises(_CutOff):
        ranking_jobs.run_job(plan, job)
    assert load_checkpoint(plan.checkpoint_path(job))["epoch"] == 3 and not plan.result_path(job).exists()
    if fork_lost:  # as if cut off between the checkpoint and the fork of epoch 2
        plan.fork_path(4, 0, "darts").unlink()
    monkeypatch.setattr(ranking_jobs, "run_fewshot", counted)
    resumed = ranking_jobs.run_job(plan, job)
    # it went on from the checkpoint, or, with its fork lost, ran again from the start to make it
    assert epochs == ([1, 2, 3, 4] if fork_lost else [4])
    _, whole, b = darts_run  # the same job run straight through

    assert (resumed["estimates"], resumed["losses"], resumed["lr"]) == (whole["estimates"], whole["losses"],
                                                                       whole["lr"])
    assert not plan.checkpoint_path(job).exists()  # removed once the result is written
    a = _fork_trainer(plan, job)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert all(torch.equal(a["sampler"]["per_op"]["alpha"][k], v) for k, v in b["sampler"]["per_op"]["alpha"].items())
