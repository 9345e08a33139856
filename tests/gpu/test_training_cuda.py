"""The training engine on CUDA: placement, no host syncs, CUDA graphs equal eager steps, bf16, resume across devices.

Run where a GPU is lent: ``python -m pytest tests/gpu -q`` (skipped with "needs CUDA" elsewhere).
"""

from __future__ import annotations

import json

import pytest
import torch

import gmgraph
from gmgraph import data
from gmgraph.device import no_host_sync
from gmgraph.passes import fuse
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig, load_checkpoint, train_supernet

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64, seed=0)


def supernet(seed=0):
    torch.manual_seed(seed)
    return gmgraph.trace(nb201.supernet(C=8, N=1, in_channels=1))


def steps(trainer, loaders, n, *, first=0):
    """``n`` steps on fixed batches (after ``first`` skipped ones); the losses, read at the end."""
    train, val = list(loaders.train)[first:first + n], list(loaders.val)
    losses = [trainer.train_step(x, y, torch.arange(len(y)), val[i % len(val)])[0] for i, (x, y) in enumerate(train)]
    return torch.stack(losses).tolist()


@pytest.mark.parametrize("sampler", ["uniform", "darts", "gdas", "pada"])
def test_steady_state_steps_never_sync(digits, sampler):
    trainer = SupernetTrainer(supernet(), digits, TrainConfig(sampler=sampler, device="cuda"), seed=0)
    assert next(trainer.gm.parameters()).device.type == "cuda"
    steps(trainer, digits, 2)  # first step checks shapes; darts captures its graphs here
    batches = [(x.pin_memory(), y.pin_memory()) for x, y in list(digits.train)[2:5]]
    val = [(x.pin_memory(), y.pin_memory()) for x, y in list(digits.val)[:3]]
    with no_host_sync(trainer.device):
        for (x, y), v in zip(batches, val):
            trainer.train_step(x, y, torch.arange(len(y)).pin_memory(), v)  # as the pinned loader gives them
    torch.cuda.synchronize()


@pytest.mark.parametrize("fused", [False, True])
def test_cuda_graph_steps_equal_eager_steps(digits, fused):
    def run(graphs):
        gm = supernet()
        gm = fuse(gm) if fused else gm
        trainer = SupernetTrainer(gm, digits, TrainConfig(sampler="darts", device="cuda", cuda_graphs=graphs),
                                  seed=0)
        losses = steps(trainer, digits, 6)
        return trainer, losses

    eager, eager_losses = run(False)
    graphed, graphed_losses = run(True)
    assert graphed.graphed and graphed._graphs.get("weights") is not None  # it really replayed a graph
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-4)
    for a, b in zip(eager.gm.parameters(), graphed.gm.parameters()):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)


def test_a_short_last_batch_runs_eagerly_beside_the_graph(digits):
    trainer = SupernetTrainer(supernet(), digits, TrainConfig(sampler="darts", device="cuda"), seed=0)
    stats = trainer.train_epoch(quiet=True)  # 1077 images in batches of 64: the last one has 53
    assert trainer._graphs.get("weights") is not None and torch.isfinite(torch.tensor(stats["loss"]))


def test_bf16_is_close_to_fp32_and_keeps_fp32_state(digits):
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = SupernetTrainer(supernet(), digits, TrainConfig(device="cuda", precision=precision), seed=0)
        losses[precision] = steps(trainer, digits, 3)
        assert all(p.dtype == torch.float32 for p in trainer.gm.parameters())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=5e-2)


def test_fp16_trains_with_a_scaler(digits):
    result = train_supernet(supernet(), digits, epochs=1, steps_per_epoch=5, device="cuda", precision="fp16",
                            quiet=True)
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))


class Stop(Exception):
    pass


def stop_after_first(stats):
    raise Stop


def test_a_run_started_on_cuda_resumes_on_the_cpu(digits, tmp_path):
    with pytest.raises(Stop):
        train_supernet(supernet(), digits, sampler="pada", epochs=2, steps_per_epoch=2, device="cuda",
                       checkpoint_dir=tmp_path, quiet=True, on_epoch=stop_after_first)
    assert load_checkpoint(tmp_path / "last.pt")["nodes"][0]["trainer"]["device"].startswith("cuda")
    on_cpu = train_supernet(supernet(), digits, sampler="pada", epochs=2, steps_per_epoch=2, device="cpu",
                            checkpoint_dir=tmp_path, resume=True, quiet=True)
    assert next(on_cpu.gm.parameters()).device.type == "cpu" and len(on_cpu.history) == 2


def test_search_on_cuda_says_where_it_ran(tmp_path):
    from gmgraph.cli import main

    out = tmp_path / "run"
    assert main(["search", "--device", "cuda", "--width", "4", "--cells", "1", "--epochs", "3", "--split-at", "1,2",
                 "--rounds", "1", "--evaluations", "4", "--final-epochs", "1", "--quiet", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["hardware"]["device"].startswith("cuda") and report["hardware"]["gpu"]
