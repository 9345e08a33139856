"""Which Choices and sums of a supernet an architecture's derived network still runs.

``derive`` folds identities into their input, drops zero (``none``) terms from
sums and deletes what no longer reaches the output; only what is left costs
time. :func:`dataflow` keeps, as plain JSON-able data, just enough of the graph
to replay those rules, and :func:`live_nodes` replays them for one
architecture without building the network::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> flow = dataflow(gmgraph.trace(nb201.supernet(C=4, N=1)))
    >>> arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    >>> live = live_nodes(flow, arch)
    >>> len(live.choices), len(live.sums)      # 3 cells: node 1 feeds nothing, 3<-0 is an identity; 2 residual sums
    (0, 2)

In NB201 a node whose outgoing edges are all ``none`` is dead, and so is every
op that only feeds it.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from gmgraph.choice import Choice, Zero

_SUMS = (operator.add, torch.add)  # the sums derive folds zero terms out of (gmgraph/passes/derive.py)


def dataflow(gm: fx.GraphModule) -> list[dict]:
    """The graph as a list of JSON-able nodes, in graph order.

    Each node has ``name``, ``kind`` and ``inputs`` (names of the nodes it reads).
    Kinds: ``choice`` (with ``label``, ``identity`` and ``zero``: the op names
    derive folds away or treats as zero, and ``pure``: the ops without parameters
    or buffers, which a runtime may compute once for several Choices), ``sum`` (with ``operands``: two names, or
    None for a constant), ``output``, ``kept`` (a node dead-code elimination never
    removes: inputs, impure calls) and ``node`` (anything else).
    """
    out = []
    for node in gm.graph.nodes:
        entry: dict = {"name": node.name, "kind": "node", "inputs": [n.name for n in node.all_input_nodes]}
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, Choice):
            entry.update(kind="choice", label=module.label,
                         identity=[name for name, op in module.ops.items() if isinstance(op, nn.Identity)],
                         zero=[name for name, op in module.ops.items() if isinstance(op, Zero)],
                         pure=[name for name, op in module.ops.items() if _stateless(op)])
        elif node.op == "call_function" and node.target in _SUMS and len(node.args) == 2:
            entry.update(kind="sum", operands=[a.name if isinstance(a, fx.Node) else None for a in node.args])
        elif node.op == "output":
            entry["kind"] = "output"
        elif node.op == "placeholder" or (node.op == "call_function" and node.is_impure()):
            entry["kind"] = "kept"
        out.append(entry)
    return out


@dataclass(frozen=True)
class Live:
    """What ``derive(gm, arch)`` keeps of a supernet's flow.

    Attributes:
        choices: names of the kept Choice nodes, in graph order; each runs ``arch[label]`` (a kept
            ``none`` is a sum of zeros: it still runs, as a multiplication by 0).
        sums: names of the kept sums, in graph order.
        sources: kept Choice -> the node its input is in the derived network (identities folded).
        reads: every kept node (Choices, sums and the rest, the output included) -> the nodes it reads
            in the derived network, in argument order, folded nodes resolved to what stands for them.
            With each kept Choice's op it is the whole derived graph: two architectures with equal
            ``reads`` and equal ops on the kept Choices derive the same network.
    """

    choices: list[str]
    sums: list[str]
    sources: dict[str, str]
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)


def live_nodes(flow: list[dict], arch: Mapping[str, str]) -> Live:
    """What ``derive(gm, arch)`` keeps of ``flow`` (:func:`dataflow`)."""
    alias: dict[str, str] = {}  # folded node -> the node that stands for it
    zeros: set[str] = set()

    def resolve(name: str | None) -> str | None:
        while name in alias:
            name = alias[name]
        return name

    for node in flow:
        if node["kind"] == "choice":
            op = arch[node["label"]]
            if op in node["identity"]:
                alias[node["name"]] = resolve(node["inputs"][0])
            elif op in node["zero"]:
                zeros.add(node["name"])
        elif node["kind"] == "sum":
            a, b = (resolve(name) for name in node["operands"])
            if b in zeros and a is not None:
                alias[node["name"]] = a
            elif a in zeros and b is not None:
                alias[node["name"]] = b
    live = _reachable(flow, resolve)
    choices = [n for n in flow if n["kind"] == "choice" and n["name"] in live]
    sums = [n["name"] for n in flow if n["kind"] == "sum" and n["name"] in live]
    return Live(choices=[n["name"] for n in choices], sums=sums,
                sources={n["name"]: resolve(n["inputs"][0]) for n in choices},
                reads={n["name"]: tuple(resolve(i) for i in n["inputs"]) for n in flow if n["name"] in live})


def reached(flow: list[dict]) -> set[str]:
    """Nodes whose values reach the output when the whole supernet runs (nothing folded, zeros included).

    A node reached here but not kept by :func:`live_nodes` fed the output only through a zero:
    its parameters got zero gradients.

    >>> flow = [{"name": "x", "kind": "kept", "inputs": []}, {"name": "y", "kind": "node", "inputs": ["x"]},
    ...         {"name": "unused", "kind": "node", "inputs": ["x"]}, {"name": "out", "kind": "output", "inputs": ["y"]}]
    >>> sorted(reached(flow))
    ['out', 'x', 'y']
    """
    return _reachable(flow, lambda name: name, roots=("output",))


def _stateless(op: nn.Module) -> bool:
    return next(op.parameters(), None) is None and next(op.buffers(), None) is None


def _reachable(flow: list[dict], resolve, roots: tuple[str, ...] = ("output", "kept")) -> set[str]:
    """Nodes the output or a kept node reads, through folded nodes to what stands for them."""
    inputs = {n["name"]: n["inputs"] for n in flow}
    stack = [n["name"] for n in flow if n["kind"] in roots]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(resolve(i) for i in inputs[name])
    return seen
