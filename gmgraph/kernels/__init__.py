"""The weighted mixed op of a Choice, and which implementation computes it.

``mixed_op(x, ys, w_param, w_skip, w_pool)`` is
``sum_k w_param[k] * ys[k] + w_skip * x + w_pool * avgpool3x3(x)`` (see
:mod:`gmgraph.kernels.reference` for the exact contract)::

    >>> import torch
    >>> from gmgraph import kernels
    >>> x = torch.ones(1, 1, 3, 3)
    >>> kernels.mixed_op(x, [x], torch.tensor([0.5]), torch.tensor(0.5), None).sum().item()
    9.0
    >>> kernels.backend(x)   # a CPU tensor, GMGRAPH_KERNELS unset
    'torch'

The environment variable ``GMGRAPH_KERNELS`` chooses the implementation, read
at every call:

* ``auto`` (default): the Triton kernels for CUDA tensors when triton can be
  imported, the torch reference otherwise;
* ``triton``: always the Triton kernels. CPU tensors then need Triton's
  interpreter (``TRITON_INTERPRET=1`` set before the kernels are first
  imported), which is how the kernels are tested without a GPU;
* ``torch``: always the torch reference.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from types import ModuleType

import torch

from gmgraph.errors import ConfigError
from gmgraph.kernels import reference

ENV = "GMGRAPH_KERNELS"
MODES = ("auto", "triton", "torch")

__all__ = ["ENV", "MODES", "backend", "mixed_op", "requested", "triton_available"]


def requested() -> str:
    """The mode ``GMGRAPH_KERNELS`` asks for (``auto`` when unset or empty).

    Raises:
        ConfigError: for a value other than auto, triton or torch.
    """
    raw = os.environ.get(ENV, "")
    mode = raw.strip().lower() or "auto"
    if mode not in MODES:
        raise ConfigError(f"{ENV}={raw!r} is not accepted; use one of {', '.join(MODES)}")
    return mode


def triton_available() -> bool:
    """Whether triton is installed (without importing it: that takes about a second)."""
    return importlib.util.find_spec("triton") is not None


def backend(x: torch.Tensor) -> str:
    """``"triton"`` or ``"torch"``: what :func:`mixed_op` runs for input ``x``."""
    mode = requested()
    if mode == "auto":
        return "triton" if x.is_cuda and triton_available() else "torch"
    return mode


def mixed_op(
    x: torch.Tensor,
    ys: Sequence[torch.Tensor],
    w_param: torch.Tensor,
    w_skip: torch.Tensor | None,
    w_pool: torch.Tensor | None,
) -> torch.Tensor:
    """``sum_k w_param[k] * ys[k] + w_skip * x + w_pool * avgpool3x3(x)``, differentiable.

    Args:
        x: the Choice's input, ``(N, C, H, W)``, float32, bfloat16 or float16.
        ys: the K parametric candidates' outputs, each shaped and typed like ``x``
            (K may be 0).
        w_param: K weights, a 1-D tensor.
        w_skip: the skip connection's weight (one element), or None when absent.
        w_pool: the 3x3 average pooling's weight (one element), or None when absent.
            An absent term is never computed and gets no gradient; a present
            term with weight 0 is computed and gets its gradient.

    Returns:
        A tensor shaped and typed like ``x``. Inputs may have any strides. On the
        Triton path the result and the gradients of ``x`` and ``ys`` are stored
        channels_last when ``x`` is, contiguous NCHW otherwise; an input or
        upstream gradient stored another way is copied to that order first.

    Raises:
        ChoiceError: when the inputs do not fit together.
        ConfigError: for a bad ``GMGRAPH_KERNELS``, or Triton forced where it cannot run.
    """
    if backend(x) == "torch":
        return reference.mixed_op(x, ys, w_param, w_skip, w_pool)
    reference.check_inputs(x, ys, w_param, w_skip, w_pool)
    return _triton_module(x).fused_mixed_op(x, ys, w_param, w_skip, w_pool)


def _triton_module(x: torch.Tensor) -> ModuleType:
    try:
        module = importlib.import_module(f"{__name__}.triton_mixed_op")
    except ImportError as exc:
        raise ConfigError(f"{ENV}=triton but triton cannot be imported ({exc}); use {ENV}=torch or auto") from exc
    if not x.is_cuda and not module.interpreted():
        raise ConfigError(
            f"{ENV}=triton was asked for a tensor on {x.device}, but Triton kernels run on CUDA tensors, "
            "or on CPU tensors only under Triton's interpreter (TRITON_INTERPRET=1 set before "
            "gmgraph's kernels are first imported)"
        )
    return module
