"""Scale-out on torch.distributed: data-parallel supernet steps and sub-supernets spread over ranks.

Workers are started by ``torchrun`` (or ``gmgraph search --nproc N``, which runs
torch's own elastic launcher); each one calls :func:`session`, which joins the
process group the launcher's environment describes (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...)::

    >>> team() is None            # one process: every helper here stays out of the way
    True
    >>> placement(1, 2), placement(4, 2)
    ([(0, 1)], [(0,), (1,), (0,), (1,)])

Two ways of sharing work, chosen per (sub-)supernet by :func:`placement`:

* **Data parallel** (:class:`DataParallel`): a group of ranks trains one
  supernet. Every rank draws the same path (or Gumbel noise) from the
  sampler's seeded generator and the same global data order from the
  trainer's generator, takes its own slice of each global batch, and sums
  the gradients of the parameters the step used with **one** all-reduce of
  a flat buffer (single-path steps leave most parameters without gradient,
  and the set is the same on every rank because the path is). BatchNorm
  statistics are synchronised too (see :func:`synced_batchnorm`), so two
  ranks with 32 images each take the step one process takes with 64.
* **Sub-supernets** (``gmgraph.train.fewshot``): once there are as many
  leaves as ranks, each rank trains its own leaves alone at the full batch
  size; states are exchanged after the epoch (rank 0 writes the checkpoint).

Why not ``DistributedDataParallel``: a single-path step leaves most of the
supernet unused, which DDP only accepts with ``find_unused_parameters=True``
(a graph walk every step) and then all-reduces every parameter, used or not;
it also divides by the number of ranks, which is exact only when every slice
has the same size (not for a last batch of 65 on two ranks). The flat
all-reduce was as fast or faster in ``benchmarks/bench_distributed.py``
(see ``benchmarks/results/distributed.md``).

A collective that fails (a worker died, or stayed silent for longer than
``GMGRAPH_DIST_TIMEOUT`` seconds, default 600) raises :class:`WorkerLost`,
a :class:`~gmgraph.errors.TrainError`, instead of hanging.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, default_collate

from gmgraph import errors
from gmgraph.errors import ConfigError, GmGraphError, TrainError

TIMEOUT_ENV = "GMGRAPH_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 600.0  # long enough for one rank to finish a leaf epoch while another waits

_BatchNorm = nn.modules.batchnorm._BatchNorm


class WorkerLost(TrainError):
    """A collective failed: another worker died, or stayed silent past the timeout."""


# -- the process group -----------------------------------------------------------------


def timeout_seconds() -> float:
    """Seconds a collective may wait for the other ranks (``GMGRAPH_DIST_TIMEOUT``)."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def launched_by_torchrun() -> bool:
    """True in a worker started by torchrun (or any launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend() -> str:
    """gloo for CPU tensors; NCCL joins in for CUDA tensors when there is a GPU."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def session() -> Iterator[Team | None]:
    """Join the process group torchrun's environment describes; leave it on exit.

    Yields None (and touches nothing) outside torchrun or with one worker.

    Raises:
        WorkerLost: when the other workers cannot be reached in time.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1 or dist.is_initialized():
        yield team()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    with _collective("joining the process group"):
        dist.init_process_group(backend(), timeout=timedelta(seconds=timeout_seconds()))
    try:
        yield team()
    finally:
        global _TEAM
        _TEAM = None
        dist.destroy_process_group()


_TEAM: Team | None = None


def team() -> Team | None:
    """This process's :class:`Team`, or None when it runs alone (no group, or a group of one)."""
    global _TEAM
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    if _TEAM is None or _TEAM.size != dist.get_world_size():
        _TEAM = Team()
    return _TEAM


