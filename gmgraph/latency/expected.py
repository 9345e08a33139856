"""The expected latency under architecture logits, differentiable in them (ProxylessNAS).

``E[latency] = fixed + sums + Σ_Choices Σ_ops softmax(alpha[label])[op] · latency(op)``
(or the table's correction applied to ``sums + Σ ...``),
with the table's time of each op at that Choice's input shape; identities and
``none`` cost 0 (derive drops them from sums). Adding ``λ · E[latency]`` to the
architecture loss sends gradient to the alphas::

    >>> import torch
    >>> from gmgraph.latency.table import LatencyTable
    >>> flow = [{"name": "x", "kind": "kept", "inputs": []},
    ...         {"name": "c", "kind": "choice", "inputs": ["x"], "label": "a", "identity": [], "zero": [],
    ...          "shape": [1]},
    ...         {"name": "out", "kind": "output", "inputs": ["c"]}]
    >>> table = LatencyTable(key={}, space={"a": ["slow", "fast"]}, flow=flow, fixed_ms=1.0,
    ...                      entries=[{"label": "a", "op": "slow", "shape": [1], "ms": 3.0, "stable": True},
    ...                               {"label": "a", "op": "fast", "shape": [1], "ms": 1.0, "stable": True}])
    >>> alpha = torch.zeros(2, requires_grad=True)          # 50/50: 1 + (3 + 1) / 2
    >>> e = expected_latency(table, {"a": alpha})
    >>> e.item()
    3.0
    >>> e.backward(); alpha.grad.tolist()                   # p * (lat - E[lat of the op])
    [0.5, -0.5]

A Choice nested in another's ops (:mod:`gmgraph.latency.nested`) counts with the
probability that an op holding it is drawn. The expectation counts every
top-level Choice as live: it does not follow dead code
(an NB201 node whose outgoing edges are all ``none``), so for a one-hot alpha it
equals ``table.predict(arch)`` where the arch has no ``none`` and no dead op.
An InputChoice's ops count as any Choice's; the plain nodes an InputChoice may
leave unread (``table.nodes``) count as live, like the sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from gmgraph.errors import ConfigError
from gmgraph.latency.table import LatencyTable


def expected_latency(
    table: LatencyTable,
    alphas: Mapping[str, torch.Tensor],
    *,
    ops: Mapping[str, Sequence[str]] | None = None,
    corrected: bool | None = None,
) -> torch.Tensor:
    """Expected milliseconds as a scalar tensor on the alphas' device, with gradient to every alpha.

    Args:
        table: the latency table of the (root) supernet.
        alphas: label -> logits over that label's ops (as the ``darts``/``gdas`` samplers keep them).
        ops: label -> the op names the logits are over, in order; defaults to the table's space.
            A few-shot sub-supernet holds fewer ops per label: pass ``gmgraph.space(sub_supernet)``.
        corrected: as in :meth:`LatencyTable.predict`: by default the table's fitted line maps the
            expected op and sum time to latency (``offset + scale * ...``), else ``fixed + ...``.

    Raises:
        ConfigError: a label missing or unknown, a logits length that does not match its ops, or an
            op the table does not know.
    """
    names = ops if ops is not None else table.space
    missing = [label for label in table.space if label not in alphas]
    unknown = [label for label in alphas if label not in table.space]
    if missing or unknown:
        raise ConfigError(f"alphas must hold one logits tensor per label of the table's space; "
                          f"missing {missing}, unknown {unknown}")
    sums = sum(table.sum_ms(n) for n in table.flow if n["kind"] == "sum") + sum(e["ms"] for e in table.nodes)
    total = None
    probs: dict[str, dict[str, torch.Tensor]] = {}
    for label, alpha in alphas.items():
        label_ops = _ops_of(table, label, names, alpha)
        p = alpha.softmax(0)
        probs[label] = dict(zip(label_ops, p))
        costs = torch.tensor([_cost(table, label, op) for op in label_ops], dtype=alpha.dtype, device=alpha.device)
        term = (p * costs).sum()
        total = term if total is None else total + term
    for node in table.flow:
        if node["kind"] == "choice" and node.get("nested"):
            total = total + _nested_cost(table, node, probs)
    return table.corrected(total + sums, corrected)


def _nested_cost(table: LatencyTable, node: dict, probs: Mapping[str, Mapping[str, torch.Tensor]]) -> torch.Tensor:
    """Expected time of the Choices nested in ``node``'s ops: each one's expected op time times the
    probability that an op holding it runs (its enclosing Choice runs and draws such an op; labels
    drawn independently, several holders combined as independent events)."""
    run = {"": 1.0}  # path -> probability that the Choice there runs
    labels = {"": node["label"]}
    total = 0.0
    for inner in node["nested"]:
        absent = 1.0
        for parent, ops in inner["parents"].items():
            if parent in run:
                held = sum(probs[labels[parent]][op] for op in ops if op in probs[labels[parent]])
                absent = absent * (1 - run[parent] * held)
        run[inner["path"]], labels[inner["path"]] = 1 - absent, inner["label"]
        mine = probs[inner["label"]]
        total = total + run[inner["path"]] * sum(p * table.entry(inner["label"], op, inner["shape"])
                                                 for op, p in mine.items())
    return total


def _ops_of(table: LatencyTable, label: str, names: Mapping[str, Sequence[str]], alpha: torch.Tensor) -> list[str]:
    if label not in names:
        raise ConfigError(f"ops names no ops for label {label!r}")
    label_ops = list(names[label])
    if alpha.dim() != 1 or len(alpha) != len(label_ops):
        raise ConfigError(f"alpha of {label!r} has shape {tuple(alpha.shape)} but {len(label_ops)} ops "
                          f"({', '.join(label_ops)}); pass ops=gmgraph.space(supernet) for a restricted supernet")
    unknown = [op for op in label_ops if op not in table.space[label]]
    if unknown:
        raise ConfigError(f"the latency table has no op {unknown} for {label!r} (it has {', '.join(table.space[label])})")
    return label_ops


def _cost(table: LatencyTable, label: str, op: str) -> float:
    """Σ over the Choices of ``label`` of ``op``'s time; identities and ``none`` are free."""
    total = 0.0
    for node in table.flow:
        if node["kind"] == "choice" and node["label"] == label and op not in node["zero"]:
            total += table.entry(label, op, node["shape"])
    return total
