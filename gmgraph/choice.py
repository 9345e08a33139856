"""``Choice``: the one module type gmgraph adds to a network.

A Choice holds named candidate ops and the *label* of the decision it belongs
to. Many Choices may share a label (NAS-Bench-201 repeats its six edge
decisions in all 15 cells); they share the decision, never the weights.

How a Choice runs is set from outside (see :func:`gmgraph.use` and
:func:`gmgraph.graph.use_weights`), never by editing the graph::

    >>> import torch
    >>> from torch import nn
    >>> c = Choice({"id": nn.Identity(), "neg": Neg()}, label="act")
    >>> c.activate("neg")
    >>> c(torch.ones(2)).tolist()
    [-1.0, -1.0]
    >>> c.set_weights(torch.tensor([0.25, 0.75]))   # weighted: 0.25*x + 0.75*(-x)
    >>> c(torch.ones(2)).tolist()
    [-0.5, -0.5]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from gmgraph.errors import ChoiceError, SpaceError


class Zero(nn.Module):
    """The ``none`` candidate: an edge that contributes nothing.

    It keeps the output shape (subsampled by ``stride``) so a Choice can mix it
    with other candidates; ``derive`` removes it from sums.

    >>> Zero(stride=2)(torch.ones(1, 1, 4, 4)).shape
    torch.Size([1, 1, 2, 2])
    """

    def __init__(self, stride: int = 1):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Neg(nn.Module):
    """``-x``; a parameter-free op for examples and tests."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


class Choice(nn.Module):
    """A decision among named candidate ops, kept as one leaf in the fx graph.

    Args:
        ops: op name -> module. Order matters: it is the order of weights and of
            ``gmgraph.space(gm)[label]``.
        label: the decision this Choice belongs to.

    Modes (exactly one is in force while it runs):

    * single path: ``activate(name)`` — only that op runs;
    * weighted: ``set_weights(w)`` — ``sum_i w[i] * op_i(x)``. Ops whose weight
      is known to be zero are not run, so a hard Gumbel one-hot (straight-through)
      computes one op but still passes gradient to every weight: ``keep`` (a
      host-side list of which ops to run) says so without reading ``w``; weights
      on the CPU are checked directly, weights on a GPU are never read back
      (every op runs, since the read would stall the GPU each step). ``none``
      (:class:`Zero`) adds ``w * 0`` and is left out, unless no other op runs.

    In single-path mode inside a traced supernet, :mod:`gmgraph.live_run` may
    tell a Choice to *skip* for one run (nothing live reads its output): it then
    returns a 0-dimensional zero and runs no op.
    """

    def __init__(self, ops: Mapping[str, nn.Module], label: str):
        super().__init__()
        if not isinstance(label, str) or not label:
            raise SpaceError(f"a Choice label must be a non-empty string, got {label!r}")
        if len(ops) == 0:
            raise SpaceError(f"Choice {label!r} needs at least one candidate op")
        self.label = label
        self.ops = nn.ModuleDict(dict(ops))
        self.active: str | None = None
        self.weights: torch.Tensor | None = None
        self.keep: list[bool] | None = None  # with weights: which ops to run, known on the host

    @property
    def names(self) -> tuple[str, ...]:
        """Candidate op names, in order."""
        return tuple(self.ops.keys())

    def check_op(self, name: str) -> None:
        """Raise ChoiceError unless ``name`` is one of this Choice's candidates."""
        if name not in self.ops:
            raise ChoiceError(
                f"decision {self.label!r} has no op {name!r}; "
                f"its candidates are {', '.join(self.names)}"
            )

    def activate(self, name: str | None) -> None:
        """Run only op ``name`` (single path); ``None`` clears the mode."""
        if name is not None:
            self.check_op(name)
        self.active = name
        self.weights = None

    def set_weights(self, weights: torch.Tensor | None, keep: list[bool] | None = None) -> None:
        """Run the weighted sum of all candidates; ``None`` clears the mode.

        ``keep[i]`` False promises ``weights[i] == 0`` so op ``i`` is skipped (e.g. a hard Gumbel draw).
        """
        if weights is not None and weights.shape != (len(self.ops),):
            raise ChoiceError(
                f"decision {self.label!r} has {len(self.ops)} candidates "
                f"({', '.join(self.names)}) but got weights of shape {tuple(weights.shape)}"
            )
        if keep is not None and len(keep) != len(self.ops):
            raise ChoiceError(f"decision {self.label!r}: keep has {len(keep)} entries for {len(self.ops)} candidates")
        self.weights, self.keep = weights, keep
        self.active = None

    skip = False  # set for one run by gmgraph.live_run: nothing live reads this Choice's output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.skip:  # a zero that needs no autograd; the sums it joins broadcast it away
            return x.new_zeros(()) if isinstance(x, torch.Tensor) else torch.zeros(())
        if self.active is not None:
            return self.ops[self.active](x)
        if self.weights is not None:
            return self._weighted(x)
        raise ChoiceError(
            f"decision {self.label!r} was not told which op to run: wrap the call in "
            "`with gmgraph.use(gm, arch):` (single path) or set weights with "
            "`gmgraph.graph.use_weights(gm, weights)`"
        )

    def _weighted(self, x: torch.Tensor) -> torch.Tensor:
        # Skipping zero weights is what makes hard Gumbel cost one op, not K; reading GPU weights
        # to find them would stall every step, so there only a host-side `keep` skips ops.
        nonzero = self.keep
        if nonzero is None:
            nonzero = (self.weights != 0).tolist() if self.weights.device.type == "cpu" else [True] * len(self.ops)
        # `none` adds w * 0: left out of the sum (its weight's gradient, 0, comes from the
        # weights' own backward), unless it is the only op that runs.
        zero = [isinstance(op, Zero) for op in self.ops.values()]
        if any(keep and not z for keep, z in zip(nonzero, zero)):
            nonzero = [keep and not z for keep, z in zip(nonzero, zero)]
        out = None
        for i, (op, keep) in enumerate(zip(self.ops.values(), nonzero)):
            if keep:
                y = self.weights[i] * op(x)
                out = y if out is None else out + y
        if out is None:  # every weight zero: the result is zero, shaped like op 0's output
            out = self.weights.sum() * next(iter(self.ops.values()))(x)
        return out

    def __getstate__(self) -> dict:
        # The running mode is transient: copies and pickles start with none, which
        # also keeps deepcopy away from non-leaf weight tensors.
        return {**self.__dict__, "active": None, "weights": None, "keep": None, "skip": False}

    def extra_repr(self) -> str:
        return f"label={self.label!r}"

