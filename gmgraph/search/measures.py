"""What a searched architecture costs, as the measures constraints and objectives read.

Units are those of the ``gmgraph search`` flags: parameters and FLOPs in
millions (of the derived network, dead ops pruned, as deployed), latency in
milliseconds predicted by a :class:`~gmgraph.latency.LatencyTable`. Each
measure remembers its answers, so an architecture met twice is costed once::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> root = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> measures = arch_measures(root, (1, 8, 8))
    >>> sorted(measures)
    ['flops', 'params']
    >>> skips = dict.fromkeys(gmgraph.space(root), "skip_connect")
    >>> convs = dict.fromkeys(gmgraph.space(root), "nor_conv_3x3")
    >>> measures["params"](skips) < measures["params"](convs), measures["flops"](skips) < measures["flops"](convs)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import fx

from gmgraph.arch import Arch, key
from gmgraph.passes.derive import derive
from gmgraph.scores.zero_cost import zero_cost

if TYPE_CHECKING:
    from gmgraph.latency import LatencyTable

Measure = Callable[[Arch], float]


def arch_measures(root: fx.GraphModule, input_shape: Sequence[int], *,
                  latency: LatencyTable | None = None) -> dict[str, Measure]:
    """``{"params", "flops"}`` (and ``"latency"`` given a table) -> function arch -> value.

    Args:
        root: the root supernet (every searched arch lies in it; weights do not matter).
        input_shape: one input without the batch dimension, for FLOPs.
        latency: the space's latency table on the deployment target.
    """
    example = torch.zeros((1, *input_shape))
    out: dict[str, Measure] = {
        "params": remembered(lambda arch: sum(p.numel() for p in derive(root, arch).parameters()) / 1e6),
        "flops": remembered(lambda arch: zero_cost(root, arch, "flops", (example, None), device="cpu") / 1e6),
    }
    if latency is not None:
        out["latency"] = remembered(latency.predict)
    return out


def remembered(measure: Measure) -> Measure:
    """``measure`` with a memory of the architectures it has costed.

    >>> calls = []
    >>> m = remembered(lambda arch: calls.append(arch) or 1.0)
    >>> m({"a": "x"}), m({"a": "x"}), len(calls)
    (1.0, 1.0, 1)
    """
    seen: dict[str, float] = {}

    def cached(arch: Mapping[str, str]) -> float:
        k = key(arch)
        if k not in seen:
            seen[k] = float(measure(arch))
        return seen[k]

    return cached


def needed(objectives: Sequence[str], limits: Mapping[str, float | None]) -> set[str]:
    """The measures a search with these objectives and limits reads.

    >>> sorted(needed(("accuracy", "params"), {"params": None, "flops": None, "latency": 5.0}))
    ['latency', 'params']
    """
    return {name for name in objectives if name != "accuracy"} | {m for m, v in limits.items() if v is not None}
