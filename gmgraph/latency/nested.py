"""Choices nested inside a Choice's candidates, and elastic views, as a latency table sees them.

An op of a Choice may hold Choices of its own (an OFA stage's depth Choice holds
blocks that choose their kernel). Such an op is timed as the plain module derive
makes of it (:func:`plain_copy`: views materialised, so a 3x3 view costs a 3x3
conv; nested Choices at the reference arch, every label's first op), and its
table entry is its *own* part: that time less the times of the Choices nested
directly in it at the reference. Each nested Choice has entries of its own, so
``predict`` adds, per Choice that runs, the entry of its op (a depth candidate's
blocks count through their own Choices, never twice).

:func:`nested_choices` describes the Choices nested in one Choice as plain data,
parents before children; a nested Choice runs when one of its ``parents`` runs
an op it lists (:func:`running_nested`), which is what
:func:`gmgraph.graph.active_choices` lists::

    >>> from torch import nn
    >>> from gmgraph.choice import Choice, Neg
    >>> inner = Choice({"id": nn.Identity(), "neg": Neg()}, "act")
    >>> outer = Choice({"deep": nn.Sequential(nn.Linear(4, 4), inner), "skip": nn.Identity()}, "depth")
    >>> nested = nested_choices(outer, (1, 4), {"depth": "deep", "act": "id"})
    >>> nested
    [{'path': 'ops.deep.1', 'label': 'act', 'shape': [1, 4], 'parents': {'': ['deep']}}]
    >>> [m["path"] for m in running_nested("depth", nested, {"depth": "deep", "act": "neg"})]
    ['ops.deep.1']
    >>> running_nested("depth", nested, {"depth": "skip", "act": "neg"})
    []
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from gmgraph.choice import Choice
from gmgraph.elastic import is_view
from gmgraph.graph import choices, running


def plain_copy(module: nn.Module, arch: Mapping[str, str]) -> nn.Module:
    """A copy of ``module`` as derive makes it: views materialised, nested Choices replaced by
    (plain copies of) the op ``arch`` names for their label.

    >>> from gmgraph.elastic import ConvView
    >>> view = ConvView(nn.Conv2d(2, 2, 5, padding=2), kernel=3)
    >>> plain_copy(nn.Sequential(view, nn.ReLU()), {})
    Sequential(
      (0): Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
      (1): ReLU()
    )
    """
    memo: dict[int, object] = {}

    def fill(m: nn.Module) -> None:
        if id(m) in memo:
            return
        if is_view(m):
            memo[id(m)] = m.materialize()
        elif isinstance(m, Choice):
            memo[id(m)] = plain_copy(m.ops[arch[m.label]], arch)
        else:
            for child in m.children():
                fill(child)

    fill(module)
    return memo[id(module)] if id(module) in memo else copy.deepcopy(module, memo)


def direct_choices(module: nn.Module) -> list[tuple[str, Choice]]:
    """The Choices inside ``module`` that no other Choice inside it holds, with their paths, each once.

    >>> inner = Choice({"a": nn.ReLU()}, "x")
    >>> [path for path, _ in direct_choices(nn.Sequential(nn.ReLU(), Choice({"b": nn.Sequential(inner)}, "y")))]
    ['1']
    """
    found, seen = [], set()

    def visit(m: nn.Module, path: str) -> None:
        for name, child in m.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            where = f"{path}.{name}" if path else name
            if isinstance(child, Choice):
                found.append((where, child))
            else:
                visit(child, where)

    visit(module, "")
    return found


def nested_choices(choice: Choice, shape: Sequence[int], reference: Mapping[str, str]) -> list[dict]:
    """The Choices nested (at any depth) in ``choice``'s ops, parents before children.

    Each is ``{"path", "label", "shape", "parents"}``: its module path from ``choice`` (the first
    that reaches it), its input shape when its parent's op runs on an input of ``shape`` with every
    nested Choice at ``reference``, and ``parents``: path of the enclosing Choice (``""`` for
    ``choice``) -> the ops of it that hold this Choice. A nested Choice the reference never runs
    (inside an op whose own nested Choices do not reach it) is left out.
    """
    out: list[dict] = []
    index: dict[int, dict] = {}

    def explore(parent: Choice, path: str, in_shape: Sequence[int]) -> None:
        for op_name, op in parent.ops.items():
            for sub, inner, inner_shape in inner_runs(op, in_shape, reference):
                entry = index.get(id(inner))
                if entry is not None:
                    held = entry["parents"].setdefault(path, [])
                    if op_name not in held:
                        held.append(op_name)
                    continue
                where = f"{path}.ops.{op_name}.{sub}" if path else f"ops.{op_name}.{sub}"
                entry = {"path": where, "label": inner.label, "shape": list(inner_shape), "parents": {path: [op_name]}}
                index[id(inner)] = entry
                out.append(entry)
                explore(inner, where, inner_shape)

    explore(choice, "", shape)
    return out


def inner_runs(op: nn.Module, shape: Sequence[int], reference: Mapping[str, str]) -> list[tuple[str, Choice, tuple]]:
    """(path, Choice, input shape) of the Choices directly in ``op`` that run when ``op`` runs on an
    input of ``shape`` with every Choice inside at ``reference`` (eval mode, no gradients)."""
    direct = direct_choices(op)
    seen: dict[int, tuple] = {}

    def record(module: nn.Module, args: tuple) -> None:
        seen.setdefault(id(module), tuple(args[0].shape))

    hooks = [c.register_forward_pre_hook(record) for _, c in direct]
    modes = [(m, m.training) for m in op.modules()]
    device = next((p.device for p in op.parameters()), torch.device("cpu"))
    inside = choices(op)
    try:
        op.eval()
        with torch.no_grad(), running(inside, arch={label: reference[label] for label in inside}):
            op(torch.zeros(tuple(shape), device=device))
    finally:
        for hook in hooks:
            hook.remove()
        for m, training in modes:
            m.training = training
    return [(path, c, seen[id(c)]) for path, c in direct if id(c) in seen]


def running_nested(label: str, nested: Sequence[dict], arch: Mapping[str, str]) -> list[dict]:
    """The entries of ``nested`` (:func:`nested_choices` of a Choice of ``label``) that run under ``arch``."""
    labels = {"": label}  # path -> label of the Choices that run
    out = []
    for entry in nested:
        if any(p in labels and arch[labels[p]] in ops for p, ops in entry["parents"].items()):
            labels[entry["path"]] = entry["label"]
            out.append(entry)
    return out
