"""Distributed training on two gloo ranks (CPU).

The tests start this file as two worker processes with the environment
torchrun gives its workers (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), let
them save what they trained, and compare it with one process doing the same
work. Every wait has a hard timeout.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # started as a worker script
    sys.path.insert(0, str(ROOT))

from gmgraph.train import SupernetTrainer, TrainConfig, distributed  # noqa: E402
from gmgraph.train.fewshot import FewShotConfig, run_fewshot  # noqa: E402

FEWSHOT = FewShotConfig(method="gm", split_at=(1, 2), rounds=1)
FEWSHOT_TRAIN = TrainConfig(epochs=4, steps_per_epoch=2)
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
        trainer.distribute(distributed.team().data_parallel((0, 1)))
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
    start = time.perf_counter()
    try:
        parallel = distributed.team().data_parallel((0, 1))
        net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
        parallel.bind(net)
        with parallel.batchnorm():
            net(torch.randn(8, 1, 6, 6)).sum().backward()
    except distributed.WorkerLost as exc:
        return {"error": str(exc), "seconds": time.perf_counter() - start}
    return {"error": None}


def worker(scenario: str, out: Path) -> None:
    with distributed.session() as team:
        assert team is not None and team.size == 2
        if scenario == "train":
            result = {"steps": {case: train_steps(case, parallel=True) for case in STEP_CASES},
                      "resumed": fewshot(checkpoint=out / "resume.pt", resume=True),
                      "scratch": fewshot(checkpoint=out / "scratch.pt")}
        else:
            result = lose_contact()
        torch.save(result, out / f"rank{team.rank}.pt")


# rank 1 of the "dies" and "stalls" scenarios: joins the group, then dies at once or stays silent
LOST_PEER = """
import datetime, os, sys, time
import torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
deadline = time.monotonic() + 30
while sys.argv[1] == "stalls" and not os.path.exists(os.path.join(sys.argv[2], "rank0.pt")) \\
        and time.monotonic() < deadline:
    time.sleep(0.2)
os._exit(3)
"""


# -- launching ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(scenario: str, out: Path, *, timeout: float = 90, dist_timeout: int = 30) -> tuple[list, list[str]]:
    """Run ``scenario`` on two ranks; return what each rank saved (None: nothing) and their stderr."""
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "GMGRAPH_DIST_TIMEOUT": str(dist_timeout), "PYTHONPATH": str(ROOT)}
        lost_peer = rank == 1 and scenario in ("dies", "stalls")
        command = [sys.executable, *(["-c", LOST_PEER] if lost_peer else [__file__]), scenario, str(out)]
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    deadline, logs = time.monotonic() + timeout, []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(deadline - time.monotonic(), 1))[1])
    except subprocess.TimeoutExpired:
        logs.append(f"timed out after {timeout} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    saved = [out / f"rank{rank}.pt" for rank in range(2)]
    return [torch.load(f, weights_only=False) if f.exists() else None for f in saved], logs


def close(a, b, atol: float) -> bool:
    """Same keys and tensors within ``atol`` (nested dicts of tensors)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], atol) for k in a)
    return torch.allclose(a.double(), b.double(), atol=atol, rtol=0)


# Float32 reduction-order tolerance for a whole few-shot run on 2 ranks vs 1 process. Every process runs one
# thread (the workers: OMP/MKL_NUM_THREADS=1 and set_num_threads(1); pytest: tests/conftest.py), so a supernet
# trained by one rank computes in the same order as in one process (hence the bit-for-bit test of resumed leaves below); only
# the data-parallel steps sum the global batch of 64 as 32 + 32 across ranks instead of 64 at once.
# Reordering a float32 sum of n terms changes it by about sqrt(n) * u relative (u = 2^-24: rounding errors
# add like a random walk; n * u at worst). The largest sum of a step is the stem conv's weight gradient over
# n = 64 images x 8 x 8 pixels; allowing that for each of the 4 x 2 optimizer steps behind a leaf, as if every
# step were reordered and the differences added up, gives 8 * 64 * 2^-24 = 3.1e-5 of each tensor's largest
# entry (at least 1). Measured: 5e-7; with 2 threads per worker (another conv reduction order in every
# step) it was 4.6e-4, which this tolerance does not hide.
WHOLE_RUN_RTOL = 4 * 2 * (64 * 8 * 8) ** 0.5 * 2.0**-24


