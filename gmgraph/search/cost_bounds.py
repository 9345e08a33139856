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
leave what fed it unused (:mod:`gmgraph.liveness` replays those rules). A node is
*needed* in every architecture when the output reads it through nodes that cannot all be
dropped: every input of a plain node or a Choice, an operand of a sum that can never be
zero, and what both operands of a sum of maybe-zero terms need (one of them always stays).
The bound is the cost of those nodes, each Choice at its cheapest op (per label: a label's
op applies to all its Choices).

Elastic candidates (:mod:`gmgraph.elastic`) count what derive makes of them: a view its slice of
the shared tensor, never the whole tensor. A Choice may hold Choices inside its candidates
(nested: an OFA stage's depth Choice holding blocks that choose their kernel); a nested Choice
costs only where the op its enclosing Choice runs holds it, so an op's bounds are its own part
plus, per nested Choice, that Choice's cheapest (dearest) op (:func:`op_param_bounds`). Nested
labels are bounded per Choice, which can only widen the range: the bounds stay true bounds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn

from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, LinearView, NormView, is_view
from gmgraph.graph import choices, running
from gmgraph.liveness import dataflow
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
    """Names of the nodes of ``flow`` (:func:`~gmgraph.liveness.dataflow`) that every
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


def op_param_bounds(choice: Choice) -> dict[str, tuple[int, int]]:
    """op name -> (fewest, most) parameters that op has in a derived network.

    Views count their slices; a Choice nested inside the op counts at its cheapest (dearest) op,
    recursively; a Choice the op does not hold costs nothing.

    >>> from gmgraph.elastic import ConvView
    >>> shared = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    >>> kernel = Choice({"k3": ConvView(shared, kernel=3), "k5": ConvView(shared, kernel=5)}, "kernel")
    >>> depth = Choice({"deep": nn.Sequential(nn.Linear(2, 2), kernel), "shallow": nn.Identity()}, "depth")
    >>> op_param_bounds(depth)
    {'deep': (15, 31), 'shallow': (0, 0)}
    """
    return {name: _param_bounds(op) for name, op in choice.ops.items()}


def _param_bounds(module: nn.Module) -> tuple[int, int]:
    own, inner = own_parameters(module)
    low = high = own
    for nested in inner:
        bounds = op_param_bounds(nested).values()
        low += min(b[0] for b in bounds)
        high += max(b[1] for b in bounds)
    return low, high


def own_parameters(module: nn.Module) -> tuple[int, list[Choice]]:
    """(parameters ``module`` has in a derived network outside the Choices it holds, those Choices).

    As :func:`~gmgraph.elastic.plain_parameters` (a view counts its slice, a non-affine BatchNorm
    the weight and bias derive gives it), but a Choice inside ``module`` (or ``module`` itself, if
    it is one) is not entered: it is returned, in module order, each once.
    """
    views, plain, inner, seen = [], [], [], set()

    def visit(m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if isinstance(m, Choice):
            inner.append(m)
        elif is_view(m):
            views.append(m)
        else:
            plain.append(m)
            for child in m.children():
                visit(child)

    visit(module)
    in_views = {id(p) for view in views for p in view.parameters()}
    counted: set[int] = set()
    total = sum(view.plain_parameters() for view in views)
    for m in plain:
        for p in m.parameters(recurse=False):
            if id(p) not in in_views and id(p) not in counted:
                counted.add(id(p))
                total += p.numel()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine:
            total += 2 * m.num_features
    return total, inner


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
            bounds = op_param_bounds(module)
            per_op[node.name] = lambda op, bounds=bounds: bounds[op][0]
        else:
            fixed += _param_bounds(module)[0]
    return fixed, per_op


def _flop_costs(root: fx.GraphModule, needed: list[fx.Node], input_shape: Sequence[int]) -> tuple[float, dict]:
    """Multiply-adds (zero_cost's ``flops`` convention) of the needed plain nodes, and per Choice per op."""
    counter = _MacCounter(root)
    counter.count(torch.zeros((1, *input_shape)))
    names = {node.name for node in needed}
    fixed = sum(macs for name, macs in counter.plain.items() if name in names)
    per_op = {name: (lambda op, ops=counter.choices[name]: ops[op][0]) for name in names if name in counter.choices}
    return fixed, per_op


class _Tally:
    """Multiply-adds of one run of an op: its own layers', and per nested Choice it called, each op's tally."""

    def __init__(self):
        self.own = 0
        self.calls: list[dict[str, _Tally]] = []

    def bounds(self) -> tuple[int, int]:
        """(fewest, most) multiply-adds: each nested call at its cheapest (dearest) op."""
        low = high = self.own
        for per_op in self.calls:
            inner = [tally.bounds() for tally in per_op.values()]
            low += min(b[0] for b in inner)
            high += max(b[1] for b in inner)
        return low, high


class _MacCounter(fx.Interpreter):
    """Runs a supernet and counts each node's multiply-adds (``plain``: node -> MACs;
    ``choices``: node -> op -> (fewest, most) MACs).

    One pass per op index, every label at its ``i``-th op (its last where it has fewer), so each
    Choice of the graph runs each of its ops on an input of the shape that op's label gives
    (a width sliced over several Choices of one label stays consistent). A Choice nested inside an
    op runs every one of its ops on its input (each counted apart, see :class:`_Tally`) and passes
    on the output of the op the pass names.
    """

    def __init__(self, root: fx.GraphModule):
        super().__init__(root)
        self.plain: dict[str, int] = {}
        self.choices: dict[str, dict[str, tuple[int, int]]] = {}
        self._node: fx.Node | None = None
        self._stack: list[_Tally] = []

    def count(self, x: torch.Tensor) -> None:
        modes = {m: m.training for m in self.module.modules()}
        param = next(self.module.parameters(), None)
        if param is not None:
            x = x.to(device=param.device, dtype=param.dtype)
        groups = choices(self.module)
        top = {id(self.module.get_submodule(n.target)) for n in self.graph.nodes if n.op == "call_module"}
        nested = [c for group in groups.values() for c in group if id(c) not in top]
        layers = [m for m in self.module.modules()
                  if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, ConvView, LinearView))]
        handles = [m.register_forward_hook(self._add) for m in layers]
        try:
            self.module.eval()  # no batch statistics are updated
            for choice in nested:
                choice.forward = lambda x, choice=choice: self._every_op(choice, x)
            passes = max((len(group[0].names) for group in groups.values()), default=1)
            for i in range(passes):
                arch = {label: group[0].names[min(i, len(group[0].names) - 1)] for label, group in groups.items()}
                with torch.no_grad(), running(groups, arch=arch):
                    self.run(x)
        finally:
            for handle in handles:
                handle.remove()
            for choice in nested:
                del choice.forward
            for m, training in modes.items():
                m.training = training

    def run_node(self, n: fx.Node):
        self._node = n
        return super().run_node(n)

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        name = self._node.name
        op = module.active if isinstance(module, Choice) else None
        tally = _Tally()
        self._stack.append(tally)
        try:
            out = module.ops[op](*args, **kwargs) if op is not None else module(*args, **kwargs)
        finally:
            self._stack.pop()
        if op is None:
            self.plain.setdefault(name, tally.bounds()[0])
        else:
            self.choices.setdefault(name, {}).setdefault(op, tally.bounds())
        return out

    def _every_op(self, choice: Choice, x: torch.Tensor) -> torch.Tensor:
        per_op, out = {}, None
        for name, op in choice.ops.items():
            tally = _Tally()
            self._stack.append(tally)
            try:
                y = op(_fitted(op, x))
            finally:
                self._stack.pop()
            per_op[name] = tally
            out = y if name == choice.active or out is None else out
        self._stack[-1].calls.append(per_op)
        return out

    def _add(self, layer: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if self._stack:
            self._stack[-1].own += layer_macs(layer, inputs[0], output)


def _fitted(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` with as many channels as ``op``, a width view, reads (cut, or zero-filled; only shapes count here).

    A nested Choice of a width label (a ResNet stage's width inside a block's inner-width candidate,
    ``elastic_stage_widths``) is given the input its label's op of this pass produced; each of its other
    ops is counted at the input it reads in the archs that choose it.

    >>> from gmgraph.elastic import NormView
    >>> _fitted(NormView(nn.BatchNorm2d(8), 4), torch.ones(1, 6, 2, 2)).shape
    torch.Size([1, 4, 2, 2])
    """
    width, dim = ((op.in_channels, 1) if isinstance(op, ConvView) else (op.channels, 1) if isinstance(op, NormView)
                  else (op.in_features, -1) if isinstance(op, LinearView) else (None, 1))
    if width is None or x.dim() < 2 or x.shape[dim] == width:
        return x
    if x.shape[dim] > width:
        return x.narrow(dim, 0, width)
    shape = list(x.shape)
    shape[dim] = width - x.shape[dim]
    return torch.cat([x, x.new_zeros(shape)], dim)


def layer_macs(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-adds of one Conv or Linear layer (zero_cost's ``flops`` convention); a conv (linear) view
    counts the conv (Linear) it materialises to.

    >>> from gmgraph.elastic import ConvView
    >>> view = ConvView(nn.Conv2d(1, 2, 5, padding=2), kernel=3)
    >>> x = torch.zeros(1, 1, 4, 4)
    >>> layer_macs(view, x, view(x)) == layer_macs(view.materialize(), x, view(x)) == 2 * 16 * 9 + 2 * 16
    True
    """
    if isinstance(layer, ConvView):
        bias = out.numel() if layer.conv.bias is not None else 0
        return out.numel() * layer.weight()[0].numel() + bias
    if isinstance(layer, LinearView):
        return out.numel() * layer.in_features + (out.numel() if layer.linear.bias is not None else 0)
    return _layer_macs(layer, x, out)
