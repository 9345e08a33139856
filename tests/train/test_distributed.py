"""Distributed training on two gloo ranks (CPU).

The tests fork two worker processes from this one and give each the environment
torchrun gives its workers (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), let
them save what they trained, and compare it with one process doing the same
work. Every wait has a hard timeout.

Forked, not started afresh: a fresh rank spent about 4 s of CPU importing torch,
scikit-learn's digits and torch's optimizer machinery before its first step,
which the forked ranks find already imported here (see :func:`warm_up`). Each is
still a process of its own, joining the process group from its environment.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gmgraph.train import SupernetTrainer, TrainConfig, data_parallel, distributed
from gmgraph.train.fewshot import FewShotConfig, run_fewshot
from tests.conftest import live_as_forked_child

FEWSHOT = FewShotConfig(method="gm", split_at=(1, 2), rounds=1)
FEWSHOT_TRAIN = TrainConfig(sampler="uniform", epochs=4, steps_per_epoch=2)  # the claim is made for uniform paths
STEP_CASES = {  # name: (sampler, epochs, steps per epoch, training images (None: all))
    "uniform": ("uniform", 1, 5, None),
    "gdas": ("gdas", 1, 5, None),
    "pada": ("pada", 3, 3, None),
    "darts": ("darts", 1, 2, None),
    "darts-penalty": ("darts", 1, 2, None),  # with an architecture penalty, as --latency-weight adds
    "empty-slice": ("uniform", 1, None, 65),  # the last global batch holds 1 image: rank 1 gets none
}


def first_op_penalty(alphas, space) -> torch.Tensor:
    """A stand-in for the latency term: 0.5 x the summed probability of each decision's first op."""
    return 0.5 * sum(alpha.softmax(0)[0] for alpha in alphas.values())


# -- what the workers and the single process both run ------------------------------------


def supernet():
    from tests.train.conftest import tiny_supernet  # imports the spaces (slow): only where needed

    return tiny_supernet()


def digits():
    from gmgraph import data

    return data.load("digits", batch_size=64, seed=0)


def train_steps(case: str, parallel: bool) -> dict:
    """Train the tiny supernet on global batches of 64; return its state and the paths it took."""
    sampler, epochs, steps, images = STEP_CASES[case]
    loaders = digits()
    if images is not None:
        x, y = loaders.train.dataset.tensors
        loaders = (DataLoader(TensorDataset(x[:images], y[:images]), batch_size=64), loaders.val)
    trainer = SupernetTrainer(supernet(), loaders, TrainConfig(sampler=sampler, epochs=epochs,
                                                              steps_per_epoch=steps), seed=3,
                              arch_penalty=first_op_penalty if case == "darts-penalty" else None)
    if parallel:
        trainer.distribute(data_parallel.over(distributed.team(), (0, 1)))
    paths, context = [], trainer.sampler.context

    def recording(*args):
        manager = context(*args)
        paths.append(dict(trainer.sampler.last_arch or {}))
        return manager

    trainer.sampler.context = recording
    for _ in range(epochs):
        trainer.train_epoch(quiet=True)
    return {"state": trainer.state_dict(), "paths": paths}


def fewshot(**kwargs) -> dict:
    result = run_fewshot(supernet(), digits(), FEWSHOT, FEWSHOT_TRAIN, quiet=True, **kwargs)
    return {"tree": result.tree, "budget": result.budget,
            "leaves": {leaf.id: leaf.gm.state_dict() for leaf in result.leaves}}


def lose_contact() -> dict:
    """A data-parallel BatchNorm step whose partner is gone."""
    try:
        parallel = data_parallel.over(distributed.team(), (0, 1))
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
        parallel.bind(net)
        with parallel.batchnorm():
            net(torch.randn(8, 1, 6, 6)).sum().backward()
    except distributed.WorkerLost as exc:
        return {"error": str(exc)}
    return {"error": None}


def keep_leaf_checkpoint(out: Path, team):
    """An ``on_epoch`` that copies the checkpoint (rank 0 has just written it) after the 4 leaves' first epoch to
    resume.pt (the ranks resume from it) and alone.pt (one process resumes from it)."""
    def keep(epoch, _):
        if epoch == 3 and team.is_root:
            for name in ("resume.pt", "alone.pt"):
                shutil.copy(out / "scratch.pt", out / name)
    return keep


