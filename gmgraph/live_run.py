"""A single path costs what its live graph costs: dead Choices and ``none`` terms are not run.

On one path of a supernet (every Choice told its op, :func:`gmgraph.use`) some
Choices compute values that nothing live reads: an NB201 edge into a node whose
edges out are all ``none``, or a ``none`` edge itself, whose zeros only join a
sum. :func:`install` gives a traced supernet a forward pre-hook that replays
:func:`gmgraph.liveness.live_nodes` (the rules ``derive`` prunes by) for the
path in force and tells those Choices to *skip*: a skipped Choice returns a
0-dimensional zero that needs no autograd, so neither its op's forward nor its
backward runs, and a sum it joins broadcasts the zero away::

    >>> import torch
    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=2, N=1))
    >>> arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    >>> with gmgraph.use(gm, arch):
    ...     y = gm(torch.randn(2, 3, 8, 8))
    >>> len(skipped(gm, arch))   # per cell: the dead conv 1<-0 and the four none edges
    15

What stays as it was: outputs, the gradients of every parameter that reaches
the output, and the zero gradients (not ``None``) that the parameters of a dead
op got when it ran (its output reached the output times zero): a zero term
that touches exactly those parameters is added to the output, so momentum and
weight decay still act on them. What changes: a skipped op's BatchNorm running
statistics no longer see the batch (the op's output was dead, so no live value
depended on them), and a ``none`` on a non-finite input no longer makes ``nan``.

Where the rules cannot decide, everything runs as before: in weighted mode
(any Choice without a single op), or where a value of a skipped Choice would
reach a node that is neither a sum nor a Choice that ignores or passes on its
input (its shape would matter). A Choice module called at two places of the
graph is skipped only where both places agree.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import fx, nn

from gmgraph.choice import Choice
from gmgraph.liveness import dataflow, live_nodes, reached

_PLANS_KEPT = 1024  # paths remembered per supernet (a plan is a few lists of references)
_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # GraphModule -> _State
_everything = threading.local()  # .on: run_everything() is in force in this thread


@dataclass(frozen=True)
class Plan:
    """What one path skips: the Choices, and the parameters that must still get zero gradients."""

    skip: tuple[Choice, ...]
    zero_grad: tuple[nn.Parameter, ...]


def install(gm: nn.Module) -> None:
    """Make single-path runs of ``gm`` skip what no live node reads (idempotent; GraphModules only).

    ``gmgraph.trace`` and ``gmgraph.choices`` call it, so a traced supernet,
    its copies and anything a sampler runs have it.
    """
    if not isinstance(gm, fx.GraphModule) or any(h is _before for h in gm._forward_pre_hooks.values()):
        return
    gm.register_forward_pre_hook(_before)
    gm.register_forward_hook(_after, always_call=True)


@contextlib.contextmanager
def run_everything() -> Iterator[None]:
    """Within it, single-path runs compute every Choice, as before pruning (for comparisons and benchmarks).

    >>> with run_everything():
    ...     pass
    """
    before = getattr(_everything, "on", False)
    _everything.on = True
    try:
        yield
    finally:
        _everything.on = before


def skipped(gm: fx.GraphModule, arch) -> list[str]:
    """Module paths of the Choices a run of ``gm`` on ``arch`` skips (empty where nothing can be decided).

    ``arch`` names an op for every label of ``gm``'s Choices.
    """
    state = _state(gm)
    plan = state.plan(tuple(arch[m.label] for m in state.all_choices))
    if plan is None:
        return []
    path = {id(m): name for name, m in gm.named_modules()}
    return [path[id(m)] for m in plan.skip]


class _State:
    """Per supernet: its flow, its Choice nodes and the plans of the paths seen lately."""

    def __init__(self, gm: fx.GraphModule):
        self.code = gm.code
        self.flow = dataflow(gm)
        self.module_of = {n.name: gm.get_submodule(n.target) for n in gm.graph.nodes
                          if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Choice)}
        self.params_of = {n.name: _node_params(gm, n) for n in gm.graph.nodes if n.name not in self.module_of}
        self.all_choices = [m for m in gm.modules() if isinstance(m, Choice)]
        self.plans: collections.OrderedDict = collections.OrderedDict()
        self.current: Plan | None = None

    def key(self) -> tuple | None:
        """Every Choice's op, or None when some Choice of the graph has no single op (weighted mode)."""
        key = tuple(m.active for m in self.all_choices)
        return None if any(m.active is None for m in self.module_of.values()) else key

    def plan(self, key: tuple) -> Plan | None:
        if key in self.plans:
            self.plans.move_to_end(key)
            return self.plans[key]
        arch = {m.label: op for m, op in zip(self.all_choices, key)}
        plan = self._make(arch)
        self.plans[key] = plan
        if len(self.plans) > _PLANS_KEPT:
            self.plans.popitem(last=False)
        return plan

    def _make(self, arch: dict) -> Plan | None:
        live = set(live_nodes(self.flow, arch).reads)
        skip = [n["name"] for n in self.flow if n["kind"] == "choice" and n["name"] not in live
                and arch[n["label"]] not in n["identity"]]
        if not skip or not _placeholders_stay_in_sums(self.flow, set(skip), arch):
            return None
        modules = {id(self.module_of[name]): self.module_of[name] for name in skip}
        ran = {id(m) for name, m in self.module_of.items() if name not in skip}
        if ran & set(modules):  # a module called twice, skipped at one place only
            return None
        # Dead nodes that used to reach the output (times zero): their parameters got zero gradients.
        was_reached = reached(self.flow) - live
        params: dict[int, nn.Parameter] = {}
        for name in (n["name"] for n in self.flow if n["name"] in was_reached):
            for p in _running_params(self.module_of[name], arch) if name in self.module_of else self.params_of[name]:
                params.setdefault(id(p), p)
        return Plan(skip=tuple(modules.values()), zero_grad=tuple(params.values()))


