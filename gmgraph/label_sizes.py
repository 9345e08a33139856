"""Which candidate of a decision is larger: each label's kind (kernel, width, depth, op) and size order.

The sandwich sampler trains each label's largest and smallest candidate, and
progressive shrinking widens an elastic label's allowed values from its
largest down (:mod:`gmgraph.shrinking`). Both read the order from the
candidates themselves, never from their names:

* **depth**: every candidate is an ``nn.Sequential`` whose blocks are the first
  blocks of the longest one (the same module objects, as ``elastic_depth``
  makes them); size = number of blocks.
* **kernel**: the candidates hold views (:mod:`gmgraph.elastic`) whose kernel
  sizes differ; size = the sum of their kernels.
* **width**: the candidates hold views whose channel counts differ; size =
  the sum of their channels (a conv view counts its inputs and outputs, a
  norm view its channels).
* **op**: anything else (NAS-Bench-201's, DARTS' ops); size = the parameters
  the op has once derived (:func:`~gmgraph.elastic.plain_parameters`).

A label shared by several Choices (a width on conv, norm and conv) adds the
sizes of all of them. Equal sizes keep the label's order: the earlier op
counts as the larger *and* as the smaller.

    >>> from torch import nn
    >>> from gmgraph.choice import Choice
    >>> from gmgraph.elastic import ConvView
    >>> shared = nn.Conv2d(2, 4, 7, padding=3)
    >>> group = [Choice({f"{k}x{k}": ConvView(shared, kernel=k) for k in (3, 7, 5)}, "k")]
    >>> label_kind(group), largest_first(group)
    ('kernel', ('7x7', '5x5', '3x3'))
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, LinearView, NormView, is_view, plain_parameters

KINDS = ("kernel", "depth", "width", "op")
"""The kinds of decision; progressive shrinking widens the first three (``gmgraph.config.SHRINK_PHASES``)."""


def label_kind(group: Sequence[Choice]) -> str:
    """The kind of the decision the Choices ``group`` (one label) make: kernel, depth, width or op."""
    if all(_is_depth(choice) for choice in group):
        return "depth"
    if not any(is_view(m) for choice in group for m in choice.ops.modules()):
        return "op"
    features = [_features(group, op) for op in group[0].names]
    if len({kernels for kernels, _ in features}) > 1:
        return "kernel"
    if len({channels for _, channels in features}) > 1:
        return "width"
    return "op"


def op_sizes(group: Sequence[Choice]) -> dict[str, int]:
    """op name -> its size as its label's kind measures it (see the module docstring)."""
    kind = label_kind(group)
    names = group[0].names
    if kind == "depth":
        return {op: sum(len(choice.ops[op]) for choice in group) for op in names}
    if kind in ("kernel", "width"):
        index = 0 if kind == "kernel" else 1
        return {op: sum(_features(group, op)[index]) for op in names}
    return {op: sum(plain_parameters(choice.ops[op]) for choice in group) for op in names}


def largest_first(group: Sequence[Choice]) -> tuple[str, ...]:
    """The label's ops from the largest to the smallest; equal sizes keep the label's order."""
    sizes = op_sizes(group)
    names = group[0].names
    return tuple(sorted(names, key=lambda op: (-sizes[op], names.index(op))))


def largest(group: Sequence[Choice]) -> str:
    """The label's largest op (the earliest of equals)."""
    return largest_first(group)[0]


def smallest(group: Sequence[Choice]) -> str:
    """The label's smallest op (the earliest of equals)."""
    sizes = op_sizes(group)
    return min(group[0].names, key=lambda op: (sizes[op], group[0].names.index(op)))


def _is_depth(choice: Choice) -> bool:
    """Candidates that run the first blocks of one stage: Sequentials, each a prefix of the longest."""
    ops = list(choice.ops.values())
    if len(ops) < 2 or not all(isinstance(op, nn.Sequential) for op in ops):
        return False
    longest = [id(block) for block in max(ops, key=len)]
    prefixes = all([id(block) for block in op] == longest[:len(op)] for op in ops)
    return prefixes and len({len(op) for op in ops}) > 1


def _features(group: Sequence[Choice], op: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The kernels and channel counts ``op`` runs in every Choice of ``group``, in module order.

    Views count what they run; a plain conv or BatchNorm outside any view counts itself (a candidate
    may be the shared module as it is).
    """
    kernels: list[int] = []
    channels: list[int] = []
    for choice in group:
        inside: set[int] = set()
        for module in choice.ops[op].modules():
            if id(module) in inside:
                continue
            if is_view(module):
                inside.update(id(m) for m in module.modules())
            if isinstance(module, ConvView):
                kernels.append(module.kernel)
                channels.append(module.out_channels + module.in_channels)
            elif isinstance(module, nn.Conv2d):
                kernels.append(module.kernel_size[0])
                channels.append(module.out_channels + module.in_channels)
            elif isinstance(module, NormView):
                channels.append(module.channels)
            elif isinstance(module, LinearView):
                channels.append(module.in_features + module.out_features)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                channels.append(module.num_features)
    return tuple(kernels), tuple(channels)
