"""What one op costs inside a network: its shapes in the supernet, and its marginal time on a runtime.

An op timed alone in a tiny model also pays what the whole network pays only
once: the call into the runtime, and onnxruntime's layout changes at the
model's edges (to and from its blocked ``NCHWc`` layout around convolutions).
Timing ``k`` copies of the op and taking the slope between two ``k`` cancels
both. Copies run one after another when the op keeps its input's shape (as
inside a network), else side by side::

    >>> import torch
    >>> chain = copies(torch.nn.ReLU(), 3, torch.randn(2, 4))
    >>> type(chain).__name__, len(chain.ops)
    ('Chain', 3)
    >>> type(copies(torch.nn.Conv2d(1, 1, 3, stride=2), 2, torch.randn(1, 1, 4, 4))).__name__
    'Side'
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import fx, nn

from gmgraph.graph import choices, use
from gmgraph.latency.measure import Timing, measure_runner
from gmgraph.latency.runtimes import RUNTIMES

COPIES = (1, 5)
"""The two copy counts whose time difference gives an op's marginal time."""

ROUNDS = 2
"""Timings of each copy count, taken in turns; the quickest is used."""


class Chain(nn.Module):
    """Copies of an op applied one after another."""

    def __init__(self, op: nn.Module, k: int):
        super().__init__()
        self.ops = nn.ModuleList(copy.deepcopy(op) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x


class Side(nn.Module):
    """Copies of an op side by side, each on an input of its own, every output returned.

    Inputs of their own: copies on one input would be computed once by onnxruntime's
    common-subexpression elimination (all of a parameter-free op, the leading ReLU of others).
    """

    def __init__(self, op: nn.Module, k: int):
        super().__init__()
        self.ops = nn.ModuleList(copy.deepcopy(op) for _ in range(k))

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(op(x) for op, x in zip(self.ops, xs))


class Apart(nn.Module):
    """Copies of an op of several inputs side by side, each copy on ``arity`` inputs of its own."""

    def __init__(self, op: nn.Module, k: int, arity: int):
        super().__init__()
        self.ops = nn.ModuleList(copy.deepcopy(op) for _ in range(k))
        self.arity = arity

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(op(*xs[i * self.arity:(i + 1) * self.arity]) for i, op in enumerate(self.ops))


class Sums(nn.Module):
    """``k`` additions: ``a + b``, then ``+ b`` again, as a node of a cell sums its edges."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        for _ in range(self.k):
            a = a + b
        return a


def copies(op: nn.Module, k: int, x: torch.Tensor) -> nn.Module:
    """``k`` copies of ``op`` (eval mode): a :class:`Chain` when it keeps ``x``'s shape, else a :class:`Side`."""
    op = copy.deepcopy(op).eval().cpu()
    with torch.no_grad():
        same = tuple(op(x).shape) == tuple(x.shape)
    return (Chain if same else Side)(op, k)


def marginal_ms(op: nn.Module, x: torch.Tensor, **timing) -> tuple[float, bool]:
    """(milliseconds one more ``op`` adds to a network, whether the timings it used were stable).

    ``timing``: runtime, threads, warmup, runs, max_spread, attempts, clock (as ``measure`` takes them).
    """
    generator = torch.Generator().manual_seed(1)
    models = []
    for k in COPIES:
        model = copies(op, k, x)
        inputs = (x,) if isinstance(model, Chain) else tuple(torch.randn(x.shape, generator=generator) for _ in range(k))
        models.append((model, inputs))
    return _slope(models, **timing)


def marginal_inputs_ms(op: nn.Module, shapes: Sequence[Sequence[int]], **timing) -> tuple[float, bool]:
    """(milliseconds one more ``op`` adds, whether stable) for an op called with inputs of ``shapes``:
    :func:`marginal_ms` for one input, else copies side by side (:class:`Apart`) on seeded inputs."""
    if len(shapes) == 1:
        return marginal_ms(op, torch.randn(tuple(shapes[0]), generator=torch.Generator().manual_seed(0)), **timing)
    op = copy.deepcopy(op).eval().cpu()
    generator = torch.Generator().manual_seed(1)
    models = [(Apart(op, k, len(shapes)), tuple(torch.randn(tuple(s), generator=generator)
                                                for _ in range(k) for s in shapes)) for k in COPIES]
    return _slope(models, **timing)


def marginal_sum_ms(shapes: Sequence[Sequence[int]], **timing) -> tuple[float, bool]:
    """(milliseconds one more addition of operands of ``shapes`` adds, whether stable)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(tuple(s), generator=generator) for s in shapes)
    if a.dim() < b.dim() or (a.dim() == b.dim() and a.numel() < b.numel()):
        a, b = b, a  # `a` carries the broadcast shape from the first sum on
    return _slope([(Sums(k), (a, b)) for k in COPIES], **timing)


def _slope(models: Sequence[tuple[nn.Module, tuple]], **timing) -> tuple[float, bool]:
    """The slope between the two copy counts' times, each the quickest of ``ROUNDS`` timings taken in
    turns: another process's burst of work slows some rounds, never speeds one up."""
    runners = [RUNTIMES[timing["runtime"]](model, inputs, threads=timing["threads"]) for model, inputs in models]
    best: list[Timing | None] = [None] * len(runners)
    for _ in range(ROUNDS):
        for i, (runner, (_, inputs)) in enumerate(zip(runners, models)):
            t = measure_runner(runner, batch=int(inputs[0].shape[0]), **timing)
            if best[i] is None or t.median_ms < best[i].median_ms:
                best[i] = t
    low, high = best
    # Two medians of a noisy clock can cross for an op that costs next to nothing: it costs 0.
    return max(0.0, (high.median_ms - low.median_ms) / (COPIES[1] - COPIES[0])), low.stable and high.stable


def node_shapes(gm: fx.GraphModule, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """node name -> shape of its output, from one forward pass of ``gm`` on ``example``.

    Every Choice runs its first op (all of a Choice's ops give the same shape).
    The pass runs in eval mode without gradients, so the supernet is left as it was.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                shapes[n.name] = tuple(out.shape)
            return out

    modes = [(m, m.training) for m in gm.modules()]
    arch = {label: group[0].names[0] for label, group in choices(gm).items()}
    try:
        gm.eval()
        with torch.no_grad(), use(gm, arch):
            Recorder(gm).run(example)
    finally:
        for module, training in modes:
            module.training = training
    return shapes