def _state(gm: fx.GraphModule) -> _State:
    state = _states.get(gm)
    if state is None or state.code is not gm.code:  # new, or the graph was recompiled
        state = _states[gm] = _State(gm)
    return state


def _before(gm: fx.GraphModule, args) -> None:
    state = _state(gm)
    key = state.key() if not getattr(_everything, "on", False) else None
    plan = state.plan(key) if key is not None else None
    state.current = plan
    if plan is not None:
        for module in plan.skip:
            module.__dict__["skip"] = True


def _after(gm: fx.GraphModule, args, output):
    state = _states.get(gm)
    plan = state.current if state is not None else None
    if plan is None:
        return None
    state.current = None
    for module in plan.skip:
        module.__dict__["skip"] = False
    needs = [p for p in plan.zero_grad if p.requires_grad]
    if not needs or not torch.is_grad_enabled() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
        return None
    return _add_to_first_float(output, _zero_touching(needs))


def _zero_touching(params: list[nn.Parameter]) -> torch.Tensor:
    """A 0-d zero whose backward hands each of ``params`` a zero gradient of its shape (empty slices, no copies).

    >>> w = nn.Parameter(torch.ones(2, 3))
    >>> _zero_touching([w]).backward()
    >>> w.grad
    tensor([[0., 0., 0.],
            [0., 0., 0.]])
    """
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for p in params:
        empty = p.reshape(1)[:0] if p.dim() == 0 else p.narrow(0, 0, 0).reshape(-1)
        by_device.setdefault(p.device, []).append(empty)
    sums = [torch.cat(group).sum() for group in by_device.values()]
    return sums[0] if len(sums) == 1 else sum(s.to(sums[0].device) for s in sums)


def _add_to_first_float(output, zero: torch.Tensor):
    """``output`` with ``zero`` added to its first floating-point tensor (None: nothing to add to)."""
    if isinstance(output, torch.Tensor):
        return output + zero.to(output.device, output.dtype) if output.is_floating_point() else None
    if isinstance(output, (tuple, list)):
        for i, item in enumerate(output):
            new = _add_to_first_float(item, zero)
            if new is not None:
                items = [*output[:i], new, *output[i + 1:]]
                return type(output)(*items) if hasattr(output, "_fields") else type(output)(items)
    return None


def _placeholders_stay_in_sums(flow: list[dict], skip: set[str], arch: dict) -> bool:
    """Whether the zeros the skipped Choices return reach only sums and Choices that skip or pass them on."""
    holds = set(skip)  # nodes whose value is a 0-d placeholder
    for node in flow:
        if node["name"] in holds or not any(i in holds for i in node["inputs"]):
            continue
        if node["kind"] == "sum":
            if all(o is None or o in holds for o in node["operands"]):
                holds.add(node["name"])
        elif node["kind"] == "choice" and arch[node["label"]] in node["identity"]:
            holds.add(node["name"])
        else:
            return False
    return True


def _running_params(module: nn.Module, arch: dict) -> list[nn.Parameter]:
    """The parameters a forward of ``module`` uses on ``arch``: in a Choice only its op's (nested ones likewise)."""
    if isinstance(module, Choice):
        op = arch.get(module.label)
        return _running_params(module.ops[op], arch) if op is not None else []
    out = list(module.parameters(recurse=False))
    for child in module.children():
        out.extend(_running_params(child, arch))
    return out


def _node_params(gm: fx.GraphModule, node: fx.Node) -> list[nn.Parameter]:
    """The parameters a non-Choice node uses: its module's (``call_module``) or the one it fetches (``get_attr``)."""
    if node.op == "call_module":
        return list(gm.get_submodule(node.target).parameters())
    if node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return [value] if isinstance(value, nn.Parameter) else []
    return []
