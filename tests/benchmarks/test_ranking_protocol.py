"""Tests of the ranking benchmark's schedules (ranking_protocol) and of its fork (ranking_jobs)."""

from __future__ import annotations

import dataclasses
import doctest
import json
import math
import shutil
from pathlib import Path

import pytest
import ranking_jobs
import ranking_protocol as rp
import torch

import gmgraph
from gmgraph import data
from gmgraph.config import TrainConfig
from gmgraph.errors import ConfigError
from gmgraph.spaces import nb201
from gmgraph.train.checkpoint import save_checkpoint
from gmgraph.train.fewshot import FewShotConfig, run_fewshot

FRACTIONS = (0.25, 0.5)


def brute_cost(epochs: int, split_at: tuple[int, ...], fanout: int) -> int:
    leaves, cost = 1, 0
    for epoch in range(epochs):
        if epoch in split_at:
            leaves *= fanout
        cost += leaves
    return cost


@pytest.mark.parametrize("epochs", [20, 40, 80])
def test_rule_a_gives_every_lineage_the_same_epochs_and_forks_at_the_first_split(epochs):
    for m in rp.METHODS:
        s = rp.schedule_a(m, epochs, FRACTIONS)
        assert s.epochs == epochs and s.parent == epochs and len(s.split_at) == m.splits
        assert s.split_at == tuple(int(f * epochs + 0.5) for f in FRACTIONS)[: m.splits]
        assert s.cost == brute_cost(epochs, s.split_at, m.fanout)
        assert s.fork == (s.split_at[0] if m.forked else None)
    assert rp.schedule_a(rp.method("gm"), 40, FRACTIONS).cost == 10 + 2 * 10 + 4 * 20


@pytest.mark.parametrize("budget", [13, 40, 80])
def test_rule_b_spends_exactly_the_budget_for_every_method(budget):
    fork = rp.split_epochs(budget, FRACTIONS)[0]
    for m in rp.METHODS:
        s = rp.schedule_b(m, budget, FRACTIONS)
        assert s.cost == brute_cost(s.epochs, s.split_at, m.fanout) == budget
        assert s.parent == budget
        if m.forked:
            assert s.fork == s.split_at[0] == fork and s.epochs < budget and s.own_cost == budget - fork
    with pytest.raises(ConfigError, match="spends exactly 41"):
        rp.schedule_b(rp.method("exhaustive"), 41, FRACTIONS)


def test_split_epochs_refuses_schedules_too_short_to_split():
    with pytest.raises(ConfigError, match="use more epochs"):
        rp.split_epochs(2, FRACTIONS)


def test_plan_pairs_every_fork_with_a_planned_oneshot_run():
    jobs = rp.plan_jobs(tuple(m.key for m in rp.DEFAULT_METHODS), 3, (20, 40, 80), 40, FRACTIONS)
    ids = [j.id for j in jobs]
    assert len(ids) == len(set(ids))
    oneshot = {j.id: j for j in jobs if j.kind == "oneshot" and j.method == rp.BASELINE}
    for job in jobs:
        if job.kind == "fork":
            parent = oneshot[job.needs]
            assert parent.seed == job.seed and parent.schedule.epochs == job.schedule.parent
    # per seed: 3 one-shot + 3 PA&DA runs, 5 few-shot methods x (3 E + 1 budget), 1 zero-cost
    assert len(jobs) == 3 * (3 + 3 + 5 * 4 + 1)
    assert sum(j.cost for j in jobs if j.seed == 0) == 2 * 140 + sum(
        rp.schedule_a(m, e, FRACTIONS).own_cost for m in rp.DEFAULT_METHODS if m.forked for e in (20, 40, 80)) + 5 * 30


def test_gm_rounds_keep_scoring_within_one_epoch():
    for steps in (1, 29, 30, 34, 61, 300):
        r = rp.gm_rounds(steps, 30)
        assert r >= 1 and (r * 30 <= steps or r == 1) and (r + 1) * 30 > steps


# ------------------------------------------------------------------ the fork


@pytest.fixture(scope="module")
def loaders():
    return data.load("synthetic", batch_size=16, shape=(1, 8, 8), size=(64, 32, 32))


