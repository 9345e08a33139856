"""``derive``: one architecture of a supernet as a plain network.

Each Choice node is replaced by the op the architecture names; identities are
folded into their input, zero (``none``) terms are dropped from sums, and what
no longer reaches the output is deleted::

    >>> import torch
    >>> from torch import nn
    >>> import gmgraph
    >>> from gmgraph.choice import Choice, Zero
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a = Choice({"zero": Zero(), "fc": nn.Linear(2, 2)}, "a")
    ...         self.b = Choice({"skip": nn.Identity(), "relu": nn.ReLU()}, "b")
    ...     def forward(self, x):
    ...         return self.b(x) + self.a(x)
    >>> plain = derive(gmgraph.trace(Net()), {"a": "zero", "b": "skip"})
    >>> print(plain.code.strip())
    def forward(self, x):
        return x

Derived networks always use affine BatchNorm: a non-affine BN of the supernet
becomes an affine one with weight 1 and bias 0 (the same function), which is
the standalone network that NAS-Bench-201 counts and trains.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import torch
from torch import fx, nn

from gmgraph import module_copy
from gmgraph.arch import validate
from gmgraph.choice import Choice, Zero
from gmgraph.elastic import is_view
from gmgraph.errors import SpaceError
from gmgraph.graph import space
from gmgraph.input_choice import PickInputs

_ADDS = (operator.add, torch.add)


def derive(
    gm: fx.GraphModule, arch: Mapping[str, str], *, inherit: bool = True, prune: bool = True
) -> fx.GraphModule:
    """A plain GraphModule running ``arch`` of the supernet ``gm`` (which is not changed).

    Args:
        gm: a traced (sub-)supernet.
        arch: label -> op name, one entry per label of ``gm``'s space (it may also name labels a
            restriction took out of it, ``gm.meta["dropped_labels"]``: they are ignored).
        inherit: copy the supernet's weights (True) or initialise afresh (False).
        prune: delete ops whose output never reaches the network's output (True),
            or keep every chosen op that holds parameters (False), which is how
            NAS-Bench-201 counts parameters.

    Raises:
        ArchError: when ``arch`` does not fit the graph's space.
        SpaceError: when a Choice sits inside a leaf module and cannot be replaced.
    """
    dropped = gm.meta.get("dropped_labels", {})  # labels a restriction took out of the space (restrict)
    validate({label: op for label, op in arch.items() if label not in dropped}, space(gm))
    graph = fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    chosen: dict[str, nn.Module] = {}  # target -> the supernet module it will run (not yet copied)
    zeros: set[fx.Node] = set()
    targets = {node.target for node in graph.nodes if node.op in ("call_module", "get_attr")}
    for node in list(graph.nodes):
        if node.op == "call_module":
            _choose(gm, node, arch, chosen, zeros, targets)
    _fold_zero_sums(graph, zeros)
    # Prune before copying so that dead ops are never copied.
    graph.eliminate_dead_code(_pure_unless(prune, chosen))
    root = {node.target: _copy(chosen[node.target], arch) for node in graph.nodes if node.op == "call_module"}
    root.update({n.target: module_copy.deepcopy(_get_attr(gm, n.target)) for n in graph.nodes if n.op == "get_attr"})
    derived = fx.GraphModule(root, graph, class_name=f"Derived{type(gm).__name__}")
    derived.graph.lint()
    _check_no_choice(derived)
    if not inherit:
        _reset(derived)
    derived.meta["arch"] = dict(arch)
    derived.meta["lineage"] = list(gm.meta.get("lineage", []))
    return derived


def _choose(gm: fx.GraphModule, node: fx.Node, arch, chosen: dict, zeros: set, targets: set[str]) -> None:
    """Record the module ``node`` runs in the derived graph, or fold the node away (or splice it, :func:`in_parent`)."""
    module = gm.get_submodule(node.target)
    if isinstance(module, Choice):
        module = module.ops[arch[module.label]]
        if _splices(node, module, targets):
            _splice(node, module, chosen, targets)
            return
        if isinstance(module, PickInputs) and isinstance(node.args[0], list | tuple):
            module = _read_only_picked(node, module)  # the inputs not picked become dead code
            if module is None:
                return
        if isinstance(module, nn.Identity):
            node.replace_all_uses_with(node.args[0])
            node.graph.erase_node(node)
            return
        if isinstance(module, Zero):
            zeros.add(node)
    chosen[node.target] = module


def in_parent(candidate: nn.Sequential) -> nn.Sequential:
    """Mark ``candidate``, a Choice's candidate, as a run of the children of the Choice's parent under their
    own keys (the Choice sits at the first one's key): ``derive`` then puts the blocks back into the parent
    under those keys, one node each, so the derived network's state_dict keys are the original model's.
    Returns ``candidate``.

    ``elastic_depth`` marks the depth candidates of a flat list's stage (MobileNetV2's ``features``):

        >>> import gmgraph
        >>> from collections import OrderedDict
        >>> blocks = OrderedDict((str(i), nn.Linear(2, 2)) for i in (1, 2))
        >>> stage = Choice({"d2": in_parent(nn.Sequential(blocks)),
        ...                 "d1": in_parent(nn.Sequential(OrderedDict(list(blocks.items())[:1])))}, "depth")
        >>> net = gmgraph.trace(nn.Sequential(OrderedDict({"0": nn.ReLU(), "1": stage})))
        >>> list(derive(net, {"depth": "d2"}).state_dict())
        ['1.weight', '1.bias', '2.weight', '2.bias']
        >>> list(derive(net, {"depth": "d1"}).state_dict())
        ['1.weight', '1.bias']
    """
    candidate.keys_in_parent = True
    return candidate


def _splices(node: fx.Node, module: nn.Module, targets: set[str]) -> bool:
    """Whether the chosen ``module`` of a Choice's ``node`` goes back into the parent (:func:`in_parent`): it says
    so, it is a plain Sequential starting at the Choice's own key, and its other keys name nothing in the graph."""
    if not getattr(module, "keys_in_parent", False) or type(module) is not nn.Sequential or len(module) == 0:
        return False
    keys = list(module._modules)
    parent, _, own = node.target.rpartition(".")
    spliced = [f"{parent}.{key}" if parent else key for key in keys[1:]]
    return (keys[0] == own and len(node.args) == 1 and not node.kwargs
            and not any(_taken(target, targets) for target in spliced))