def worker(scenario: str, out: Path) -> None:
    with distributed.session() as team:
        assert team is not None and team.size == 2
        if scenario != "train":
            torch.save(lose_contact(), out / f"rank{team.rank}.pt")
            return
        result = {"steps": {case: train_steps(case, parallel=True) for case in STEP_CASES},
                  "scratch": fewshot(checkpoint=out / "scratch.pt", on_epoch=keep_leaf_checkpoint(out, team))}
        result["resumed"] = fewshot(checkpoint=out / "resume.pt", resume=True)
        torch.save(result, out / f"rank{team.rank}.pt")
        # The "dies" case ends this job (no processes of its own): once both ranks are past every collective of
        # the training, rank 1 dies without leaving the group, and rank 0 tries one more step.
        team.all_gather(None, "finishing the training")
        if team.rank == 1:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
        torch.save(lose_contact(), out / "dies.pt")


def stay_silent(out: Path) -> None:
    """Rank 1 of the "stalls" scenario: joins the group (torch alone, not gmgraph's session), then stays silent until
    rank 0 has saved what it saw."""
    import datetime

    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    deadline = time.monotonic() + 30  # clock: hang guard
    while not (out / "rank0.pt").exists() and time.monotonic() < deadline:  # clock: hang guard
        time.sleep(0.2)
    os._exit(3)


# -- launching ------------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all bound at once, so none is handed out twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def warm_up() -> None:
    """Import here what the ranks use (the spaces, scikit-learn's digits, every sampler, torch's optimizer
    machinery, the few-shot splitters), so that the ranks forked from this process start with it."""
    for sampler in sorted({sampler for sampler, *_ in STEP_CASES.values()}):
        SupernetTrainer(supernet(), digits(), TrainConfig(sampler=sampler))


def run_rank(scenario: str, out: Path, env: dict[str, str]) -> None:
    """A forked rank: torchrun's environment, everything it prints in rank<RANK>.log, its outcome in rank<RANK>.pt."""
    log = out / f"rank{env['RANK']}.log"
    live_as_forked_child(log, log, env, lambda: rank_body(scenario, out, env["RANK"]))


def rank_body(scenario: str, out: Path, rank: str) -> int:
    torch.set_num_threads(1)
    if scenario == "stalls" and rank == "1":
        stay_silent(out)
    else:
        worker(scenario, out)
    return 0


def start(scenario: str, out: Path, port: int, *, dist_timeout: int = 30) -> list:
    """Fork ``scenario``'s two ranks, which meet at ``port``; :func:`finish` waits for them."""
    fork = multiprocessing.get_context("fork")
    procs = []
    for rank in range(2):
        env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), "GMGRAPH_DIST_TIMEOUT": str(dist_timeout)}
        procs.append(fork.Process(target=run_rank, args=(scenario, out, env), daemon=True))
        procs[-1].start()
    return procs


def finish(procs: list, out: Path, *, timeout: float = 600) -> tuple[list, list[str]]:
    """Wait for the ranks; return what each saved (None: nothing) and what each printed.

    ``timeout`` only guards against a hang (the training job takes 5 to 40 s); it never decides a test.
    """
    deadline = time.monotonic() + timeout  # clock: hang guard
    for p in procs:
        p.join(max(deadline - time.monotonic(), 1))  # clock: hang guard
    hung = [p for p in procs if p.exitcode is None]
    for p in hung:
        p.kill()
        p.join()
    logs = [(out / f"rank{rank}.log").read_text() if (out / f"rank{rank}.log").exists() else ""
            for rank in range(len(procs))]
    if hung:
        logs.append(f"timed out after {timeout} s")
    saved = [out / f"rank{rank}.pt" for rank in range(2)]
    return [torch.load(f, weights_only=False) if f.exists() else None for f in saved], logs


