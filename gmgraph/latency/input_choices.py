"""InputChoice decisions in a latency table: what each candidate reads, and what it leaves unread.

An InputChoice (:mod:`gmgraph.input_choice`) combines ``k`` of its ``n`` inputs.
``derive`` makes its node read only the picked inputs (one picked input replaces
the node), and deletes what only the other inputs needed. A table keeps, on the
InputChoice's node of its flow, ``picks``: op -> the nodes that op reads.
:func:`flow_under` gives the flow as ``derive`` sees it under an arch, which
:func:`~gmgraph.liveness.live_nodes` then prunes as it prunes any Choice's graph::

    >>> flow = [{"name": "x", "kind": "kept", "inputs": []},
    ...         {"name": "conv", "kind": "node", "inputs": ["x"]},
    ...         {"name": "pick", "kind": "choice", "inputs": ["x", "conv"], "label": "in", "identity": ["0", "1"],
    ...          "zero": [], "picks": {"0": ["x"], "1": ["conv"]}},
    ...         {"name": "out", "kind": "output", "inputs": ["pick"]}]
    >>> [n["inputs"] for n in flow_under(flow, {"in": "0"}) if n["name"] == "pick"]
    [['x']]
    >>> conditional_nodes(flow)          # input 0 leaves the conv unread: it is timed on its own
    ['conv']

The combination itself (``k - 1`` additions, or one concatenation) is the op's
entry, timed on inputs of its picked inputs' shapes (:class:`Picked`). Plain
nodes that some candidate leaves unread (:func:`conditional_nodes`) are timed one
by one (:func:`node_module`) and count only when they stay live; every other
plain node stays in the table's fixed part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import fx, nn

from gmgraph.choice import Choice
from gmgraph.errors import SpaceError
from gmgraph.input_choice import InputChoice, PickInputs
from gmgraph.latency.nested import plain_copy

TIMED_OPS = ("call_module", "call_function", "call_method")


class Picked(nn.Module):
    """What an InputChoice's op runs in a derived network: the combination of its inputs, given one by one.

    >>> Picked(PickInputs((0, 2))).pick.indices     # derive renumbers the picked inputs 0..k-1
    (0, 1)
    """

    def __init__(self, pick: PickInputs):
        super().__init__()
        self.pick = PickInputs(range(len(pick.indices)), pick.reduction, pick.dim)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.pick(list(inputs))


def annotate(gm: fx.GraphModule, flow: list[dict], shapes: Mapping[str, Sequence[int]]) -> None:
    """Mark the InputChoice nodes of ``flow`` (in place): ``picks`` (op -> the names it reads),
    ``shape`` (its first input's), and every op an identity when ``k == 1`` (derive puts the picked
    input in the node's place). None of them is ``pure``: two of them on one first input still differ.

    Raises:
        SpaceError: an InputChoice inside another Choice's op, or called with inputs that are not
            tensors of the graph.
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    for entry in flow:
        node = nodes[entry["name"]]
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(module, InputChoice):
            continue
        args = node.args[0] if node.args and isinstance(node.args[0], list | tuple) else ()
        names = [a.name if isinstance(a, fx.Node) else None for a in args]
        if len(names) != module.n or any(name not in shapes for name in names):
            raise SpaceError(f"InputChoice {module.label!r}: a latency table needs it called with a list of "
                             f"{module.n} tensors of the graph")
        entry.update(picks={op: [names[i] for i in pick.indices] for op, pick in module.ops.items()},
                     shape=list(shapes[names[0]]), identity=list(module.ops) if module.k == 1 else [], pure=[])
    for outer in gm.modules():
        inner = next((m for m in outer.modules() if m is not outer and isinstance(m, InputChoice)), None)
        if isinstance(outer, Choice) and inner is not None:
            raise SpaceError(f"InputChoice {inner.label!r} sits in an op of Choice {outer.label!r}: a latency "
                             "table times InputChoices that the network's own graph calls")


def flow_under(flow: list[dict], arch: Mapping[str, str]) -> list[dict]:
    """``flow`` as ``derive(gm, arch)`` sees it: each InputChoice node reads only what its op picks."""
    return [{**n, "inputs": n["picks"][arch[n["label"]]]} if "picks" in n else n for n in flow]


def conditional_nodes(flow: list[dict]) -> list[str]:
    """Plain nodes (kind ``node``) that some arch leaves unread because an InputChoice does not pick
    them: the output reaches them through some op's picks, but not under every op of every InputChoice.

    A node reached by every op, each through another input (input 0 itself, or input 1 computed
    from input 0), is always live: it stays in the fixed part.
    """
    if not any("picks" in n for n in flow):
        return []
    sometimes, always = _reached(flow), _always(flow)
    return [n["name"] for n in flow if n["kind"] == "node" and n["name"] in sometimes - always]


def _reached(flow: list[dict]) -> set[str]:
    """Nodes that the output or a kept node reads under some op of every InputChoice."""
    nodes = {n["name"]: n for n in flow}
    stack = [n["name"] for n in flow if n["kind"] in ("output", "kept")]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            node = nodes[name]
            stack.extend([i for p in node["picks"].values() for i in p] if "picks" in node else node["inputs"])
    return seen


def _always(flow: list[dict]) -> frozenset[str]:
    """Nodes live under every arch (as far as InputChoices decide): node -> what is live whenever it is
    (itself, what its inputs need; for an InputChoice what every op needs through one of its picks),
    in graph order, gathered from the output and the kept nodes."""
    needs: dict[str, frozenset[str]] = {}
    for node in flow:
        if "picks" in node:
            options = [frozenset().union(*(needs[i] for i in p)) for p in node["picks"].values()]
            base = frozenset.intersection(*options)
        else:
            base = frozenset().union(*(needs[i] for i in node["inputs"]))
        needs[node["name"]] = base | {node["name"]}
    return frozenset().union(*(needs[n["name"]] for n in flow if n["kind"] in ("output", "kept")))


def node_module(gm: fx.GraphModule, node: fx.Node, reference: Mapping[str, str]) -> nn.Module:
    """A module computing ``node`` alone from its tensor inputs, in the order of ``tensor_inputs(node)``:
    a module node's module as derive copies it (views materialised), else a one-node GraphModule."""
    inputs = tensor_inputs(node)
    if node.op == "call_module" and node.args == tuple(inputs) and len(inputs) == 1 and not node.kwargs:
        return plain_copy(gm.get_submodule(node.target), reference)
    graph = fx.Graph()
    env = {i: graph.get_attr(i.target) if i.op == "get_attr" else graph.placeholder(i.name)
           for i in node.all_input_nodes}
    graph.output(graph.node_copy(node, env.__getitem__))
    return fx.GraphModule(gm, graph)


def tensor_inputs(node: fx.Node) -> list[fx.Node]:
    """The inputs of ``node`` that a timing feeds (every input node but constants held by the module)."""
    return [i for i in node.all_input_nodes if i.op != "get_attr"]


def timing_specs(gm: fx.GraphModule, flow: list[dict], shapes: Mapping[str, Sequence[int]],
                 reference: Mapping[str, str]) -> tuple[dict, dict]:
    """What an InputChoice adds to a table's timings, each as ``(signature, module, input shapes)``:

    * ``picks``: (label, op, shape) -> the combination each non-identity op of an InputChoice runs;
    * ``nodes``: name -> each plain node of :func:`conditional_nodes` that takes tensors and gives one
      (any other stays in the fixed part).

    Equal signatures run the same computation (timed once).

    Raises:
        SpaceError: two InputChoices share a label but combine different shapes under one op.
    """
    nodes = {n.name: n for n in gm.graph.nodes}
    picks: dict[tuple, tuple] = {}
    for entry in flow:
        if "picks" not in entry:
            continue
        choice = gm.get_submodule(nodes[entry["name"]].target)
        for op, names in entry["picks"].items():
            if op in entry["identity"]:
                continue
            module, in_shapes = Picked(choice.ops[op]), tuple(tuple(shapes[n]) for n in names)
            spec = (("pick", repr(module), in_shapes), module, in_shapes)
            key = (entry["label"], op, tuple(entry["shape"]))
            if picks.setdefault(key, spec)[0] != spec[0]:
                raise SpaceError(f"InputChoices labelled {entry['label']!r} combine inputs of different shapes "
                                 f"under {op!r}; a latency table keys ops by (label, op, first input's shape)")
    timed: dict[str, tuple] = {}
    for name in conditional_nodes(flow):
        node, inputs = nodes[name], tensor_inputs(nodes[name])
        if node.op not in TIMED_OPS or name not in shapes or any(i.name not in shapes for i in inputs):
            continue
        module, in_shapes = node_module(gm, node, reference), tuple(tuple(shapes[i.name]) for i in inputs)
        signature = ("node", repr(module), getattr(module, "code", ""), in_shapes, tuple(shapes[name]))
        timed[name] = (signature, module, in_shapes)
    return picks, timed
