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
Single-path mode runs exactly as before: one op.

Weighted mode never reads the weights back to the host. An unfused Choice
skips the ops whose weight is exactly zero, which needs ``(w != 0).tolist()``:
on a GPU, a wait for the device once per Choice per step. A FusedChoice runs
every candidate and hands all K weights to the kernel (a zero weight costs
one multiply there), so a step queues its work without waiting. Values and
gradients still equal the unfused Choice's: a weight that is exactly zero
gets zero gradient, as if its op had not run. What differs for exactly-zero
weights, such as a hard Gumbel one-hot (``gdas``): every parametric op runs
(its cost, and in train mode its BatchNorm running statistics are updated),
its parameters get zero gradients rather than none, and a non-finite output
of it makes the sum nan (``0 * inf``) where the unfused Choice never saw it.
To run one op per
step, sample a single path (``gmgraph.use``), or train the unfused graph.

What fuses: ``nn.Identity`` (skip), ``Zero`` with stride 1 (contributes
nothing and is never computed) and ``nn.AvgPool2d(3, 1, 1,
count_include_pad=False)`` or :class:`gmgraph.pooling.AvgPool2d` with those
settings (pool), matched by exact type and settings. Any
other candidate, including ``Zero`` with a stride or a pooling with other
settings, runs as a module and joins the sum as a parametric output. A Choice
runs unfused when its input is not 4-D (NCHW) or a parametric output is not
shaped and typed like its input (e.g. a reduction edge). Because ``none`` is
never computed, an inf in a Choice's input stays out of the sum, where the
unfused ``w * (x * 0)`` would make it nan.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import fx, nn

from gmgraph import module_copy
from gmgraph.choice import Choice, Zero
from gmgraph.kernels import mixed_op
from gmgraph.pooling import AvgPool2d

ROLES = ("param", "skip", "pool", "zero")


def fuse(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``gm`` whose Choices run their weighted sum through the fused kernel.

    Weights and buffers are copied; ``gm`` is not changed. Outputs and
    gradients equal the unfused graph's up to float rounding.
    """
    fused = module_copy.deepcopy(gm)
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
    """A Choice whose weighted mode calls :func:`gmgraph.kernels.mixed_op`, without a host sync.

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
        w = _zero_weights_pass_no_gradient(self.weights)
        roles = self.roles()
        if x.dim() != 4 or all(role == "zero" for role in roles):
            return self._sum(x, w, {})
        ops = list(self.ops.values())
        outputs = {i: ops[i](x) for i, role in enumerate(roles) if role == "param"}
        if any(y.shape != x.shape or y.dtype != x.dtype or y.device != x.device for y in outputs.values()):
            return self._sum(x, w, outputs)
        w_param = torch.stack([w[i] for i in outputs]) if outputs else w[:0]
        skip, pool = _weight_of(w, roles, "skip"), _weight_of(w, roles, "pool")
        return mixed_op(x, list(outputs.values()), w_param, skip, pool)

    def _sum(self, x: torch.Tensor, w: torch.Tensor, outputs: dict[int, torch.Tensor]) -> torch.Tensor:
        """The unfused sum over every candidate, reusing the outputs already computed
        (running an op twice would update its BatchNorm statistics twice)."""
        out = None
        for i, op in enumerate(self.ops.values()):
            y = w[i] * (outputs[i] if i in outputs else op(x))
            out = y if out is None else out + y
        return out


def _zero_weights_pass_no_gradient(w: torch.Tensor) -> torch.Tensor:
    """``w`` itself in value; the gradient of an entry that is exactly zero is dropped.

    An unfused Choice does not run an op whose weight is exactly zero, so that
    weight gets no gradient; decided on the device, this matches it without a sync.

    >>> w = torch.tensor([0.0, 2.0], requires_grad=True)
    >>> (_zero_weights_pass_no_gradient(w) * torch.tensor([3.0, 4.0])).sum().backward()
    >>> w.grad.tolist()
    [0.0, 4.0]
    """
    return torch.where(w != 0, w, 0.0)


def _weight_of(w: torch.Tensor, roles: tuple[str, ...], role: str) -> torch.Tensor | None:
    """The summed weight of the candidates with ``role`` (None when there are none)."""
    # Integer indexing gives views: a list index would copy it to w's device every call.
    terms = [w[i] for i, r in enumerate(roles) if r == role]
    if not terms:
        return None
    return sum(terms[1:], terms[0])


def _role(op: nn.Module) -> str:
    # Exact types: a subclass may override forward and compute something else.
    if type(op) is nn.Identity:
        return "skip"
    if type(op) is Zero and op.stride == 1:
        return "zero"
    if type(op) in (nn.AvgPool2d, AvgPool2d) and _is_pool3x3(op):
        return "pool"
    return "param"


def _is_pool3x3(pool: nn.AvgPool2d) -> bool:
    return (
        _pair(pool.kernel_size) == (3, 3) and _pair(pool.stride) == (1, 1) and _pair(pool.padding) == (1, 1)
        and not pool.ceil_mode and not pool.count_include_pad and pool.divisor_override is None
    )


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