def close(a, b, atol: float) -> bool:
    """Same keys and tensors within ``atol`` (nested dicts of tensors)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], atol) for k in a)
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=0)


# What "does not depend on the number of ranks" can promise, and at what precision (it must hold on any CPU):
#
# * A data-parallel step sums the global batch of 64 as 32 + 32 across ranks instead of 64 at once. Reordering a
#   float32 sum of n terms moves it by about sqrt(n) * u relative (u = 2^-24; at worst n * u). The largest sum of
#   a step is the stem conv's weight gradient over n = 64 images x 8 x 8 pixels: sqrt(4096) * 2^-24 = 3.8e-6 of
#   the gradient, and a step moves weights by lr = 0.05 times it. The step tests take at most 9 such steps on
#   weights and statistics of order 0.1 to 1, so their 1e-5 absolute bound holds with a margin on any CPU.
# * A whole few-shot run (11 supernet-epochs) feeds each step's difference into the next, and training amplifies
#   it: the whole run's leaf weights ended 4.6e-4 apart (relative to each tensor's largest entry) on an AVX-512
#   CPU and 1.6e-4 under `make test-portable`'s kernels, against 2e-7 on an AVX2 CPU. No bound derived from
#   rounding covers that, so a whole run promises the same DECISIONS (split tree, groups, the order of the labels'
#   scores, the budget), exactly; its weights are checked step by step above, and bit for bit where no sum is
#   reordered (leaves trained one per rank, below).
# * The split scores are taken after at most 4 data-parallel steps, from weights within the step tests' bound:
#   they agree to 1e-7 relative (both configurations), so 1e-4 holds with a wide margin, and the smallest gap
#   between a decision's best and second-best label here (0.056, 1%) is far wider still: the decisions cannot flip.
SCORE_RTOL = 1e-4


def score_order(tree: list[dict]) -> list[list[str]]:
    """Each split's labels from the highest score down: what the decision was made from."""
    return [sorted(node["scores"], key=node["scores"].get, reverse=True) for node in tree]


@pytest.fixture(scope="module")
def ports() -> list[int]:
    """The two jobs' ports: the two-rank job's, and the "stalls" job's (the jobs run at the same time)."""
    return free_ports(2)


@pytest.fixture(scope="module")
def stalls_job(tmp_path_factory, ports):
    """The "stalls" job of the lost-rank test (rank 1 joins and stays silent; rank 0 waits out its 3 s timeout),
    started before the two-rank job (see ``two_ranks``) so that its wait overlaps that job's training."""
    out = tmp_path_factory.mktemp("stalls")
    procs = start("stalls", out, ports[1], dist_timeout=3)
    yield out, procs
    for p in procs:  # a failed test left it running
        if p.is_alive():
            p.kill()
            p.join()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, ports, stalls_job):
    """One two-rank job for the training tests (step cases, a whole few-shot run, its 4 leaves resumed) that ends
    with the "dies" case of the lost-rank test (rank 0's outcome in dies.pt), and what one process computes for the
    step cases and the whole run, worked out here while the ranks run. (``stalls_job``: only started first.)"""
    out = tmp_path_factory.mktemp("two-ranks")
    warm_up()
    procs = start("train", out, ports[0])
    try:
        alone = {"steps": {case: train_steps(case, parallel=False) for case in STEP_CASES}, "scratch": fewshot()}
    finally:
        ranks, logs = finish(procs, out)
    assert ranks[0] is not None and ranks[1] is not None, logs
    return out, ranks, alone, logs


LOST = ("dies", "stalls")


@pytest.fixture(scope="module")
def lost_ranks(two_ranks, stalls_job):
    """What rank 0 saw when rank 1 was lost: "dies" ends the two-rank job (rank 1 exits in the middle of its
    session), "stalls" is a job of its own (``stalls_job``)."""
    stalled, logs = finish(stalls_job[1], stalls_job[0], timeout=300)
    died, job_logs = two_ranks[0] / "dies.pt", two_ranks[3]
    return {"dies": ([torch.load(died, weights_only=False) if died.exists() else None], job_logs),
            "stalls": (stalled, logs)}


# -- tests ------------------------------------------------------------------------------------