def net(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gmgraph.trace(nb201.supernet(2, 1, 10, 1))


class _Forked(Exception):
    """Stops a one-shot run once its fork is saved: the epochs after it are not needed."""


def oneshot_fork(loaders, train: TrainConfig, seed: int, at: int) -> dict:
    saved = {}

    def keep(done, result):
        if done == at:
            saved["state"] = ranking_jobs.oneshot_state(result.leaves[0].trainer, done)
            raise _Forked

    with pytest.raises(_Forked):
        run_fewshot(net(seed), loaders, FewShotConfig(method="oneshot"), train, seed=seed, quiet=True, on_epoch=keep)
    return saved["state"]


@pytest.mark.parametrize(("sampler", "split_at"), [("uniform", (2, 3)), ("darts", (2,)), ("snas", (2,))])
def test_a_fork_of_the_oneshot_run_continues_exactly_as_a_fewshot_run_from_scratch(loaders, tmp_path, sampler,
                                                                                     split_at):
    # gm, gm-darts and gm-snas; the weighted samplers run every op, so their runs split once, scoring two labels
    train = TrainConfig(sampler=sampler, epochs=4, steps_per_epoch=2 if sampler == "uniform" else 1)
    labels = None if sampler == "uniform" else ("1<-0", "3<-2")
    config = FewShotConfig(method="gm", split_at=split_at, rounds=1, labels=labels)
    save_checkpoint(ranking_jobs.fork_state(oneshot_fork(loaders, train, 3, 2), config, train, 3), tmp_path / "f.pt")
    forked = run_fewshot(net(99), loaders, config, train, seed=3, quiet=True, checkpoint=tmp_path / "f.pt",
                         resume=True, shared=nb201.shared_parameters)  # the root's own weights are overwritten
    scratch = run_fewshot(net(3), loaders, config, train, seed=3, quiet=True, shared=nb201.shared_parameters)
    assert [leaf.id for leaf in forked.leaves] == [leaf.id for leaf in scratch.leaves]
    assert len(forked.leaves) == 2 ** len(split_at)
    assert forked.budget == scratch.budget == rp.lineage_cost(4, split_at, 2)  # (2, 3): 2 + 2 + 4 * 1
    for a, b in zip(forked.leaves, scratch.leaves):
        sa, sb = a.gm.state_dict(), b.gm.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
        alphas_a, alphas_b = a.trainer.sampler.per_op_state(), b.trainer.sampler.per_op_state()
        assert alphas_a.keys() == alphas_b.keys() and (sampler == "uniform") == (not alphas_a)
        for name, per in alphas_a.items():  # the children's architecture parameters, restricted to their ops
            assert all(torch.equal(per[label], alphas_b[name][label]) for label in per)
            assert all(len(per[label]) == len(a.space[label]) for label in per)


def test_a_shorter_fork_re_aims_the_cosine_to_end_at_its_last_epoch(loaders, tmp_path):
    parent = TrainConfig(epochs=8, steps_per_epoch=1)
    state = oneshot_fork(loaders, parent, 0, 2)
    lr_at_fork = state["nodes"][0]["trainer"]["optimizer"]["param_groups"][0]["lr"]
    short = TrainConfig(epochs=5, steps_per_epoch=1)
    config = FewShotConfig(method="exhaustive", split_at=(2,))
    save_checkpoint(ranking_jobs.fork_state(state, config, short, 0), tmp_path / "f.pt")
    result = run_fewshot(net(0), loaders, config, short, seed=0, quiet=True, checkpoint=tmp_path / "f.pt", resume=True)
    lrs = [h["lr"] for h in result.leaves[0].trainer.history]
    eta, lr0 = parent.lr_min, parent.lr
    expected_prefix = [eta + (lr0 - eta) * (1 + math.cos(math.pi * t / 8)) / 2 for t in (1, 2)]  # the 8-epoch run
    assert lrs[:2] == pytest.approx(expected_prefix) and lr_at_fork == pytest.approx(expected_prefix[1])
    for t in (3, 4, 5):  # then the tail of a 5-epoch cosine, scaled to continue from the fork's rate
        shape = (1 + math.cos(math.pi * t / 5)) / (1 + math.cos(math.pi * 2 / 5))
        assert lrs[t - 1] == pytest.approx(eta + (lr_at_fork - eta) * shape)
    assert lrs[-1] == pytest.approx(eta) and len(result.leaves) == 5 and result.budget == 2 + 5 * 3


def test_doctests():
    import ranking_pool

    for module in (rp, ranking_jobs, ranking_pool):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE).failed == 0


def test_a_work_folder_serves_another_ground_truth_of_the_same_task_and_archs_only(tmp_path):
    plan = ranking_jobs.example_plan()
    ranking_jobs.claim_workdir(plan)
    longer = tmp_path / "longer.csv"  # the same archs and task, trained longer: the estimates still apply
    shutil.copy(plan.groundtruth, longer)
    side = json.loads(open(plan.groundtruth.replace(".csv", ".json")).read())
    side["schedule"]["epochs"] += 5
    longer.with_suffix(".json").write_text(json.dumps(side))
    ranking_jobs.claim_workdir(dataclasses.replace(plan, groundtruth=str(longer)))
    wider = tmp_path / "wider.csv"  # another network size: the supernets would differ
    shutil.copy(plan.groundtruth, wider)
    side["schedule"]["C"] += 1
    wider.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ConfigError, match=r"other settings \(task\)"):
        ranking_jobs.claim_workdir(dataclasses.replace(plan, groundtruth=str(wider)))


def test_a_work_folder_that_named_its_ground_truth_file_is_checked_and_upgraded():
    plan = ranking_jobs.example_plan()
    ranking_jobs.claim_workdir(plan)
    settings = Path(plan.workdir) / "settings.json"
    old = json.loads(settings.read_text())
    task = old.pop("task")
    settings.write_text(json.dumps({**old, "groundtruth": "gt.csv"}))  # as written before the task was recorded
    ranking_jobs.claim_workdir(plan)
    assert json.loads(settings.read_text()) == {**old, "task": task}
    settings.write_text(json.dumps({**old, "groundtruth": "gt.csv", "archs_sha1": "0" * 16}))
    with pytest.raises(ConfigError, match="archs_sha1"):
        ranking_jobs.claim_workdir(plan)


@pytest.mark.parametrize("key", [m.key for m in rp.GRADIENT_METHODS])
def test_the_samplers_with_architecture_parameters_run_as_one_shot_methods(key, tmp_path):
    plan = dataclasses.replace(ranking_jobs.example_plan(), workdir=str(tmp_path), steps_per_epoch=1)
    # E = 2, the shortest lineage with a split epoch (at the plan's half): every epoch runs the same code
    job = next(j for j in rp.plan_jobs(("oneshot", key), 2, (2,), 0, plan.fractions) if j.method == key)
    m = rp.method(key)

    result = ranking_jobs.run_job(plan, job)

    assert (result["sampler"], result["darts_order"]) == (m.sampler, m.darts_order) and not m.forked
    assert result["kind"] == "oneshot" and result["epochs"] == 2 and len(result["lr"]) == 2
    assert len(result["estimates"]) == 4 and all(0 <= e <= 1 for e in result["estimates"])
    assert key not in {d.key for d in rp.DEFAULT_METHODS}  # on request only: the committed report's seven stay
