"""Data-parallel numerics: one supernet trained by a group of ranks, each on its slice of every global batch.

Every rank draws the same path (or Gumbel noise) from the sampler's seeded
generator and the same global data order from the trainer's generator, takes
its own slice of each global batch (:func:`bounds`), and sums the gradients
of the parameters the step used with **one** all-reduce of a flat buffer
(single-path steps leave most parameters without gradient, and the set is
the same on every rank because the path is). BatchNorm statistics are
synchronised too (see :func:`synced_batchnorm`), so two ranks with 32 images
each take the step one process takes with 64::

    >>> bounds(65, 0, 2), bounds(65, 1, 2)     # a last batch of 65 on two ranks
    ((0, 33), (33, 65))

Why not ``DistributedDataParallel``: a single-path step leaves most of the
supernet unused, which DDP only accepts with ``find_unused_parameters=True``
(a graph walk every step) and then all-reduces every parameter, used or not;
it also divides by the number of ranks, which is exact only when every slice
has the same size (not for a last batch of 65 on two ranks). The flat
all-reduce was as fast or faster in ``benchmarks/bench_distributed.py``
(see ``benchmarks/results/distributed.md``).

The process group, the team of ranks and the errors of a lost worker are
:mod:`gmgraph.train.distributed`; this module only does arithmetic over them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, default_collate

from gmgraph.task import Task, get_task
from gmgraph.train.distributed import collective

if TYPE_CHECKING:
    from gmgraph.train.distributed import Team

_BatchNorm = nn.modules.batchnorm._BatchNorm


def over(team: Team, ranks: Sequence[int]) -> DataParallel | None:
    """A :class:`DataParallel` over ``ranks`` if this rank of ``team`` is one of several, else None.

    Every rank of the team must call it for the same ``ranks`` (the group is created on all of them).
    """
    ranks = tuple(ranks)
    if len(ranks) < 2 or team.rank not in ranks:
        return None
    return DataParallel(team.group(ranks))


def _all_reduce(tensor: torch.Tensor, group, what: str, op=dist.ReduceOp.SUM) -> torch.Tensor:
    with collective(what):
        dist.all_reduce(tensor, op=op, group=group)
    return tensor


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
    """A collation (default: torch's) that also turns an empty slice (a last batch smaller than the group) into
    empty tensors of the right shapes."""

    def __init__(self, dataset: Dataset, collate=default_collate):
        self.dataset, self.collate = dataset, collate

    def __call__(self, samples: list):
        if samples:
            return self.collate(samples)
        return _emptied(self.collate([self.dataset[0]]))


def _emptied(batch):
    """``batch`` with every tensor cut to length 0 (tuples, lists and dicts of them too)."""
    if isinstance(batch, torch.Tensor):
        return batch[:0]
    if isinstance(batch, dict):
        return {k: _emptied(v) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(_emptied(v) for v in batch)
    return batch


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
        with torch.no_grad(), collective("sharing the starting weights"):
            for tensor in [*gm.parameters(), *gm.buffers(), *arch_parameters]:
                dist.broadcast(tensor.data, src=self.src, group=self.group)
        self._bns = [m for m in gm.modules() if isinstance(m, _BatchNorm)]

    def loader(self, dataset: Dataset, order, batch_size: int, generator: torch.Generator,
               collate=default_collate) -> DataLoader:
        """The rank's slices of the global batches ``order`` yields in chunks of ``batch_size``, collated by
        ``collate``."""
        shards = _Shards(BatchSampler(order, batch_size, drop_last=False), self.rank, self.size)
        return DataLoader(dataset, batch_sampler=shards, generator=generator, collate_fn=_Collate(dataset, collate))

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's slice of one global batch (e.g. a validation batch every rank loaded)."""
        lo, hi = bounds(len(tensors[0]), self.rank, self.size)
        return tuple(t[lo:hi] for t in tensors)

    def batchnorm(self) -> contextlib.AbstractContextManager:
        """Context in which the bound graph's BatchNorms use statistics of the global batch."""
        if not self.sync_batchnorm:
            return contextlib.nullcontext()
        return synced_batchnorm(self._bns, self.group)

    def backward(self, logits: torch.Tensor, y: torch.Tensor, params: Sequence[torch.Tensor],
                 task: Task | str = "classification") -> tuple[float, torch.Tensor]:
        """Backward of the local loss, then one all-reduce: mean gradients, loss and the task's metric statistics
        (hits, for classification) of the global batch.

        Each rank differentiates the *sum* of its losses over the target's elements; the reduced sum divided
        by the global count of elements is the gradient one process gets from the mean loss.
        """
        task = get_task(task)
        loss = task.loss(logits, y, reduction="sum")
        loss.backward(inputs=[p for p in params if p.requires_grad] or None)  # only what this step updates
        grads = [p.grad for p in params if p.grad is not None]  # same set on every rank: same path
        like = grads[0] if grads else logits
        stats = task.statistics(logits.detach(), y)
        counts = loss.new_tensor([float(y.numel()), float(len(y))], dtype=torch.float64)  # elements, samples
        tail = torch.cat([loss.detach().double().reshape(1), counts, stats]).to(like.dtype)
        flat = torch.cat([g.reshape(-1) for g in grads] + [tail])
        _all_reduce(flat, self.group, "averaging gradients")
        head = sum(g.numel() for g in grads)
        loss_sum, elements, samples = flat[head:head + 3].tolist()
        flat[:head].div_(elements)
        for g, new in zip(grads, flat[:head].split([g.numel() for g in grads])):
            g.copy_(new.view_as(g))
        self.count = int(round(samples))  # the global batch (the epoch's mean loss weighs steps by it)
        return loss_sum / elements, flat[head + 3:].double()

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
