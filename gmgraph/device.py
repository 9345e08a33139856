"""Where tensors live and in what precision the forward passes run.

``resolve_device("auto")`` is CUDA when torch sees a GPU, else the CPU; asking
for CUDA on a machine without one is a clear error, not a crash in the first
step. ``autocast(device, precision)`` wraps forward passes: ``bf16`` works on
CPU and CUDA, ``fp16`` needs CUDA and a gradient scaler (:func:`grad_scaler`)::

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> import torch
    >>> with autocast(torch.device("cpu"), "bf16"):
    ...     y = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    >>> y.dtype
    torch.bfloat16
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: device 'tpu' is not one of auto, cpu, cuda, cuda:N
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from gmgraph import registry
from gmgraph.config import check_device
from gmgraph.errors import ConfigError

PRECISIONS = dict(zip(registry.PRECISIONS, (None, torch.bfloat16, torch.float16)))
"""Accepted ``precision`` values and the autocast dtype of each (None: no autocast)."""



def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``name``: ``auto`` is ``cuda`` when available, else ``cpu``.

    Raises:
        ConfigError: an unknown name, or CUDA asked for where there is none (or not that index).
    """
    if isinstance(name, torch.device):
        return with_index(name)
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu or auto")
        device = with_index(device)  # the current GPU: a distributed worker's own (see train.distributed.session)
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def training_device(name: str | torch.device, precision: str) -> torch.device:
    """The device a run trains on: ``name`` resolved (:func:`resolve_device`), ``precision`` checked against it.

    The one place a run's ``--device`` becomes a ``torch.device``: ``gmgraph search`` calls it once, when the
    run starts, and hands the answer down; the settings keep the spelling the user gave (``auto``), so
    settings built on one machine mean the same on another.

    Raises:
        ConfigError: as :func:`resolve_device`, or fp16 where there is no CUDA.

    >>> training_device("cpu", "bf16")
    device(type='cpu')
    >>> training_device("cpu", "fp16")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --precision fp16 needs a CUDA device (its gradient scaler is CUDA-only); use bf16 on the CPU
    """
    device = resolve_device(name)
    check_precision(precision, device)
    return device


def scoring_device(module: torch.nn.Module, device: str | torch.device | None = None,
                   like: torch.Tensor | None = None) -> torch.device:
    """Where a score of ``module`` runs: ``device`` resolved (:func:`resolve_device`), by default where
    ``module``'s parameters are (else ``like``'s device, else the CPU).

    The one rule of the scores (:mod:`gmgraph.scores.zero_cost`, :mod:`gmgraph.scores.gradient_matching`);
    a score that works on the caller's graph itself, not a copy, also refuses a device other than its home.

    >>> scoring_device(torch.nn.Linear(2, 2)), scoring_device(torch.nn.Identity(), "cpu")
    (device(type='cpu'), device(type='cpu'))
    """
    if device is not None:
        return resolve_device(device)
    param = next(module.parameters(), None)
    if param is not None:
        return with_index(param.device)
    return with_index(like.device) if like is not None else torch.device("cpu")


def with_index(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:<current index>``, so that equal devices compare equal (and RNG forks find theirs).

    >>> with_index(torch.device("cpu"))
    device(type='cpu')
    """
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def check_precision(precision: str, device: torch.device | None = None) -> str:
    """``precision`` if accepted (and, given a device, usable there).

    Raises:
        ConfigError: an unknown precision, or fp16 on a CPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device is not None and precision == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device (its gradient scaler is CUDA-only); "
                          "use bf16 on the CPU")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for forward passes in ``precision`` (a no-op for fp32).

    Parameters and their optimizer state stay fp32; BatchNorm runs in fp32
    under autocast, so its running statistics do too.
    """
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (None otherwise: bf16 has fp32's range)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a batch (tuples, lists) to ``device``; non-blocking from pinned memory."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=batch.is_pinned()) if batch.device != device else batch
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


@contextlib.contextmanager
def no_host_sync(device: torch.device) -> Iterator[None]:
    """Make any device-to-host copy inside an error (CUDA only; a no-op on the CPU).

    Wrap steady-state training steps in it to prove they never stall the GPU.
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(threads)`` (None: leave torch's setting); yields the count.

    The caller's count comes back afterwards, so a library call does not change its process for good.

    >>> with torch_threads(1) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
