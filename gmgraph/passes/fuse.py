"""``fuse``: weighted Choices compute their sum with the fused mixed-op kernel.

In weighted (DARTS-style) training a Choice runs every candidate and sums the
weighted outputs. Unfused, each term is a tensor written and read again, and
the parameter-free candidates (skip, 3x3 average pooling, zero) each cost full
passes over memory. After ``fuse`` the parametric candidates still run as
modules, and their outputs, the skip, the pooling and the weighted sum are one
call of :func:`gmgraph.kernels.mixed_op` (one Triton pass on CUDA)::

    >>> import torch
    >>> from torch import nn
    >>> import gmgraph
    >>> from gmgraph.choice import Choice, Zero
    >>> ops = {"none": Zero(), "skip": nn.Identity(), "conv": nn.Conv2d(2, 2, 1),
    ...        "pool": nn.AvgPool2d(3, 1, 1, count_include_pad=False)}
    >>> gm = gmgraph.trace(nn.Sequential(Choice(ops, "e")))
    >>> fused = fuse(gm)
    >>> print(fused.code.strip())
    def forward(self, input):
        input_1 = input
        _0 = getattr(self, "0")(input_1);  input_1 = None
        return _0
    >>> type(fused.get_submodule("0")).__name__, fused.get_submodule("0").roles()
    ('FusedChoice', ('zero', 'skip', 'param', 'pool'))

The graph keeps its nodes; each Choice module is replaced by a
:class:`FusedChoice`, a Choice subclass, so ``gmgraph.space``, ``choices``,
the samplers, ``restrict`` and ``derive`` treat the fused graph as before.
Single-path mode runs exactly as before.

What fuses: ``nn.Identity`` (skip), ``Zero`` with stride 1 (contributes
nothing and is never computed) and ``nn.AvgPool2d(3, 1, 1,
count_include_pad=False)`` (pool), matched by exact type and settings. Any
other candidate, including ``Zero`` with a stride or a pooling with other
settings, runs as a module and joins the sum as a parametric output. A Choice
runs unfused when its input is not 4-D (NCHW) or a parametric output is not
shaped and typed like its input (e.g. a reduction edge). Because ``none`` is
never computed, an inf in a Choice's input stays out of the sum, where the
unfused ``w * (x * 0)`` would make it nan.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import fx, nn

from gmgraph.choice import Choice, Zero
from gmgraph.kernels import mixed_op

ROLES = ("param", "skip", "pool", "zero")


def fuse(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``gm`` whose Choices run their weighted sum through the fused kernel.

    Weights and buffers are copied; ``gm`` is not changed. Outputs and
    gradients equal the unfused graph's up to float rounding.
    """
    fused = copy.deepcopy(gm)
    for name, module in list(fused.named_modules()):
        if isinstance(module, Choice) and type(module) is not FusedChoice:
            _replace(fused, name, FusedChoice.from_choice(module))
    fused.meta["fused"] = True
    fused.graph.lint()
    fused.recompile()
    return fused


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    owner, _, attr = name.rpartition(".")
    setattr(root.get_submodule(owner) if owner else root, attr, module)


class FusedChoice(Choice):
    """A Choice whose weighted mode calls :func:`gmgraph.kernels.mixed_op`.

    >>> from torch import nn
    >>> c = FusedChoice({"skip": nn.Identity(), "fc": nn.Linear(2, 2)}, "e")
    >>> c.roles()
    ('skip', 'param')
    """

    def __init__(self, ops: Mapping[str, nn.Module], label: str):
        super().__init__(ops, label)
        self._roles: tuple[str, ...] = ()
        self._roles_of: int | None = None  # id of the ModuleDict the roles were read from

    @classmethod
    def from_choice(cls, choice: Choice) -> FusedChoice:
        """A FusedChoice holding ``choice``'s op modules (not copies), label and train/eval mode."""
        fused = cls(choice.ops, choice.label)
        fused.train(choice.training)
        return fused

    def roles(self) -> tuple[str, ...]:
        """Per candidate, in order, how it joins the fused sum: one of ``ROLES``."""
        # Read once per set of ops; ``restrict`` replaces the ModuleDict, which changes its id.
        if self._roles_of != id(self.ops):
            self._roles = tuple(_role(op) for op in self.ops.values())
            self._roles_of = id(self.ops)
        return self._roles

    def _weighted(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights
        # Exactly-zero weights skip their op, as in Choice: a hard Gumbel sample runs one op.
        keep = (w != 0).tolist()
        roles = self.roles()
        if x.dim() != 4 or all(role == "zero" or not k for role, k in zip(roles, keep)):
            return super()._weighted(x)
        ops = list(self.ops.values())
        outputs = {i: ops[i](x) for i, (role, k) in enumerate(zip(roles, keep)) if k and role == "param"}
        if any(y.shape != x.shape or y.dtype != x.dtype or y.device != x.device for y in outputs.values()):
            return self._sum(x, outputs, keep)
        return mixed_op(
            x, list(outputs.values()), w[list(outputs)],
            _weight_of(w, roles, keep, "skip"), _weight_of(w, roles, keep, "pool"),
        )

    def _sum(self, x: torch.Tensor, outputs: dict[int, torch.Tensor], keep: list[bool]) -> torch.Tensor:
        """The unfused sum, reusing the outputs already computed (running an op twice
        would update its BatchNorm statistics twice)."""
        out = None
        for i, op in enumerate(self.ops.values()):
            if keep[i]:
                y = self.weights[i] * (outputs[i] if i in outputs else op(x))
                out = y if out is None else out + y
        return out


def _weight_of(w: torch.Tensor, roles: tuple[str, ...], keep: list[bool], role: str) -> torch.Tensor | None:
    """The summed weight of the kept candidates with ``role`` (None when there are none)."""
    index = [i for i, (r, k) in enumerate(zip(roles, keep)) if k and r == role]
    if not index:
        return None
    return w[index[0]] if len(index) == 1 else w[index].sum()


def _role(op: nn.Module) -> str:
    # Exact types: a subclass may override forward and compute something else.
    if type(op) is nn.Identity:
        return "skip"
    if type(op) is Zero and op.stride == 1:
        return "zero"
    if type(op) is nn.AvgPool2d and _is_pool3x3(op):
        return "pool"
    return "param"


def _is_pool3x3(pool: nn.AvgPool2d) -> bool:
    return (
        _pair(pool.kernel_size) == (3, 3) and _pair(pool.stride) == (1, 1) and _pair(pool.padding) == (1, 1)
        and not pool.ceil_mode and not pool.count_include_pad and pool.divisor_override is None
    )


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
