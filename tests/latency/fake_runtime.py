"""A fake, perfectly additive runtime: every model costs the sum of its parts, read off a fake clock.

Registered as runtime ``fake`` (and its clocks patched), it makes latency tables exact and
countable: a network's time is ``OVERHEAD`` + the cost of every leaf module it runs + ``SUM`` per
addition, so a table built on it must predict every architecture exactly, and every timed
call is counted in ``calls``.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from gmgraph.latency import runtimes
from gmgraph.latency.ops import Sums

OVERHEAD = 5e-6  # seconds per call
SUM = 2e-6  # seconds per addition


def leaf_cost(module: nn.Module) -> float:
    """Seconds of one leaf module: 1 us plus 1 ns per parameter."""
    return 1e-6 + 1e-9 * sum(p.numel() for p in module.parameters(recurse=False))


def module_cost(module: nn.Module) -> float:
    return sum(leaf_cost(m) for m in module.modules() if next(m.children(), None) is None)


def model_cost(model: nn.Module) -> float:
    """Seconds the fake runtime takes for one call of ``model``."""
    if isinstance(model, Sums):
        return OVERHEAD + model.k * SUM
    if isinstance(model, fx.GraphModule):
        total = OVERHEAD
        for node in model.graph.nodes:
            if node.op == "call_module":
                total += module_cost(model.get_submodule(node.target))
            elif node.op == "call_function" and node.target in (operator.add, torch.add):
                total += SUM
        return total
    return OVERHEAD + module_cost(model)


class FakeRuntime:
    """The ``fake`` runtime and its clock; ``calls`` counts timed and untimed calls."""

    def __init__(self):
        self.now = 0.0
        self.calls = 0
        self.noise: list[float] | None = None  # if set: extra seconds per call, cycled

    def runner(self, model, inputs, *, threads):
        cost = model_cost(model)

        def call():
            extra = self.noise[self.calls % len(self.noise)] if self.noise else 0.0
            self.calls += 1
            self.now += cost + extra

        return runtimes.Runner(call=call, version="fake 1.0")

    def clock(self) -> float:
        return self.now


