"""Metric-driven splitting (Ly-Manson et al., AutoML 2024) and the baseline splits.

Gradient matching compares the candidate ops of one decision by their
gradients; any per-architecture metric ``f`` works the same way::

    D[i, j] = mean over sampled children c of |f(c with label=o_i) - f(c with label=o_j)|

and the partition of the ops with the smallest within-group distance is the
split (:func:`gmgraph.scores.partition.best_partition`). With ``#params`` the
parameter-free ops of NAS-Bench-201 end up together::

    >>> import torch, gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    >>> batches = [(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))] * 2
    >>> groups, score, D = metric_split(gm, "1<-0", "params", batches, n_children=2, prune=False)
    >>> groups
    [('none', 'skip_connect', 'avg_pool_3x3'), ('nor_conv_1x1', 'nor_conv_3x3')]
    >>> exhaustive_partition(gm, "1<-0")
    [['none'], ['skip_connect'], ['nor_conv_1x1'], ['nor_conv_3x3'], ['avg_pool_3x3']]

Note that the smallest *sum* of within-group distances favours small groups:
with ``balanced=False`` a single op far from all others (``nor_conv_3x3`` by
parameter count) is cut off alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import fx

from gmgraph.config import check_positive_int
from gmgraph.errors import DataError, SpaceError
from gmgraph.graph import sample, space
from gmgraph.scores.partition import best_partition, name_groups, partitions
from gmgraph.scores.zero_cost import Batch, LossFn, zero_cost


def metric_distances(
    gm: fx.GraphModule,
    label: str,
    metric: str,
    batches: Iterable[Batch] | Batch,
    *,
    n_children: int = 8,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    prune: bool = True,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """K x K distances between the candidate ops of ``label`` under a zero-cost ``metric``.

    ``n_children`` architectures are drawn uniformly from ``gm``'s current space
    (seeded); each is scored once per op of ``label`` (the other decisions
    fixed), all K on the same batch, then ``|f_i - f_j|`` is averaged over the
    children. Rows and columns follow ``gmgraph.space(gm)[label]``.

    Args:
        gm: a traced (sub-)supernet; never modified.
        label: the decision to compare the ops of.
        metric: one of :data:`gmgraph.scores.zero_cost.METRICS`.
        batches: an iterable of ``(x, y)``; one batch is taken per child. A
            single ``(x, y)`` tuple of tensors is reused for every child.
        n_children: number of sampled architectures to average over.
        seed: seeds the sampled children and (as ``seed + child``) the metric.
        loss_fn: passed to :func:`~gmgraph.scores.zero_cost.zero_cost`.
        prune: passed to :func:`~gmgraph.scores.zero_cost.zero_cost`.
        device: passed to :func:`~gmgraph.scores.zero_cost.zero_cost`: where each
            scored copy and its batch run (default where ``gm``'s parameters are).

    Returns:
        A float64 tensor of shape K x K, symmetric with a zero diagonal. Entries
        are NaN/inf when the metric is not finite (``naswot`` on a singular kernel).

    Raises:
        SpaceError: unknown label, or a label with fewer than 2 ops.
        ConfigError: unknown metric, ``n_children < 1`` or a device torch cannot use here.
        DataError: ``batches`` ran out before ``n_children`` batches.

    Example:
        >>> import torch, gmgraph
        >>> from gmgraph.spaces import nb201
        >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
        >>> D = metric_distances(gm, "1<-0", "params", [(torch.zeros(1, 3, 8, 8), None)],
        ...                      n_children=1, prune=False)
        >>> D[0, 1].item(), D[2, 3].item()   # none vs skip_connect; 1x1 vs 3x3 conv
        (0.0, 2688.0)
        >>> torch.equal(D, metric_distances(gm, "1<-0", "params", [(torch.zeros(1, 3, 8, 8), None)],
        ...                                 n_children=1, prune=False, device="cpu"))
        True
    """
    ops = splittable_ops(gm, label)
    check_positive_int("n_children", n_children)
    generator = torch.Generator().manual_seed(seed)
    stream = _batch_stream(batches)
    total = torch.zeros(len(ops), len(ops), dtype=torch.float64)
    for child in range(n_children):
        arch = sample(gm, generator)
        batch = _next_batch(stream, child, n_children)
        f = torch.tensor(
            [zero_cost(gm, {**arch, label: op}, metric, batch, loss_fn=loss_fn, seed=seed + child, prune=prune,
                       device=device)
             for op in ops],
            dtype=torch.float64,
        )
        total += _pairwise_gap(f)
    return total / n_children


def metric_split(
    gm: fx.GraphModule,
    label: str,
    metric: str,
    batches: Iterable[Batch] | Batch,
    *,
    groups: int = 2,
    balanced: bool = True,
    n_children: int = 8,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    prune: bool = True,
    device: str | torch.device | None = None,
) -> tuple[list[tuple[str, ...]], float, torch.Tensor]:
    """Split the ops of ``label`` into ``groups`` by a zero-cost metric.

    Args:
        groups: number of groups, 2 or 3.
        balanced: only consider splits whose group sizes differ by at most one.
        Others (``device`` too): as in :func:`metric_distances`.

    Returns:
        ``(op-name groups, score, distances)``: the groups in the order of
        :func:`~gmgraph.scores.partition.best_partition` (the group holding the
        first op comes first), the distance the split cuts (total minus
        within-group), and the K x K matrix of :func:`metric_distances`.

    Raises:
        SpaceError: unknown label, fewer than 2 ops, bad ``groups``, or a
            metric that gave non-finite values.

    Example:
        >>> import torch, gmgraph
        >>> from gmgraph.spaces import nb201
        >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
        >>> metric_split(gm, "3<-2", "params", (torch.zeros(1, 3, 8, 8), None), n_children=1, prune=False)[0]
        [('none', 'skip_connect', 'avg_pool_3x3'), ('nor_conv_1x1', 'nor_conv_3x3')]
    """
    distances = metric_distances(
        gm, label, metric, batches, n_children=n_children, seed=seed, loss_fn=loss_fn, prune=prune, device=device
    )
    if not torch.isfinite(distances).all():
        raise SpaceError(
            f"metric {metric!r} gave non-finite values for the ops of {label!r} "
            f"(distances {distances.tolist()}); use other batches or another metric"
        )
    partition, score = best_partition(distances, groups=groups, balanced=balanced)
    return name_groups(partition, splittable_ops(gm, label)), score, distances


def exhaustive_partition(gm: fx.GraphModule, label: str) -> list[list[str]]:
    """Few-shot NAS's exhaustive split: one group per candidate op of ``label``.

    Raises:
        SpaceError: unknown label, or a label with fewer than 2 ops.

    Example:
        >>> from torch import nn
        >>> import gmgraph
        >>> from gmgraph.choice import Choice, Neg
        >>> gm = gmgraph.trace(nn.Sequential(Choice({"id": nn.Identity(), "neg": Neg()}, "act")))
        >>> exhaustive_partition(gm, "act")
        [['id'], ['neg']]
    """
    return [[op] for op in splittable_ops(gm, label)]


def random_partition(
    ops: Sequence[str], groups: int = 2, balanced: bool = True, seed: int = 0
) -> list[tuple[str, ...]]:
    """The random-split baseline: one partition of ``ops`` drawn uniformly (seeded).

    Drawn from the same candidates :func:`metric_split` chooses among
    (:func:`~gmgraph.scores.partition.partitions`), with the same group order.

    Raises:
        SpaceError: fewer than 2 or more than 8 ops, or bad ``groups``.

    Example:
        >>> random_partition(["a", "b", "c", "d"], seed=0) == random_partition(["a", "b", "c", "d"], seed=0)
        True
        >>> sorted(len(g) for g in random_partition(["a", "b", "c", "d", "e"], seed=3))
        [2, 3]
    """
    if isinstance(ops, str):
        raise SpaceError(f"ops must be a sequence of op names, not the string {ops!r}")
    names = list(ops)
    if len(set(names)) != len(names):
        raise SpaceError(f"op names must be distinct, got {names}")
    candidates = partitions(len(names), groups, balanced)
    index = int(torch.randint(len(candidates), (1,), generator=torch.Generator().manual_seed(seed)))
    return name_groups(candidates[index], names)


def splittable_ops(gm: fx.GraphModule, label: str) -> tuple[str, ...]:
    """The ops of ``label`` in ``gm``'s current space, checked to be splittable.

    Raises:
        SpaceError: unknown label, or fewer than 2 ops.
    """
    current = space(gm)
    if label not in current:
        raise SpaceError(f"no decision named {label!r}; labels are {list(current)}")
    ops = current[label]
    if len(ops) < 2:
        raise SpaceError(
            f"decision {label!r} has only {len(ops)} candidate op {list(ops)} and cannot be split; "
            "a split needs at least 2"
        )
    return ops


# ------------------------------------------------------------------ helpers


def _batch_stream(batches: Iterable[Batch] | Batch) -> Iterator[Batch]:
    # A bare (x, y) is one batch for every child, not an iterable of two batches.
    if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], torch.Tensor):
        return _repeat(batches)
    try:
        return iter(batches)
    except TypeError:
        raise DataError(f"batches must be an iterable of (x, y) pairs, got {type(batches).__name__}") from None


def _repeat(batch: Batch) -> Iterator[Batch]:
    while True:
        yield batch


def _next_batch(stream: Iterator[Batch], child: int, n_children: int) -> Batch:
    try:
        return next(stream)
    except StopIteration:
        raise DataError(
            f"batches ran out after {child} batch(es); n_children={n_children} needs one batch per child"
        ) from None


def _pairwise_gap(f: torch.Tensor) -> torch.Tensor:
    """|f_i - f_j| with an exact zero diagonal (also when f_i is ±inf, where inf - inf is NaN)."""
    gap = (f[:, None] - f[None, :]).abs()
    gap.fill_diagonal_(0.0)
    return gap