def _taken(target: str, targets: set[str]) -> bool:
    """Whether ``target``, a module or anything inside it, or a module holding it, is in ``targets``.

    >>> _taken("a.5", {"a.5.conv"}), _taken("a.5", {"a"}), _taken("a.5", {"a.50", "a.4"})
    (True, True, False)
    """
    parts = target.split(".")
    return any(t == target or t.startswith(target + ".") for t in targets) or any(
        ".".join(parts[:n]) in targets for n in range(1, len(parts)))


def _splice(node: fx.Node, stage: nn.Sequential, chosen: dict, targets: set[str]) -> None:
    """Replace ``node`` by one node per block of ``stage``, in order, at the parent's keys (now taken)."""
    parent = node.target.rpartition(".")[0]
    x = node.args[0]
    with node.graph.inserting_before(node):
        for key, block in stage._modules.items():
            target = f"{parent}.{key}" if parent else key
            x = node.graph.call_module(target, (x,))
            chosen[target] = block
            targets.add(target)
    node.replace_all_uses_with(x)
    node.graph.erase_node(node)


def _read_only_picked(node: fx.Node, pick: PickInputs) -> PickInputs | None:
    """Make an InputChoice's node read only the inputs ``pick`` combines (the others then feed nothing and
    dead-code elimination removes what computes them); a single summed input replaces the node (None)."""
    picked = [node.args[0][i] for i in pick.indices]
    if len(picked) == 1:
        node.replace_all_uses_with(picked[0])
        node.graph.erase_node(node)
        return None
    node.args = (picked, *node.args[1:])
    return PickInputs(range(len(picked)), pick.reduction, pick.dim)


def _pure_unless(prune: bool, chosen: dict):
    """Dead-code rule: inputs and output always stay; with ``prune=False`` so do ops with weights."""

    def impure(node: fx.Node) -> bool:
        if node.op in ("placeholder", "output"):
            return True
        if node.op == "call_module" and not prune:
            return any(True for _ in chosen[node.target].parameters())
        return node.op == "call_function" and node.is_impure()

    return impure


def _fold_zero_sums(graph: fx.Graph, zeros: set[fx.Node]) -> None:
    """``a + 0 -> a``; a sum of zeros stays one zero node (it keeps the shape)."""
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _ADDS or len(node.args) != 2:
            continue
        a, b = node.args
        if b in zeros:
            keep = a
        elif a in zeros:
            keep = b
        else:
            continue
        if isinstance(keep, fx.Node):
            node.replace_all_uses_with(keep)
            graph.erase_node(node)


def _get_attr(gm: nn.Module, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)


def _copy(module: nn.Module, arch: Mapping[str, str]) -> nn.Module:
    """A deep copy whose non-affine BatchNorms become affine ones computing the same function.

    Elastic views (:mod:`gmgraph.elastic`), the module itself or any inside it, become the plain
    modules their ``materialize()`` gives: sliced copies, so the shared tensor is never copied whole.
    A Choice inside it (a nested decision) becomes a copy of the op ``arch`` names for its label,
    resolved the same way (an identity stays an ``nn.Identity`` module, a zero a ``Zero``); the ops
    it did not choose are never copied.
    """
    # The memo hands deepcopy the materialised module (or the resolved op) wherever it meets a view
    # (or a Choice).
    memo: dict[int, object] = {}
    module = _resolved(module, arch, memo)
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and not bn.affine:
            _make_affine(bn)
    return module


def _resolved(module: nn.Module, arch: Mapping[str, str], memo: dict) -> nn.Module:
    """``module`` deep-copied through ``memo``, after filling ``memo`` for the views and Choices it runs."""
    if id(module) in memo:
        return memo[id(module)]
    if is_view(module):
        memo[id(module)] = module.materialize()
    elif isinstance(module, Choice):
        memo[id(module)] = _resolved(module.ops[arch[module.label]], arch, memo)
    else:
        for child in module.children():
            _resolved(child, arch, memo)
        return module_copy.deepcopy(module, memo)
    return memo[id(module)]


def _make_affine(bn: nn.modules.batchnorm._BatchNorm) -> None:
    # weight 1, bias 0: y = (x - mean) / std, exactly what the non-affine BN computed.
    bn.affine = True
    bn.weight = nn.Parameter(torch.ones(bn.num_features))
    bn.bias = nn.Parameter(torch.zeros(bn.num_features))


def _check_no_choice(derived: fx.GraphModule) -> None:
    left = [name for name, m in derived.named_modules() if isinstance(m, Choice)]
    if left:
        raise SpaceError(
            f"Choice(s) {left} sit inside leaf modules and cannot be derived; "
            "do not declare modules that contain Choices as leaves"
        )


def _reset(derived: nn.Module) -> None:
    for module in derived.modules():
        if module is not derived and hasattr(module, "reset_parameters"):
            module.reset_parameters()
