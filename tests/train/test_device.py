"""Device placement, precision and host reads of the training engine, on the CPU path (the GPU path: tests/gpu)."""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import gmgraph
from gmgraph.errors import ConfigError
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig, load_checkpoint, train_supernet
from tests.train.conftest import tiny_supernet


class HostReads(TorchDispatchMode):
    """Records every read of a floating-point or boolean tensor's value into Python (``.item()``, ``float()``,
    ``bool()``): on a GPU each would stall the step. Allowed: integer draws of the samplers' CPU generators,
    and torch.optim's step counters, which torch keeps on the CPU also when the parameters are on a GPU."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and (args[0].is_floating_point()
                                                                   or args[0].dtype == torch.bool):
            where = traceback.extract_stack()
            if not any("/torch/optim/" in frame.filename for frame in where):
                self.reads.append(f"{args[0].dtype} read at {where[-2].filename}:{where[-2].lineno}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("sampler", ["uniform", "darts", "gdas", "pada", "proxyless", "snas"])
def test_a_steady_state_step_reads_nothing_back(digits, sampler):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler=sampler, device="cpu"), seed=0)
    batches = iter(digits.train)
    val = iter(digits.val)
    x, y = next(batches)
    trainer.train_step(x, y, torch.arange(len(y)), next(val))  # the first step checks the data's shapes
    with HostReads() as mode:
        for _ in range(3):
            x, y = next(batches)
            loss, hits = trainer.train_step(x, y, torch.arange(len(y)), next(val))
    assert mode.reads == []
    assert loss.dim() == 0 and torch.isfinite(loss) and 0 <= int(hits[0]) <= int(hits[1]) == len(y)  # hits, seen


def test_the_check_sees_a_host_read():
    with HostReads() as mode:
        torch.ones(2).sum().item()
    assert mode.reads


def test_cuda_where_there_is_none_is_a_clear_error(digits, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU on this machine; use --device cpu or auto"):
        SupernetTrainer(tiny_supernet(), digits, TrainConfig(device="cuda"))
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda, cuda:N"):
        TrainConfig(device="gpu")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        SupernetTrainer(tiny_supernet(), digits, TrainConfig(device="cpu", precision="fp16"))


def test_auto_is_the_cpu_without_a_gpu(digits, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(device="auto"))
    assert trainer.device == torch.device("cpu") and not trainer.graphed


def test_bf16_autocast_trains_with_fp32_weights_and_statistics(digits):
    gm = tiny_supernet(seed=0)
    result = train_supernet(gm, digits, epochs=1, steps_per_epoch=4, precision="bf16", device="cpu", quiet=True)
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
    assert all(p.dtype == torch.float32 for p in gm.parameters())
    assert all(b.dtype in (torch.float32, torch.int64) for b in gm.buffers())


def test_bf16_runs_the_forward_in_bf16(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(device="cpu", precision="bf16"))
    seen = []
    trainer.gm.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = next(iter(digits.train))
    trainer.train_step(x, y)
    assert seen == [torch.bfloat16]


def test_checkpoints_hold_cpu_tensors_and_resume_on_another_device_setting(digits, tmp_path):
    train_supernet(tiny_supernet(seed=0), digits, sampler="darts", epochs=2, steps_per_epoch=2, device="cpu",
                   checkpoint_dir=tmp_path, quiet=True)
    state = load_checkpoint(tmp_path / "last.pt")

    def tensors(value):
        if torch.is_tensor(value):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from tensors(v)

    assert all(t.device.type == "cpu" for t in tensors(state))
    assert state["nodes"][0]["trainer"]["device"] == "cpu"
    # device (and cuda_graphs) may change on resume; the numbers' settings may not
    resumed = train_supernet(tiny_supernet(seed=0), digits, sampler="darts", epochs=2, steps_per_epoch=2,
                             device="auto", cuda_graphs=False, checkpoint_dir=tmp_path, resume=True, quiet=True)
    assert len(resumed.history) == 2


def test_the_supernet_and_the_alphas_move_to_the_trainers_device(digits):
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    trainer = SupernetTrainer(gm, digits, TrainConfig(sampler="darts", device="cpu"))
    alphas = list(trainer.sampler.arch_parameters().values())
    assert all(a.device.type == "cpu" for a in alphas)
    assert trainer.arch_optimizer.param_groups[0]["params"][0] is alphas[0]  # the same Parameter objects


def test_a_state_dict_is_a_snapshot_that_later_steps_leave_alone(digits):
    """On the CPU ``.cpu()`` returns the tensor itself: a state taken before a step must not follow the step."""
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="uniform", device="cpu"), seed=0)
    x, y = next(iter(digits.train))
    trainer.train_step(x, y)
    state = trainer.state_dict()
    before = {k: v.clone() for k, v in state["model"].items()}
    trainer.train_step(x, y)
    live = trainer.gm.state_dict()
    assert any(not torch.equal(live[k], before[k]) for k in before)  # the step changed the weights ...
    assert all(torch.equal(state["model"][k], before[k]) for k in before)  # ... and not the snapshot
    assert all(v.data_ptr() != live[k].data_ptr() for k, v in state["model"].items() if v.numel())