def placement(n_nodes: int, world: int) -> list[tuple[int, ...]]:
    """The ranks that train each of ``n_nodes`` supernets.

    With at least as many nodes as ranks, nodes go round robin to single
    ranks; with fewer, each node gets a contiguous block of ranks (neighbours
    on one machine) that trains it data-parallel.
    """
    if n_nodes >= world:
        return [(i % world,) for i in range(n_nodes)]
    return [tuple(range(i * world // n_nodes, (i + 1) * world // n_nodes)) for i in range(n_nodes)]


class Team:
    """The ranks of a running job and the few collectives gmgraph needs from them.

    Object collectives pickle (they only carry gmgraph's own states between
    its own workers); every failure becomes a :class:`WorkerLost`::

        with session() as team:                  # under torchrun
            states = team.all_gather({"rank": team.rank}, "saying hello")
    """

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self._groups: dict[tuple[int, ...], Any] = {tuple(range(self.size)): None}

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def group(self, ranks: Sequence[int]):
        """The process group of ``ranks`` (None: everyone). Every rank must ask, in the same order."""
        ranks = tuple(ranks)
        if ranks not in self._groups:
            with _collective("creating a process group"):
                self._groups[ranks] = dist.new_group(list(ranks), timeout=timedelta(seconds=timeout_seconds()))
        return self._groups[ranks]

    def assign(self, n_nodes: int) -> list[tuple[int, ...]]:
        """:func:`placement` of ``n_nodes``, with the process groups it needs created on every rank."""
        ranks = placement(n_nodes, self.size)
        for r in ranks:
            if len(r) > 1:
                self.group(r)
        return ranks

    def data_parallel(self, ranks: Sequence[int]) -> DataParallel | None:
        """A :class:`DataParallel` over ``ranks`` if this rank is one of several, else None."""
        ranks = tuple(ranks)
        if len(ranks) < 2 or self.rank not in ranks:
            return None
        return DataParallel(self.group(ranks))

    def all_gather(self, obj: Any, what: str) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        out: list[Any] = [None] * self.size
        with _collective(what):
            dist.all_gather_object(out, obj)
        return out

    def gather(self, obj: Any, what: str) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        out: list[Any] | None = [None] * self.size if self.is_root else None
        with _collective(what):
            dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any, what: str, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        box = [obj]
        with _collective(what):
            dist.broadcast_object_list(box, src=src)
        return box[0]

    def on_root(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 only; every rank returns its result or raises its gmgraph error."""
        if not self.is_root:
            outcome = self.broadcast(None, what)
            if outcome[0] == "error":
                raise getattr(errors, outcome[1], GmGraphError)(outcome[2])
            return outcome[1]
        try:
            value = fn()
        except GmGraphError as exc:
            self.broadcast(("error", type(exc).__name__, str(exc)), what)
            raise
        self.broadcast(("ok", value), what)
        return value


@contextlib.contextmanager
def _collective(what: str) -> Iterator[None]:
    """Turn a failed collective (dead peer, timeout) into one clear error."""
    try:
        yield
    except GmGraphError:
        raise
    except RuntimeError as exc:  # DistBackendError, DistNetworkError, gloo's errors
        where = f"rank {dist.get_rank()}: " if dist.is_initialized() else ""
        raise WorkerLost(
            f"{where}lost contact with the other workers while {what} ({_reason(exc)}). Another worker died or "
            f"stayed silent for more than {timeout_seconds():.0f} s ({TIMEOUT_ENV}); "
            "continue from the last checkpoint with --resume"
        ) from exc


def _reason(exc: Exception) -> str:
    """The first sentence of a backend error, without gloo's source-file prefix."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip().split("\n")[0])
    return text.split(". ")[0].rstrip(".") or type(exc).__name__


def _all_reduce(tensor: torch.Tensor, group, what: str, op=dist.ReduceOp.SUM) -> torch.Tensor:
    with _collective(what):
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


# -- data-parallel training of one supernet -----------------------------------------


def bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """This rank's slice ``[lo, hi)`` of a global batch of ``n``: contiguous, sizes differ by at most one."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


class _Shards(torch.utils.data.Sampler):
    """This rank's slice of each global batch; the global order is drawn exactly as one process draws it."""

    def __init__(self, batches: BatchSampler, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            lo, hi = bounds(len(batch), self.rank, self.size)
            yield batch[lo:hi]

    def __len__(self) -> int:
        return len(self.batches)


class _Collate:
    """Default collation that also turns an empty slice (a last batch smaller than the group) into empty tensors."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __call__(self, samples: list):
        if samples:
            return default_collate(samples)
        return [t[:0] for t in default_collate([self.dataset[0]])]


class DataParallel:
    """One (sub-)supernet trained by a group of ranks, each on its slice of every global batch.

    Attach it with :meth:`gmgraph.train.loop.SupernetTrainer.distribute`; the
    trainer then calls the hooks below. ``sync_batchnorm=False`` keeps
    per-rank BatchNorm statistics (cheaper, but the run then depends on the
    number of ranks). In every process of the group, after the process group
    is up (e.g. inside :func:`session`)::

        trainer = SupernetTrainer(gm, loaders, TrainConfig())   # loaders: the global batch size
        trainer.distribute(DataParallel())                       # the whole world trains gm
        trainer.train_epoch()
    """

    def __init__(self, group=None, *, sync_batchnorm: bool = True):
        self.group, self.sync_batchnorm = group, sync_batchnorm
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self.src = dist.get_global_rank(group, 0) if group is not None else 0
        self.count = 0  # images in the last step's global batch
        self._bns: list[nn.Module] = []
        self._stamps: torch.Tensor | None = None
        self._step = 0

    def bind(self, gm: nn.Module, arch_parameters: Sequence[torch.Tensor] = ()) -> None:
        """Start every rank from the first rank's weights, buffers and architecture parameters (as DDP does)."""
        with torch.no_grad(), _collective("sharing the starting weights"):
            for tensor in [*gm.parameters(), *gm.buffers(), *arch_parameters]:
                dist.broadcast(tensor.data, src=self.src, group=self.group)
        self._bns = [m for m in gm.modules() if isinstance(m, _BatchNorm)]

    def loader(self, dataset: Dataset, order, batch_size: int, generator: torch.Generator) -> DataLoader:
        """The rank's slices of the global batches ``order`` yields in chunks of ``batch_size``."""
        shards = _Shards(BatchSampler(order, batch_size, drop_last=False), self.rank, self.size)
        return DataLoader(dataset, batch_sampler=shards, generator=generator, collate_fn=_Collate(dataset))

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's slice of one global batch (e.g. a validation batch every rank loaded)."""
        lo, hi = bounds(len(tensors[0]), self.rank, self.size)
        return tuple(t[lo:hi] for t in tensors)

    def batchnorm(self) -> contextlib.AbstractContextManager:
        """Context in which the bound graph's BatchNorms use statistics of the global batch."""
        if not self.sync_batchnorm:
            return contextlib.nullcontext()
        return synced_batchnorm(self._bns, self.group)

    def backward(self, logits: torch.Tensor, y: torch.Tensor, params: Sequence[torch.Tensor]) -> tuple[float, int]:
        """Backward of the local loss, then one all-reduce: mean gradients, loss and hits of the global batch.

        Each rank differentiates the *sum* of its losses; the reduced sum divided
        by the global count is the gradient one process gets from the mean loss.
        """
        loss = F.cross_entropy(logits, y, reduction="sum")
        loss.backward(inputs=[p for p in params if p.requires_grad] or None)  # only what this step updates
        grads = [p.grad for p in params if p.grad is not None]  # same set on every rank: same path
        like = grads[0] if grads else logits
        tail = torch.tensor([loss.item(), float((logits.argmax(1) == y).sum()), float(len(y))],
                            dtype=like.dtype, device=like.device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [tail])
        _all_reduce(flat, self.group, "averaging gradients")
        count = flat[-1].item()
        flat[:-3].div_(count)
        for g, new in zip(grads, flat[:-3].split([g.numel() for g in grads])):
            g.copy_(new.view_as(g))
        self.count = int(round(count))
        return flat[-3].item() / count, int(round(flat[-2].item()))

    # PA&DA's per-sample scores: each rank scores its own slices; at epoch end the
    # score written last in the global order wins, as in one process.

    def start_epoch(self, sampler) -> None:
        scores = getattr(sampler, "sample_scores", None)
        self._stamps = torch.full((len(scores),), -1, dtype=torch.long) if scores is not None and len(scores) else None
        self._step = 0

    def observed(self, index: torch.Tensor) -> None:
        """Called after ``sampler.observe`` with the step's dataset indices."""
        if self._stamps is not None:
            self._stamps[index] = self._step * self.size + self.rank  # global order: step, then rank
        self._step += 1

    def end_epoch(self, sampler) -> None:
        if self._stamps is None:
            return
        scores = sampler.sample_scores
        last = _all_reduce(self._stamps.clone(), self.group, "merging sample scores", dist.ReduceOp.MAX)
        seen = last >= 0
        mine = torch.where(seen & (self._stamps == last), scores, torch.zeros_like(scores))
        merged = _all_reduce(mine, self.group, "merging sample scores")
        sampler.sample_scores = torch.where(seen, merged, scores)


# -- BatchNorm over the global batch ------------------------------------------------------
#
# torch.nn.SyncBatchNorm refuses CPU tensors, and swapping module types would change
# what derive/export see. Instead, for the duration of one step, each BatchNorm's
# forward is routed (an instance attribute shadowing the class method) through a
# function that all-reduces the per-channel sums; leaving the context removes the
# attribute, so copies, checkpoints and exports never see it.


@contextlib.contextmanager
def synced_batchnorm(modules: Sequence[nn.Module], group=None) -> Iterator[None]:
    """Within the context, training-mode BatchNorms of ``modules`` normalise with global-batch statistics."""
    for bn in modules:
        bn.forward = functools.partial(_synced_forward, bn, group)
    try:
        yield
    finally:
        for bn in modules:
            bn.__dict__.pop("forward", None)


def _synced_forward(bn: _BatchNorm, group, x: torch.Tensor) -> torch.Tensor:
    if not bn.training:
        return type(bn).forward(bn, x)
    bn._check_input_dim(x)
    factor = 0.0 if bn.momentum is None else bn.momentum
    tracking = bn.track_running_stats and bn.running_mean is not None
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)  # mirrors _BatchNorm.forward
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    shift = bn.running_mean if tracking else x.new_zeros(x.shape[1])
    mean, var, n = _global_moments(x, shift, group)
    if tracking:
        with torch.no_grad():
            bn.running_mean.mul_(1 - factor).add_(mean.to(x.dtype), alpha=factor)
            bn.running_var.mul_(1 - factor).add_((var * n / max(n - 1, 1)).to(x.dtype), alpha=factor)
    invstd = (var + bn.eps).rsqrt().to(x.dtype)
    return _SyncedNorm.apply(x, bn.weight, bn.bias, mean.to(x.dtype), invstd, n, group)


def _global_moments(x: torch.Tensor, shift: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mean and (biased) variance per channel over every rank's batch, with one all-reduce.

    Sums are taken around ``shift`` (the running mean, the same on every rank)
    and in float64, so the one-pass formula does not lose digits.
    """
    dims = [0, *range(2, x.dim())]
    with torch.no_grad():
        centred = x.detach() - shift.detach().view(_shape(x))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64, device=x.device)
        stats = torch.cat([centred.sum(dims, dtype=torch.float64),
                           centred.square().sum(dims, dtype=torch.float64), count])
        _all_reduce(stats, group, "synchronising BatchNorm")
        c = x.shape[1]
        n = stats[-1].item()
        shifted_mean = stats[:c] / n
        var = (stats[c:2 * c] / n - shifted_mean.square()).clamp_min(0)
        return shift.double() + shifted_mean, var, n


def _shape(x: torch.Tensor) -> list[int]:
    return [1, -1] + [1] * (x.dim() - 2)


class _SyncedNorm(torch.autograd.Function):
    """``(x - mean) * invstd * weight + bias`` with the gradient of a BatchNorm over the global batch."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, n, group):
        shape = _shape(x)
        xhat = (x - mean.view(shape)) * invstd.view(shape)
        out = xhat if weight is None else xhat * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.n, ctx.group = n, group
        return out

    @staticmethod
    def backward(ctx, grad):
        xhat, invstd, weight = ctx.saved_tensors
        shape, dims, c = _shape(xhat), [0, *range(2, xhat.dim())], xhat.shape[1]
        local = torch.cat([grad.sum(dims), (grad * xhat).sum(dims)])  # also the bias and weight gradients
        sums = _all_reduce(local.clone(), ctx.group, "synchronising BatchNorm gradients")
        mean_dy, mean_dy_xhat = (sums / ctx.n).split(c)
        scale = invstd if weight is None else invstd * weight
        grad_x = (grad - mean_dy.view(shape) - xhat * mean_dy_xhat.view(shape)) * scale.view(shape)
        grad_w = local[c:] if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = local[:c] if weight is not None and ctx.needs_input_grad[2] else None
        # weight/bias gradients stay local: the step's gradient all-reduce sums them
        return grad_x, grad_w, grad_b, None, None, None, None


# -- launching on one machine -----------------------------------------------------------------


def launch(args: Sequence[str], nproc: int) -> int:
    """Run ``python -m gmgraph <args>`` in ``nproc`` workers on this machine; return the exit code.

    Uses torch's elastic launcher (what ``torchrun --standalone`` runs) with a
    rendezvous on a free local port. Each worker gets
    ``OMP_NUM_THREADS = cores // nproc`` unless the variable is already set.

    Raises:
        TrainError: when a worker failed for another reason than a user error
            (exit code 2, which rank 0 has already printed).
        KeyboardInterrupt: when the launcher was interrupted (the workers are stopped).
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # failures are reported below
    try:
        with tempfile.TemporaryDirectory(prefix="gmgraph-launch-") as logs:  # the launcher's error files
            config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                                  rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                                  logs_specs=DefaultLogsSpecs(log_dir=logs))
            elastic_launch(config, sys.executable)("-m", "gmgraph", *args)
    except ChildFailedError as exc:
        codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
        if all(code == 2 for code in codes.values()):
            return 2
        detail = ", ".join(f"rank {rank} exit code {code}" for rank, code in sorted(codes.items()))
        raise TrainError(f"the distributed run failed ({detail}); see the workers' messages above") from None
    except SignalException:  # Ctrl-C or a kill: the launcher has stopped the workers
        raise KeyboardInterrupt from None
    return 0
