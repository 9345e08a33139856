"""Throughput of one vs two ranks (gloo, CPU, one thread per process).

Run: ``.venv/bin/python benchmarks/bench_distributed.py [--steps 20]``. NB201
supernet (C=16, N=5, 1 input channel) on digits, global batch 64, uniform
sampler. Two workloads:

* **leaves**: four sub-supernets (the first two labels split in halves), each
  trained ``--steps`` steps at batch 64: one process trains them one after
  another, two ranks train two each (how ``gmgraph search`` places leaves).
* **data-parallel root**: one supernet, 64 images per step: one process, or
  two ranks with 32 each, gradients averaged (a) by gmgraph's flat
  all-reduce of the used gradients, with and without synchronised
  BatchNorm, and (b) by ``DistributedDataParallel(find_unused_parameters=True)``
  with the same synchronised BatchNorm. This is the measurement behind the
  choice of the flat all-reduce.

Workers are this script started twice with torchrun's environment variables.
Writes benchmarks/results/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.data import infinite  # noqa: E402
from gmgraph.passes import restrict  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig, data_parallel, distributed  # noqa: E402

BATCH = 64
MODES = ("alone", "flat", "flat-no-bn-sync", "ddp", "ddp-no-bn-sync")


def supernet() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=16, N=5, in_channels=1))


def leaves() -> list[torch.fx.GraphModule]:
    gm, ops = supernet(), nb201.OPS
    halves = [list(ops[:2]), list(ops[2:])]
    return [restrict(gm, {"1<-0": a, "2<-0": b}) for a in halves for b in halves]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def bench_leaves(steps: int) -> float:
    """Seconds to train all four leaves ``steps`` steps each, split over the ranks."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    loaders = data.load("digits", batch_size=BATCH)
    mine = [SupernetTrainer(leaf, loaders, TrainConfig(sampler="uniform", steps_per_epoch=steps, epochs=2))
            for i, leaf in enumerate(leaves()) if i % world == rank]
    for trainer in mine:  # warm-up
        trainer.config.steps_per_epoch = 2
        trainer.train_epoch(quiet=True)
        trainer.config.steps_per_epoch = steps
    barrier()
    start = time.perf_counter()
    for trainer in mine:
        trainer.train_epoch(quiet=True)
    barrier()
    return time.perf_counter() - start


def bench_root(mode: str, steps: int) -> float:
    """Seconds per data-parallel step of the whole supernet (global batch 64)."""
    trainer = SupernetTrainer(supernet(), data.load("digits", batch_size=BATCH),
                              TrainConfig(sampler="uniform", epochs=2))
    if mode in ("flat", "flat-no-bn-sync"):
        trainer.distribute(data_parallel.DataParallel(None, sync_batchnorm=mode == "flat"))
    step = ddp_step(trainer, sync_batchnorm=mode == "ddp") if mode.startswith("ddp") else None
    loader = infinite(trainer._train_loader() if step is None else trainer.parallel.loader(
        trainer.train_set, torch.utils.data.RandomSampler(trainer.train_set), BATCH, torch.Generator()))
    trainer.gm.train()
    times = []
    for _step in range(steps + 2):  # 2 warm-up steps
        x, y, *_ = next(loader)
        barrier()
        start = time.perf_counter()
        if step is None:
            trainer._weight_step(x, y, torch.arange(len(y)))
        else:
            step(x, y)
        times.append(time.perf_counter() - start)
    return sorted(times[2:])[len(times[2:]) // 2]


def ddp_step(trainer: SupernetTrainer, sync_batchnorm: bool):
    """A training step with DistributedDataParallel doing the gradient all-reduce."""
    from torch.nn.parallel import DistributedDataParallel

    parallel = data_parallel.DataParallel(None, sync_batchnorm=sync_batchnorm)
    parallel.bind(trainer.gm)  # only for its BatchNorm routing and data slices
    trainer.parallel = parallel
    model = DistributedDataParallel(trainer.gm, find_unused_parameters=True, broadcast_buffers=False)
    params = trainer.optimizer.param_groups[0]["params"]

    def step(x, y):
        trainer.optimizer.zero_grad(set_to_none=True)
        with trainer.sampler.context(), parallel.batchnorm():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 5.0)
        trainer.optimizer.step()
        return loss.item()

    return step


def bench_latency(repeats: int = 500) -> float:
    """Seconds per all-reduce of 64 floats: the cost of one synchronised BatchNorm call."""
    tensor = torch.zeros(64)
    barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(tensor)
    return (time.perf_counter() - start) / repeats


def bn_calls(steps: int = 20) -> float:
    """BatchNorm calls per uniform single-path step of the supernet (forward; backward has as many)."""
    trainer = SupernetTrainer(supernet(), data.load("digits", batch_size=8), TrainConfig(sampler="uniform"))
    calls = [0]
    for bn in trainer.gm.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    x, y = next(iter(trainer.val_loader))
    for _ in range(steps):
        with trainer.sampler.context():
            trainer.gm(x[:8])
    return calls[0] / steps


def worker(args) -> None:
    torch.set_num_threads(1)
    with distributed.session():
        result = {"leaves": bench_leaves(args.steps)}
        if dist.is_initialized():
            result["latency"] = bench_latency()
        else:
            result["bn_calls"] = bn_calls()
        modes = ("alone",) if not dist.is_initialized() else MODES[1:]
        result.update({mode: bench_root(mode, args.steps) for mode in modes})
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(json.dumps(result), flush=True)


def launch(world: int, steps: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, "-W", "ignore::FutureWarning", __file__, "--worker",
                                       "--steps", str(steps)], env=env, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    return json.loads(outs[0].strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=16, help="at most 16 (one epoch of digits)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = min(args.steps, 16)
    if args.worker:
        return worker(args)
    one, two = launch(1, args.steps), launch(2, args.steps)
    images = 4 * args.steps * BATCH
    rows = [["leaves: 4 sub-supernets, batch 64", f"{images / one['leaves']:.0f} img/s",
             f"{images / two['leaves']:.0f} img/s", f"{one['leaves'] / two['leaves']:.2f}x"]]
    for mode, name in (("flat", "root, flat all-reduce + synced BN"),
                       ("ddp", "root, DDP(find_unused_parameters) + synced BN"),
                       ("flat-no-bn-sync", "root, flat all-reduce, per-rank BN"),
                       ("ddp-no-bn-sync", "root, DDP(find_unused_parameters), per-rank BN")):
        rows.append([f"{name}: step ms", f"{one['alone'] * 1e3:.1f}", f"{two[mode] * 1e3:.1f}",
                     f"{one['alone'] / two[mode]:.2f}x"])
    rows.append(["all-reduce of 64 floats (one synced BN call): us", "-", f"{two['latency'] * 1e6:.0f}",
                 f"{2 * one['bn_calls']:.0f} calls per step"])
    load = os.getloadavg()[0]
    save("distributed", f"One vs two ranks (gloo, 1 thread each), NB201 C=16 N=5 on digits, {args.steps} steps",
         ["workload", "1 process", "2 ranks", "speed-up"], rows,
         notes=f"Load average when the run finished: {load:.1f} (the 2 cores are shared with other jobs, so two "
               "ranks rarely get two free cores). Root steps are medians; the 1-process root step is the plain "
               "single-process step with batch 64. Leaf epochs need no communication, so their speed-up is bounded "
               "by free cores only; a data-parallel step pays one all-reduce per BatchNorm call (forward and "
               "backward) for statistics of the global batch, which dominates at this size.")


if __name__ == "__main__":
    main()
