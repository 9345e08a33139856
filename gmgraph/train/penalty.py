"""ProxylessNAS's latency term for weighted samplers: ``weight · E[latency]`` added to the architecture loss.

``E[latency]`` is :func:`gmgraph.latency.expected_latency` of the trainer's
architecture logits over its (sub-)supernet's ops; its gradient pushes the
alphas toward cheaper ops. The per-op costs are turned into device tensors
once per space and device, so a step adds no host-to-device copy and a CUDA
graph can capture it::

    >>> import torch
    >>> from gmgraph.latency.table import LatencyTable
    >>> flow = [{"name": "x", "kind": "kept", "inputs": []},
    ...         {"name": "c", "kind": "choice", "inputs": ["x"], "label": "a", "identity": [], "zero": [],
    ...          "shape": [1]},
    ...         {"name": "out", "kind": "output", "inputs": ["c"]}]
    >>> table = LatencyTable(key={}, space={"a": ["slow", "fast"]}, flow=flow, fixed_ms=1.0,
    ...                      entries=[{"label": "a", "op": "slow", "shape": [1], "ms": 3.0, "stable": True},
    ...                               {"label": "a", "op": "fast", "shape": [1], "ms": 1.0, "stable": True}])
    >>> term = LatencyPenalty(table, weight=0.1)
    >>> alpha = torch.zeros(2, requires_grad=True)
    >>> loss = term({"a": alpha}, {"a": ("slow", "fast")})      # 0.1 * (1 + (3 + 1) / 2)
    >>> round(loss.item(), 6)
    0.3
    >>> loss.backward(); [round(g, 6) for g in alpha.grad.tolist()]   # toward "fast"
    [0.05, -0.05]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from gmgraph.errors import ConfigError
from gmgraph.latency import LatencyTable, expected_latency


class LatencyPenalty:
    """``weight`` x the expected latency (ms) of architecture logits, as a differentiable scalar."""

    def __init__(self, table: LatencyTable, weight: float):
        if not weight > 0:
            raise ConfigError(f"the latency weight must be positive, got {weight!r}")
        self.table, self.weight = table, float(weight)
        self._terms: dict[tuple, tuple[float, dict[str, torch.Tensor]]] = {}

    def __call__(self, alphas: Mapping[str, torch.Tensor], space: Mapping[str, Sequence[str]]) -> torch.Tensor:
        base, shifts = self.terms(space, next(iter(alphas.values())).device)
        change = sum((alpha.softmax(0) * shifts[label]).sum() for label, alpha in alphas.items())
        return self.weight * (base + change)

    def terms(self, space: Mapping[str, Sequence[str]], device: torch.device) -> tuple[float, dict[str, torch.Tensor]]:
        """``(E at uniform logits, label -> each op's ms above its label's mean)``, the shifts on ``device``.

        ``E[latency]`` is linear in each label's softmax, so
        ``E(alpha) = E(uniform) + Σ_label Σ_op p_op · (E(op one-hot) − mean_op' E(op' one-hot))``,
        every one-hot taken with the other labels uniform. Both are read off
        :func:`expected_latency` itself, so the two cannot drift apart.
        """
        k = (tuple((label, tuple(ops)) for label, ops in space.items()), str(device))
        if k not in self._terms:
            ops = {label: tuple(o) for label, o in space.items()}
            uniform = {label: torch.zeros(len(o)) for label, o in ops.items()}
            with torch.no_grad():
                base = float(expected_latency(self.table, uniform, ops=ops))
                shifts = {}
                for label, names in ops.items():
                    hot = [float(expected_latency(self.table, {**uniform, label: _one_hot(len(names), i)}, ops=ops))
                           for i in range(len(names))]
                    mean = sum(hot) / len(hot)
                    shifts[label] = torch.tensor([h - mean for h in hot], device=device)
            self._terms[k] = (base, shifts)
        return self._terms[k]


def _one_hot(n: int, i: int) -> torch.Tensor:
    """Logits whose softmax is exactly one-hot at ``i`` in float32."""
    logits = torch.full((n,), -1e4)
    logits[i] = 0.0
    return logits
