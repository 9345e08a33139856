"""Where decisions nest, and how many distinct networks a space of nested decisions holds.

A Choice inside a candidate of another Choice (an OFA block's kernel inside its stage's depth, a
kernel inside each expansion of an MBConv) is a decision only on the paths that run that candidate:
a stage at depth 2 has no third block, so that block's kernel and expansion name no network. Counting
every label's ops multiplies them in anyway (the OFA space's 3^45, about 3e21); counting each nested
label only where it runs gives the networks (OFA's (9^2 + 9^3 + 9^4)^5, about 2.2e19)::

    >>> from torch import nn
    >>> from gmgraph.choice import Choice
    >>> inner = Choice({"k3": nn.Identity(), "k5": nn.ReLU()}, "kernel")
    >>> outer = Choice({"short": nn.Identity(), "long": nn.Sequential(inner)}, "depth")
    >>> places(outer)["kernel"], network_count(outer)
    ({('depth', 'long')}, 3)
"""

from __future__ import annotations

import functools
import math

from torch import nn

from gmgraph.choice import Choice

Place = tuple[str, str] | None
"""Where a Choice sits: ``None`` at the top level, else the nearest enclosing ``(label, op)``."""


def places(root: nn.Module) -> dict[str, set[Place]]:
    """label -> every place one of its Choices sits (a module shared by several candidates sits in each)."""
    found: dict[str, set[Place]] = {}
    seen: set[tuple[int, Place]] = set()
    stack: list[tuple[nn.Module, Place]] = [(root, None)]
    while stack:
        module, where = stack.pop()
        if (id(module), where) in seen:
            continue
        seen.add((id(module), where))
        if isinstance(module, Choice):
            found.setdefault(module.label, set()).add(where)
            stack.extend((op, (module.label, name)) for name, op in module.ops.items())
        else:
            stack.extend((child, where) for child in module._modules.values() if child is not None)
    return found


def network_count(root: nn.Module) -> int:
    """The distinct networks ``root``'s decisions make: label assignments, each nested label counted only
    on the paths that run it. A label whose Choices sit under two different decisions (or at the top and
    nested) cannot be counted that way: then every label counts, as in a space without nesting.
    """
    where = places(root)
    ops: dict[str, tuple[str, ...]] = {}
    for module in root.modules():
        if isinstance(module, Choice):
            ops.setdefault(module.label, module.names)
    if any(len({place[0] if place else None for place in at}) > 1 for at in where.values()):
        return math.prod(len(names) for names in ops.values())
    inside: dict[Place, list[str]] = {}
    for label, at in where.items():
        for place in at:
            inside.setdefault(place, []).append(label)

    @functools.cache
    def count(place: Place) -> int:
        return math.prod(sum(count((label, op)) for op in ops[label]) for label in inside.get(place, ()))

    return count(None)
