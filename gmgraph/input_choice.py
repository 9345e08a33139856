"""``InputChoice`` and ``Repeat``: two more kinds of decision, each a :class:`~gmgraph.choice.Choice`.

Both are Choices (a label and named candidates), so every pass, sampler, score,
search and the report takes them as it takes any other; only their candidates
are built for them:

* **InputChoice** — which ``k`` of ``n`` inputs a node combines (summed or
  concatenated), as DARTS's "two strongest inputs" rule and NNI's
  ``InputChoice``. The Choice is called with the list of inputs; a candidate
  named ``"0+2"`` combines inputs 0 and 2. ``derive`` leaves a node that reads
  only those inputs, so what only the others needed is removed::

    >>> import torch, gmgraph
    >>> from torch import nn
    >>> class Node(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.pick = InputChoice(3, k=2, label="inputs")
    ...     def forward(self, a, b, c):
    ...         return self.pick([a, b, c])
    >>> gm = gmgraph.trace(Node())
    >>> gmgraph.space(gm)["inputs"]
    ('0+1', '0+2', '1+2')
    >>> ones = torch.ones(1)
    >>> with gmgraph.use(gm, {"inputs": "0+2"}):
    ...     gm(ones, 2 * ones, 4 * ones).tolist()
    [5.0]

* **Repeat** — how many times a block is repeated: candidate ``d<k>`` runs the
  first ``k`` of the same block objects (depths share weights, as Once-for-All's
  elastic depth; a deeper candidate is the shallower one plus blocks)::

    >>> rep = Repeat(lambda i: nn.Linear(2, 2), depths=(1, 3), label="depth")
    >>> rep.names, rep.ops["d1"][0] is rep.ops["d3"][0]
    (('d3', 'd1'), True)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from gmgraph.choice import Choice
from gmgraph.errors import SpaceError

REDUCTIONS = ("sum", "concat")


class PickInputs(nn.Module):
    """Combine the inputs at ``indices`` of a list: their sum, or their concatenation along ``dim``."""

    def __init__(self, indices: Sequence[int], reduction: str = "sum", dim: int = 1):
        super().__init__()
        self.indices, self.reduction, self.dim = tuple(indices), reduction, dim

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        chosen = [inputs[i] for i in self.indices]
        if self.reduction == "concat":
            return torch.cat(chosen, dim=self.dim)
        out = chosen[0]
        for x in chosen[1:]:
            out = out + x
        return out

    def extra_repr(self) -> str:
        return f"indices={self.indices}, reduction={self.reduction!r}"


class InputChoice(Choice):
    """A decision over which ``k`` of ``n`` inputs are combined (see the module's docstring).

    Args:
        n: how many inputs the Choice is called with (as a list).
        k: how many of them a candidate combines.
        label: the decision's label.
        reduction: ``sum`` or ``concat`` (along ``dim``; every candidate then has ``k`` times an input's channels).
    """

    def __init__(self, n: int, *, k: int = 1, label: str, reduction: str = "sum", dim: int = 1):
        if not isinstance(n, int) or not isinstance(k, int) or not 1 <= k <= n:
            raise SpaceError(f"InputChoice {label!r} needs 1 <= k <= n, got n={n!r}, k={k!r}")
        if reduction not in REDUCTIONS:
            raise SpaceError(f"InputChoice {label!r}: reduction must be one of {', '.join(REDUCTIONS)}, "
                             f"got {reduction!r}")
        ops = {"+".join(map(str, combo)): PickInputs(combo, reduction, dim)
               for combo in itertools.combinations(range(n), k)}
        super().__init__(ops, label)
        self.n, self.k = n, k

    def forward(self, inputs):
        if not isinstance(inputs, list | tuple) or len(inputs) != self.n:
            raise SpaceError(f"InputChoice {self.label!r} is called with a list of its {self.n} inputs")
        return super().forward(list(inputs))


class Repeat(Choice):
    """A decision over how many times a block runs: ``d<k>`` runs the first ``k`` blocks (shared weights).

    Args:
        block: ``block(i) -> nn.Module``, the ``i``-th block (``i`` from 0), or a list of the blocks.
        depths: the allowed counts (the deepest first in the candidates' order, as the original model's).
        label: the decision's label.
    """

    def __init__(self, block: Callable[[int], nn.Module] | Sequence[nn.Module], *, depths: Sequence[int],
                 label: str):
        depths = sorted({int(d) for d in depths}, reverse=True)
        if not depths or depths[-1] < 1:
            raise SpaceError(f"Repeat {label!r} needs depths of 1 or more, got {depths!r}")
        blocks = list(block) if not callable(block) else [block(i) for i in range(depths[0])]
        if len(blocks) < depths[0]:
            raise SpaceError(f"Repeat {label!r}: {len(blocks)} blocks given for a depth of {depths[0]}")
        super().__init__({f"d{d}": nn.Sequential(*blocks[:d]) for d in depths}, label)
