"""The least any architecture of a space can cost, read off the supernet before any training.

A limit such as ``--max-params`` or ``--max-flops`` below these bounds can never be met,
so ``gmgraph search`` refuses it before it trains (instead of after the search tried and failed).
The bounds hold for the measures the search reads (:func:`~gmgraph.search.measures.arch_measures`:
the derived network, dead ops pruned), so a limit they refuse is truly impossible::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> root = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> low = smallest_costs(root, (1, 8, 8))
    >>> none = dict.fromkeys(gmgraph.space(root), "none")     # the cheapest NB201 cell: no edge at all
    >>> from gmgraph.search.measures import arch_measures
    >>> measures = arch_measures(root, (1, 8, 8))
    >>> low["params"] == measures["params"](none), low["flops"] == measures["flops"](none)
    (True, True)

How: ``derive`` drops an op only by folding a zero (``none``) term out of a sum, which may
leave what fed it unused (:mod:`gmgraph.latency.liveness` replays those rules). A node is
*needed* in every architecture when the output reads it through nodes that cannot all be
dropped: every input of a plain node or a Choice, an operand of a sum that can never be
zero, and what both operands of a sum of maybe-zero terms need (one of them always stays).
The bound is the cost of those nodes, each Choice at its cheapest op (per label: a label's
op applies to all its Choices).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn

from gmgraph.choice import Choice
from gmgraph.latency.liveness import dataflow
from gmgraph.scores.zero_cost import _layer_macs


def smallest_costs(root: fx.GraphModule, input_shape: Sequence[int], *,
                   measures: Sequence[str] = ("params", "flops")) -> dict[str, float]:
    """Lower bounds, in millions, of ``params`` and ``flops`` over every architecture of ``root``.

    Args:
        root: a traced supernet (not changed; its weights do not matter).
        input_shape: one input without the batch dimension (FLOPs depend on it).
        measures: which bounds to compute (``flops`` runs every candidate op once, at batch 1).

    Units and conventions are those of :func:`~gmgraph.search.measures.arch_measures`.
    """
    nodes = {node.name: node for node in root.graph.nodes}
    needed = [nodes[name] for name in needed_in_every_arch(dataflow(root))]
    costs = {"params": lambda: _param_costs(root, needed),
             "flops": lambda: _flop_costs(root, needed, input_shape)}
    return {name: _cheapest(root, needed, *costs[name]()) / 1e6 for name in measures}


def needed_in_every_arch(flow: list[dict]) -> list[str]:
    """Names of the nodes of ``flow`` (:func:`~gmgraph.latency.liveness.dataflow`) that every
    architecture's derived network keeps (a Choice among them runs some op of its label).

    >>> flow = [{"name": "x", "kind": "kept", "inputs": []},
    ...         {"name": "a", "kind": "choice", "inputs": ["x"], "identity": [], "zero": ["none"]},
    ...         {"name": "b", "kind": "choice", "inputs": ["x"], "identity": [], "zero": ["none"]},
    ...         {"name": "s", "kind": "sum", "inputs": ["a", "b"], "operands": ["a", "b"]},
    ...         {"name": "out", "kind": "output", "inputs": ["s"]}]
    >>> needed_in_every_arch(flow)        # a or b may be dropped, never both: x stays
    ['x', 's', 'out']
    """
    bit = {node["name"]: 1 << i for i, node in enumerate(flow)}
    maybe_zero: dict[str, bool] = {}
    must: dict[str, int] = {}  # node -> bitset of what is needed whenever the node is
    for node in flow:
        name, kind, inputs = node["name"], node["kind"], node["inputs"]
        if kind == "choice":
            maybe_zero[name] = bool(node["zero"]) or (bool(node["identity"]) and maybe_zero[inputs[0]])
            must[name] = bit[name] | must[inputs[0]]
        elif kind == "sum" and None not in node["operands"]:
            a, b = node["operands"]
            maybe_zero[name] = maybe_zero[a] and maybe_zero[b]
            sure = [o for o in (a, b) if not maybe_zero[o]]
            if sure:  # an operand that is never zero is never dropped
                reads = 0
                for o in sure:
                    reads |= must[o]
            else:  # derive drops at most one of two zero terms
                reads = must[a] & must[b]
            must[name] = bit[name] | reads
        else:
            maybe_zero[name] = False
            reads = 0
            for i in inputs:
                reads |= must[i]
            must[name] = bit[name] | reads
    everywhere = 0
    for node in flow:
        if node["kind"] in ("output", "kept"):
            everywhere |= must[node["name"]]
    return [node["name"] for node in flow if everywhere & bit[node["name"]]]


def derived_params(module: nn.Module) -> int:
    """Parameters ``module`` has in a derived network: derive makes non-affine BatchNorms affine."""
    extra = sum(2 * m.num_features for m in module.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine)
    return sum(p.numel() for p in module.parameters()) + extra


def _cheapest(root: fx.GraphModule, needed: list[fx.Node], fixed: float,
              per_op: dict[str, Callable[[str], float]]) -> float:
    """``fixed`` plus, per label of the costed Choices, its cheapest op summed over those Choices."""
    by_label: dict[str, list[str]] = {}
    ops: dict[str, tuple[str, ...]] = {}
    for node in needed:
        if node.name in per_op:
            choice = root.get_submodule(node.target)
            by_label.setdefault(choice.label, []).append(node.name)
            ops[choice.label] = choice.names
    return fixed + sum(min(sum(per_op[name](op) for name in names) for op in ops[label])
                       for label, names in by_label.items())


def _param_costs(root: fx.GraphModule, needed: list[fx.Node]) -> tuple[float, dict]:
    """Parameters of the needed plain modules and get_attr tensors (each target once), and per Choice per op."""
    fixed, seen, per_op = 0, set(), {}
    for node in needed:
        if node.op not in ("call_module", "get_attr") or node.target in seen:
            continue
        seen.add(node.target)
        if node.op == "get_attr":
            with contextlib.suppress(AttributeError):  # a buffer or a constant is no parameter
                fixed += root.get_parameter(node.target).numel()
            continue
        module = root.get_submodule(node.target)
        if isinstance(module, Choice):
            per_op[node.name] = lambda op, m=module: derived_params(m.ops[op])
        else:
            fixed += derived_params(module)
    return fixed, per_op


def _flop_costs(root: fx.GraphModule, needed: list[fx.Node], input_shape: Sequence[int]) -> tuple[float, dict]:
    """Multiply-adds (zero_cost's ``flops`` convention) of the needed plain nodes, and per Choice per op."""
    counter = _MacCounter(root)
    counter.count(torch.zeros((1, *input_shape)))
    names = {node.name for node in needed}
    fixed = sum(macs for name, macs in counter.plain.items() if name in names)
    per_op = {name: (lambda op, ops=counter.choices[name]: ops[op]) for name in names if name in counter.choices}
    return fixed, per_op


class _MacCounter(fx.Interpreter):
    """Runs a supernet once, every candidate op of every Choice on the Choice's input, and counts
    each node's multiply-adds (``plain``: node -> MACs; ``choices``: node -> op -> MACs)."""

    def __init__(self, root: fx.GraphModule):
        super().__init__(root)
        self.plain: dict[str, int] = {}
        self.choices: dict[str, dict[str, int]] = {}
        self._node: fx.Node | None = None

    def count(self, x: torch.Tensor) -> None:
        modes = {m: m.training for m in self.module.modules()}
        param = next(self.module.parameters(), None)
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype)
        try:
            self.module.eval()  # no batch statistics are updated
            with torch.no_grad():
                self.run(x)
        finally:
            for m, training in modes.items():
                m.training = training

    def run_node(self, n: fx.Node):
        self._node = n
        return super().run_node(n)

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if not isinstance(module, Choice):
            macs, out = _macs(module, args, kwargs)
            self.plain[self._node.name] = self.plain.get(self._node.name, 0) + macs
            return out
        per_op, out = {}, None
        for name, op in module.ops.items():
            per_op[name], y = _macs(op, args, kwargs)
            out = y if out is None else out
        self.choices[self._node.name] = per_op
        return out


def _macs(module: nn.Module, args, kwargs) -> tuple[int, object]:
    """``module(*args, **kwargs)`` and the multiply-adds of its Conv and Linear layers."""
    total = [0]

    def count(layer, inputs, output):
        total[0] += _layer_macs(layer, inputs[0], output)

    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        out = module(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return total[0], out
