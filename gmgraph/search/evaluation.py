"""Accuracy of one architecture on a supernet's shared weights.

A child's BatchNorm running statistics in the supernet are an average over
every path trained so far, not the statistics of *this* path, so the child is
measured after recalibrating them on a few training batches (SPOS; see
docs/algorithms.md §1). The child is derived first, so the supernet itself is never
touched::

    >>> import gmgraph, torch
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> g = torch.Generator().manual_seed(0)
    >>> data = [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(10, (8,), generator=g)) for _ in range(2)]
    >>> arch = gmgraph.sample(gm, g)
    >>> acc = evaluate(gm, arch, data, calib_loader=data, bn_batches=2)
    >>> 0.0 <= acc <= 1.0
    True
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from gmgraph.arch import validate
from gmgraph.config import check_positive_int
from gmgraph.errors import ConfigError, DataError
from gmgraph.graph import space
from gmgraph.passes.derive import derive
from gmgraph.search.result import OnStep
from gmgraph.task import Task, get_task, split_batch

_BatchNorm = nn.modules.batchnorm._BatchNorm


def evaluate(
    gm: fx.GraphModule,
    arch: Mapping[str, str],
    loader: Iterable[Any],
    *,
    calib_loader: Iterable[Any] | None = None,
    bn_batches: int = 4,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    task: Task | str = "classification",
) -> float:
    """Top-1 accuracy (``task``'s metric) of ``arch`` on the supernet ``gm``'s weights, BN recalibrated.

    The architecture is derived (only its ops are copied), every BatchNorm's
    running statistics are re-estimated on the first ``bn_batches`` batches of
    ``calib_loader``, and accuracy is measured on ``loader`` in eval mode.
    Neither the supernet's weights, its BN statistics nor its Choice modes change.

    Args:
        gm: a traced (sub-)supernet.
        arch: label -> op name for every label of ``gm``.
        loader: batches ``(x, y)`` to measure accuracy on (a DataLoader or a list).
        calib_loader: batches for BN recalibration; pass the *training* loader.
            ``None`` falls back to ``loader`` itself, which is only right when
            nothing better is at hand (it tunes statistics on the data measured).
            A shuffling loader gives other batches on every call; pass a fixed
            list to compare architectures on the same calibration data.
        bn_batches: calibration batches (a shorter loader is used whole);
            0 keeps the supernet's running statistics as they are.
        max_batches: measure on at most this many batches of ``loader``.
        device: where to run; default: the device of ``gm``'s parameters.
        task: what is measured (:mod:`gmgraph.task`): classification's accuracy, or another task's metric.

    Returns:
        The fraction of correctly classified samples, in [0, 1] (another task: its metric).

    Raises:
        ArchError: ``arch`` does not fit ``gm``'s space.
        ConfigError: ``bn_batches`` or ``max_batches`` out of range.
        DataError: ``loader`` (or ``calib_loader`` when needed) yields no batch.

    Example:
        >>> import gmgraph, torch
        >>> from gmgraph.choice import Choice, Neg
        >>> net = nn.Sequential(nn.BatchNorm1d(2), Choice({"id": nn.Identity(), "neg": Neg()}, "sign"))
        >>> gm = gmgraph.trace(net)
        >>> batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))]
        >>> evaluate(gm, {"sign": "id"}, batches, bn_batches=1), evaluate(gm, {"sign": "neg"}, batches, bn_batches=1)
        (1.0, 0.0)
    """
    _check_counts(bn_batches, max_batches)
    device = _device(gm) if device is None else torch.device(device)
    net = derive(gm, arch).to(device)  # checks arch against gm's space first (ArchError)
    if bn_batches:
        batches = itertools.islice(loader if calib_loader is None else calib_loader, bn_batches)
        if recalibrate_bn(net, batches, device=device) == 0:
            raise DataError("evaluate: the calibration loader yielded no batch; pass training batches")
    return accuracy(net, itertools.islice(loader, max_batches), device=device, task=task)


def evaluate_many(
    gm: fx.GraphModule,
    archs: Sequence[Mapping[str, str]],
    loader: Iterable[Any],
    *,
    calib_loader: Iterable[Any] | None = None,
    bn_batches: int = 4,
    max_batches: int | None = None,
    device: torch.device | str | None = None,
    progress: OnStep | None = None,
    task: Task | str = "classification",
) -> list[float]:
    """:func:`evaluate` for many architectures, all calibrated on the same batches.

    The first ``bn_batches`` calibration batches are drawn once and reused, so
    a shuffling training loader does not add noise to the comparison.

    Args:
        gm, loader, calib_loader, bn_batches, max_batches, device, task: as for :func:`evaluate`.
        archs: the architectures; all are validated before any is evaluated.
        progress: called as ``progress(done, arch, accuracy)`` after each one.

    Returns:
        One accuracy per architecture, in order.

    Example:
        >>> import gmgraph, torch
        >>> from gmgraph.choice import Choice, Neg
        >>> gm = gmgraph.trace(nn.Sequential(Choice({"id": nn.Identity(), "neg": Neg()}, "sign")))
        >>> batches = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]))]
        >>> evaluate_many(gm, [{"sign": "id"}, {"sign": "neg"}], batches, bn_batches=0)
        [1.0, 0.0]
    """
    labels = space(gm)
    for arch in archs:  # fail before hours of work, not after
        validate(arch, labels)
    _check_counts(bn_batches, max_batches)
    calib = list(itertools.islice(loader if calib_loader is None else calib_loader, bn_batches))
    out = []
    for done, arch in enumerate(archs, start=1):
        acc = evaluate(
            gm,
            arch,
            loader,
            calib_loader=calib,
            bn_batches=bn_batches,
            max_batches=max_batches,
            device=device,
            task=task,
        )
        out.append(acc)
        if progress is not None:
            progress(done, dict(arch), acc)
    return out


@torch.inference_mode()  # no autograd bookkeeping at all; the buffers are updated in place as usual
def recalibrate_bn(
    module: nn.Module, batches: Iterable[Any], *, device: torch.device | str | None = None
) -> int:
    """Re-estimate every BatchNorm's running statistics of ``module`` from ``batches``.

    Statistics are reset and then averaged over all batches with equal weight
    (``momentum=None``), so the result does not depend on the order of batches.
    Only the BatchNorms run in train mode: dropout and the like stay off, so
    the statistics describe exactly what each BN sees at evaluation time.
    Modes and momenta are restored afterwards; nothing else changes.

    Args:
        module: a network, changed in place (a derived child, not the supernet).
        batches: tensors ``x``, tuples ``(x, ...)`` or dicts (:func:`gmgraph.task.split_batch`).
        device: where to move each ``x``; default: leave it where it is.

    Returns:
        The number of batches used (0 leaves the statistics reset).

    Example:
        >>> net = nn.Sequential(nn.BatchNorm1d(2))
        >>> recalibrate_bn(net, [torch.tensor([[0.0, 1.0], [2.0, 3.0]])])
        1
        >>> net[0].running_mean.tolist()
        [1.0, 2.0]
    """
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    modes = [(m, m.training) for m in module.modules()]
    momenta = [(bn, bn.momentum) for bn in bns]
    used = 0
    try:
        module.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
            bn.train()
        for batch in batches:
            module(_inputs(batch, device))
            used += 1
    finally:
        for m, training in modes:
            m.training = training
        for bn, momentum in momenta:
            bn.momentum = momentum
    return used


@torch.inference_mode()
def accuracy(net: nn.Module, batches: Iterable[Any], *, device: torch.device | str | None = None,
             task: Task | str = "classification") -> float:
    """Top-1 accuracy of ``net`` (in eval mode) over ``(x, y)`` batches (another ``task``: its metric over
    them, from statistics summed on the device and read once); the mode is restored.

    >>> net = nn.Linear(1, 1, bias=False)
    >>> _ = net.weight.data.fill_(2.0)
    >>> accuracy(net, [(torch.tensor([[1.0], [2.0]]), torch.tensor([2.0, 5.0]))], task="regression")  # R²
    0.7777777777777778

    Raises:
        DataError: no batch, or a batch is neither ``(x, y)`` nor a dict of them.
    """
    task = get_task(task)
    training = net.training
    net.eval()
    stats = None
    try:
        for batch in batches:
            x, y = split_batch(batch)
            y = y.to(device) if device is not None else y
            out = net(_moved(x, device))
            part = task.statistics(out, y)  # stays on the device: one read at the end
            stats = part if stats is None else stats + part
    finally:
        net.train(training)
    if stats is None:
        raise DataError(f"evaluate: the loader yielded no samples; the {task.metric} is undefined")
    return task.value(stats)


def _inputs(batch: Any, device: torch.device | str | None) -> torch.Tensor:
    x = batch if isinstance(batch, torch.Tensor) else split_batch(batch)[0]
    return _moved(x, device)


def _moved(x: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return x.to(device, non_blocking=x.is_pinned()) if device is not None else x


def _device(gm: nn.Module) -> torch.device:
    for tensor in itertools.chain(gm.parameters(), gm.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_counts(bn_batches: object, max_batches: object) -> None:
    if isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 0:
        raise ConfigError(f"bn_batches must be an integer >= 0 (0 skips recalibration), got {bn_batches!r}")
    if max_batches is not None:  # None: all
        check_positive_int("max_batches", max_batches)