def test_placement_of_leaves_on_ranks():
    assert distributed.placement(1, 2) == [(0, 1)]
    assert distributed.placement(2, 2) == [(0,), (1,)]
    assert distributed.placement(3, 2) == [(0,), (1,), (0,)]
    assert distributed.placement(2, 5) == [(0, 1), (2, 3, 4)]
    assert data_parallel.bounds(64, 0, 2) == (0, 32) and data_parallel.bounds(64, 1, 2) == (32, 64)
    assert [data_parallel.bounds(5, r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert data_parallel.bounds(1, 1, 2) == (1, 1)


@pytest.mark.e2e  # the first test of the two-rank job (two_ranks): the job is set up for it
@pytest.mark.parametrize("case", list(STEP_CASES))
def test_two_ranks_with_32_images_each_step_like_one_process_with_64(two_ranks, case):
    _, ranks, one, _ = two_ranks
    alone = one["steps"][case]
    if case == "darts-penalty":  # the penalty moved the alphas, so matching them checks it
        plain = one["steps"]["darts"]["state"]["sampler"]["per_op"]["alpha"]
        assert not close(alone["state"]["sampler"]["per_op"]["alpha"], plain, 1e-3)
    for got in (ranks[0]["steps"][case], ranks[1]["steps"][case]):
        assert got["paths"] == alone["paths"]  # the same child every step
        assert close(got["state"]["model"], alone["state"]["model"], 1e-5)  # weights and BN statistics
        sampler, expected = got["state"]["sampler"], alone["state"]["sampler"]
        for name in ("alpha", "probs", "grad_norm"):  # architecture parameters, PA&DA path statistics
            assert close(sampler["per_op"].get(name, {}), expected["per_op"].get(name, {}), 1e-5)
        if "sample_scores" in expected:  # PA&DA: each rank scored its own slices
            assert torch.allclose(sampler["sample_scores"], expected["sample_scores"], atol=1e-5)
        assert torch.equal(got["state"]["rng"]["data"], alone["state"]["rng"]["data"])  # same global order
        keys = ("loss", "accuracy", "steps")
        history = [h[k] for h in got["state"]["history"] for k in keys]
        assert history == pytest.approx([h[k] for h in alone["state"]["history"] for k in keys], abs=1e-5)


def test_leaves_on_two_ranks_train_like_leaves_one_after_another(two_ranks):
    out, ranks, _, _ = two_ranks
    # the 4 leaves one after another, from the checkpoint rank 0 wrote after their first epoch (alone.pt, a copy
    # of what the ranks resumed from)
    alone = fewshot(checkpoint=out / "alone.pt", resume=True)
    assert len(alone["leaves"]) == 4
    for got in ranks:  # each rank trained 2 of them, then they swapped states
        assert got["resumed"]["tree"] == alone["tree"] and got["resumed"]["budget"] == alone["budget"]
        assert close(got["resumed"]["leaves"], alone["leaves"], 0)  # bit for bit (1 thread everywhere)


def test_a_whole_few_shot_run_does_not_depend_on_the_number_of_ranks(two_ranks):
    out, ranks, one, _ = two_ranks
    alone = one["scratch"]  # the ranks trained the root data-parallel and spread the split scores and the leaves
    for got in ranks:
        assert [(t["label"], t["groups"]) for t in got["scratch"]["tree"]] == \
               [(t["label"], t["groups"]) for t in alone["tree"]]
        assert score_order(got["scratch"]["tree"]) == score_order(alone["tree"])
        for mine, theirs in zip(got["scratch"]["tree"], alone["tree"]):
            assert mine["scores"] == pytest.approx(theirs["scores"], rel=SCORE_RTOL)
        assert got["scratch"]["budget"] == alone["budget"] == 1 + 2 + 4 + 4
        assert got["scratch"]["leaves"].keys() == alone["leaves"].keys()
    written = torch.load(out / "scratch.pt", weights_only=True)  # rank 0 wrote the checkpoint
    assert written["epoch"] == 4 and sorted(n["id"] for n in written["nodes"]) == sorted(alone["leaves"])


@pytest.mark.parametrize("scenario", LOST)
def test_a_lost_rank_stops_the_other_with_a_clear_error(lost_ranks, scenario):
    ranks, logs = lost_ranks[scenario]
    assert ranks[0] is not None, logs
    error = ranks[0]["error"]
    assert error.startswith("rank 0: lost contact with the other workers")
    assert "GMGRAPH_DIST_TIMEOUT" in error and "--resume" in error


# (after the two-rank tests: their jobs start sooner, and this process's imports overlap them)
def test_one_process_never_touches_torch_distributed():
    assert distributed.team() is None
    trainer = SupernetTrainer(supernet(), digits(), TrainConfig(steps_per_epoch=1))
    trainer.train_epoch(quiet=True)
    assert trainer.parallel is None and not torch.distributed.is_initialized()
