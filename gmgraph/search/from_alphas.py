"""``argmax``: the architecture a weighted (DARTS, GDAS, SNAS) supernet prefers.

>>> import torch
>>> argmax({"a": torch.tensor([0.1, 2.0, -1.0])}, {"a": ("x", "y", "z")})
{'a': 'y'}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from gmgraph.arch import Arch
from gmgraph.errors import SpaceError
from gmgraph.search.random import check_space


def argmax(alphas: Mapping[str, torch.Tensor | Sequence[float]], space: Mapping[str, Sequence[str]]) -> Arch:
    """Per label, the op with the largest architecture weight (the first one on ties).

    Softmax is monotone, so raw logits and probabilities give the same answer.

    Args:
        alphas: label -> one weight per op, in ``space[label]`` order (1-D
            tensors or sequences; gradients are ignored).
        space: label -> candidate op names, as returned by ``gmgraph.space(gm)``.

    Returns:
        label -> op name, labels in ``space`` order.

    Raises:
        SpaceError: the labels of ``alphas`` and ``space`` differ, a weight
            vector has the wrong length, or holds NaN.

    Example:
        >>> argmax({"a": [1.0, 3.0, 3.0], "b": [0.0]}, {"a": ("x", "y", "z"), "b": ("u",)})
        {'a': 'y', 'b': 'u'}
    """
    check_space(space)
    _check_labels(alphas, space)
    return {label: ops[_first_max(alphas[label], label, len(ops))] for label, ops in space.items()}


def _check_labels(alphas: Mapping, space: Mapping) -> None:
    if not isinstance(alphas, Mapping):
        raise SpaceError(f"alphas must be a mapping label -> weights, got {type(alphas).__name__}")
    missing = [label for label in space if label not in alphas]
    unknown = [label for label in alphas if label not in space]
    if missing or unknown:
        raise SpaceError(
            f"architecture weights do not match the space: missing {missing}, unknown {unknown}; "
            f"space labels are {list(space)}"
        )


def _first_max(weights: torch.Tensor | Sequence[float], label: str, n_ops: int) -> int:
    w = torch.as_tensor(weights).detach().cpu()
    if w.shape != (n_ops,):
        raise SpaceError(f"label {label!r} has {n_ops} ops but its weights have shape {tuple(w.shape)}")
    if w.is_floating_point() and bool(w.isnan().any()):
        raise SpaceError(f"weights of label {label!r} contain NaN: {w.tolist()}")
    # explicit "first of the maxima" rather than relying on argmax's tie rule
    return int((w == w.max()).nonzero()[0, 0])
