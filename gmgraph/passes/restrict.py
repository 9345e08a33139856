"""``restrict`` and ``split``: the few-shot rewrite of a supernet into sub-supernets.

A restricted graph is a copy whose Choices of some labels hold only a subset
of their ops; the weights of what remains are inherited (copied). The input is
never changed::

    >>> from torch import nn
    >>> import gmgraph
    >>> from gmgraph.choice import Choice, Neg
    >>> gm = gmgraph.trace(nn.Sequential(Choice({"a": nn.Identity(), "b": Neg(), "c": nn.ReLU()}, "x")))
    >>> [gmgraph.space(child) for child in split(gm, "x", [["a"], ["b", "c"]])]
    [{'x': ('a',)}, {'x': ('b', 'c')}]
    >>> gmgraph.space(gm)                      # the parent keeps its space
    {'x': ('a', 'b', 'c')}

Lineage lives in ``gm.meta``: ``meta["lineage"]`` is the list of restrictions
from the root (``{"label": ..., "ops": [...]}``), ``meta["parent"]`` the id of
the graph it was cut from (see :func:`lineage_id`). With nested Choices a
restriction can take labels out of the space (restricting a stage's depth
drops the blocks no kept depth runs, and their decisions): ``meta["dropped_labels"]``
maps them to the ops they had, and ``derive`` accepts an architecture that
still names them (it ignores them: they run nothing in the child).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import fx, nn

from gmgraph import module_copy
from gmgraph.errors import SpaceError
from gmgraph.graph import choices, space


def lineage_id(gm: fx.GraphModule) -> str:
    """A readable id of a (sub-)supernet: ``root`` or ``root/1<-0=none+skip_connect/...``."""
    steps = gm.meta.get("lineage", [])
    return "/".join(["root"] + [f"{s['label']}={'+'.join(s['ops'])}" for s in steps])


def restrict(gm: fx.GraphModule, keep: Mapping[str, Sequence[str]]) -> fx.GraphModule:
    """A copy of ``gm`` whose Choices labelled ``label`` hold only ``keep[label]``.

    Ops keep their order in the parent; the weights of kept ops are copied.

    Raises:
        SpaceError: unknown label, unknown or repeated op, or an empty group.
    """
    current = space(gm)
    kept = {label: _check_group(current, label, ops) for label, ops in keep.items()}
    # Dropped ops are mapped to one placeholder in the deepcopy memo: never copied, then removed.
    memo = {id(op): _DROPPED for op in _dropped_ops(gm, kept)}
    child = module_copy.deepcopy(gm, memo)
    for label, group in choices(child).items():
        if label in kept:
            for module in group:
                module.ops = nn.ModuleDict({n: op for n, op in module.ops.items() if n in kept[label]})
    # Labels whose every Choice sat in dropped ops (the blocks of a dropped depth) leave the space; the
    # child remembers them, so an arch of the root still derives on it (see derive).
    remaining = space(child)
    lost = {label: ops for label, ops in current.items() if label not in remaining}
    child.meta["dropped_labels"] = {**gm.meta.get("dropped_labels", {}), **lost}
    child.meta["parent"] = lineage_id(gm)
    child.meta["lineage"] = list(gm.meta.get("lineage", [])) + [
        {"label": label, "ops": list(ops)} for label, ops in kept.items()
    ]
    child.graph.lint()
    child.recompile()
    return child


_DROPPED = nn.Identity()


def _dropped_ops(gm: fx.GraphModule, kept: Mapping[str, tuple[str, ...]]) -> list[nn.Module]:
    # An op object may stand under several names or Choices (an elastic view, a depth candidate's
    # block): it is dropped only when no kept name still holds it.
    dropped, still_held = [], set()
    for label, group in choices(gm).items():
        for module in group:
            for name, op in module.ops.items():
                if label in kept and name not in kept[label]:
                    dropped.append(op)
                else:
                    still_held.add(id(op))
    return [op for op in dropped if id(op) not in still_held]


def _check_group(current: Mapping[str, tuple[str, ...]], label: str, ops: Sequence[str]) -> tuple[str, ...]:
    if label not in current:
        raise SpaceError(f"no decision named {label!r}; labels are {list(current)}")
    if isinstance(ops, str):
        raise SpaceError(f"ops for {label!r} must be a list of op names, got the string {ops!r}")
    if len(ops) == 0:
        raise SpaceError(f"the group for {label!r} is empty; every group needs at least one op")
    unknown = [op for op in ops if op not in current[label]]
    if unknown:
        raise SpaceError(f"{label!r} has no op(s) {unknown}; its candidates are {list(current[label])}")
    if len(set(ops)) != len(ops):
        raise SpaceError(f"the group for {label!r} repeats an op: {list(ops)}")
    return tuple(op for op in current[label] if op in ops)


def split(gm: fx.GraphModule, label: str, partition: Sequence[Sequence[str]]) -> list[fx.GraphModule]:
    """One restricted copy of ``gm`` per group of ``partition``: the few-shot split.

    Raises:
        SpaceError: when the groups overlap, miss a candidate, or hold an unknown op.
    """
    current = space(gm)
    if label not in current:
        raise SpaceError(f"no decision named {label!r}; labels are {list(current)}")
    if len(partition) == 0:
        raise SpaceError(f"the partition of {label!r} has no groups")
    if any(isinstance(group, str) for group in partition):
        raise SpaceError(f"each group of {label!r} must be a list of op names, got {list(partition)}")
    flat = [op for group in partition for op in group]
    overlap = sorted({op for op in flat if flat.count(op) > 1})
    if overlap:
        raise SpaceError(f"the groups of {label!r} overlap on {overlap}; each op must be in exactly one group")
    missing = [op for op in current[label] if op not in flat]
    if missing:
        raise SpaceError(
            f"the partition of {label!r} leaves out {missing}; groups must cover {list(current[label])}"
        )
    return [restrict(gm, {label: list(group)}) for group in partition]