def close_rel(a, b, rtol: float) -> bool:
    """Same keys, integer tensors equal, float tensors within ``rtol * max(1, max|b|)`` (nested dicts)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close_rel(a[k], b[k], rtol) for k in a)
    if not b.is_floating_point():
        return torch.equal(a, b)
    if a.shape != b.shape or b.numel() == 0:
        return a.shape == b.shape
    difference = float((a.double() - b.double()).abs().max())
    return difference <= rtol * max(1.0, float(b.double().abs().max()))


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One two-rank job for the training tests: step cases, 4 leaves resumed, a whole few-shot run."""
    out = tmp_path_factory.mktemp("two-ranks")

    def stop(epoch, _):
        if epoch == 3:  # 4 leaves, trained one epoch
            raise Stop

    with pytest.raises(Stop):
        run_fewshot(supernet(), digits(), FEWSHOT, FEWSHOT_TRAIN, quiet=True, checkpoint=out / "alone.pt", on_epoch=stop)
    shutil.copy(out / "alone.pt", out / "resume.pt")
    ranks, logs = spawn("train", out)
    assert ranks[0] is not None and ranks[1] is not None, logs
    return out, ranks


# -- tests ------------------------------------------------------------------------------------


def test_placement_of_leaves_on_ranks():
    assert distributed.placement(1, 2) == [(0, 1)]
    assert distributed.placement(2, 2) == [(0,), (1,)]
    assert distributed.placement(3, 2) == [(0,), (1,), (0,)]
    assert distributed.placement(2, 5) == [(0, 1), (2, 3, 4)]
    assert distributed.bounds(64, 0, 2) == (0, 32) and distributed.bounds(64, 1, 2) == (32, 64)
    assert [distributed.bounds(5, r, 3) for r in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert distributed.bounds(1, 1, 2) == (1, 1)


def test_one_process_never_touches_torch_distributed():
    assert distributed.team() is None
    trainer = SupernetTrainer(supernet(), digits(), TrainConfig(steps_per_epoch=1))
    trainer.train_epoch(quiet=True)
    assert trainer.parallel is None and not torch.distributed.is_initialized()


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_two_ranks_with_32_images_each_step_like_one_process_with_64(two_ranks, case):
    _, ranks = two_ranks
    alone = train_steps(case, parallel=False)
    if case == "darts-penalty":  # the penalty moved the alphas, so matching them checks it
        plain = train_steps("darts", parallel=False)["state"]["sampler"]["per_op"]["alpha"]
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
    out, ranks = two_ranks
    alone = fewshot(checkpoint=out / "alone.pt", resume=True)  # the 4 leaves one after another
    assert len(alone["leaves"]) == 4
    for got in ranks:  # each rank trained 2 of them, then they swapped states
        assert got["resumed"]["tree"] == alone["tree"] and got["resumed"]["budget"] == alone["budget"]
        assert close(got["resumed"]["leaves"], alone["leaves"], 0)  # bit for bit (1 thread everywhere)


def test_a_whole_few_shot_run_does_not_depend_on_the_number_of_ranks(two_ranks):
    out, ranks = two_ranks
    alone = fewshot()  # root trained data-parallel, split scores spread over the ranks, leaves spread
    for got in ranks:
        assert [(t["label"], t["groups"]) for t in got["scratch"]["tree"]] == \
               [(t["label"], t["groups"]) for t in alone["tree"]]
        assert got["scratch"]["budget"] == alone["budget"] == 1 + 2 + 4 + 4
        assert close_rel(got["scratch"]["leaves"], alone["leaves"], WHOLE_RUN_RTOL)
    written = torch.load(out / "scratch.pt", weights_only=True)  # rank 0 wrote the checkpoint
    assert written["epoch"] == 4 and sorted(n["id"] for n in written["nodes"]) == sorted(alone["leaves"])


@pytest.mark.parametrize("scenario", ["dies", "stalls"])
def test_a_lost_rank_stops_the_other_with_a_clear_error(tmp_path, scenario):
    start = time.monotonic()
    ranks, logs = spawn(scenario, tmp_path, timeout=45, dist_timeout=3)
    assert ranks[0] is not None, logs
    error = ranks[0]["error"]
    assert error.startswith("rank 0: lost contact with the other workers")
    assert "GMGRAPH_DIST_TIMEOUT" in error and "--resume" in error
    assert ranks[0]["seconds"] < 10 and time.monotonic() - start < 40


if __name__ == "__main__":
    torch.set_num_threads(1)
    worker(sys.argv[1], Path(sys.argv[2]))
