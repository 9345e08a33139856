"""Once-for-All's channel re-sorting before the width phase, for every elastic hidden layer.

A narrower expansion runs a block's first ``c`` hidden channels of ONE shared set of modules
(:mod:`gmgraph.elastic`'s views). Before the width phase those channels are re-sorted so that the
first are the most important: by the L1 norm of the projection weights that read each channel
(and each squeeze-and-excite block's squeeze channels by the excite weights that read them). The
permutation is applied to every shared module holding the channel, so the widest subnet computes
the same function; an optimizer's state of each moved parameter moves with it.

The OFA space (:func:`gmgraph.spaces.ofa.sort_channels`) and the blocks of
:func:`~gmgraph.spaces.from_model.elastic_expansions` (:func:`sort_expansions`, run by
:func:`before_phase`) share :func:`sort_hidden`::

    >>> import torch, gmgraph
    >>> from torchvision.models.mobilenetv2 import InvertedResidual
    >>> from gmgraph.spaces.from_model import elastic_expansions, supernetify
    >>> _ = torch.manual_seed(0)
    >>> gm = gmgraph.trace(supernetify(torch.nn.Sequential(InvertedResidual(8, 8, 1, 6)), elastic_expansions()))
    >>> before_phase(gm, "kernel") is None, before_phase(gm, "width")
    (True, 'sorted the hidden channels of 1 elastic expansion block(s) by importance')

The inner channels of ResNet blocks with an elastic inner width (``elastic_widths``) are re-sorted
the same way by :func:`sort_inner_widths`, also run by :func:`before_phase`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, NormView


@torch.no_grad()
def permute(tensor: torch.Tensor | None, order: torch.Tensor, dim: int, state: Mapping) -> None:
    """``tensor``'s entries along ``dim`` in ``order``, in place, and so its optimizer state's tensors of its shape.

    >>> t = torch.tensor([1., 2., 3.])
    >>> permute(t, torch.tensor([2, 0, 1]), 0, {})
    >>> t
    tensor([3., 1., 2.])
    """
    if tensor is None:
        return
    for value in (tensor, *state.get(tensor, {}).values()):
        if torch.is_tensor(value) and value.shape == tensor.shape:
            value.copy_(value.index_select(dim, order.to(value.device)))


def shared_modules(op: nn.Module) -> list[nn.Module]:
    """The shared convs and BatchNorms that the views inside ``op`` run, each once, in module order.

    >>> conv = nn.Conv2d(2, 8, 1)
    >>> [type(m).__name__ for m in shared_modules(nn.Sequential(ConvView(conv, out_channels=4), ConvView(conv)))]
    ['Conv2d']
    """
    found: dict[int, nn.Module] = {}
    for module in op.modules():
        shared = module.conv if isinstance(module, ConvView) else module.bn if isinstance(module, NormView) else None
        if shared is not None:
            found.setdefault(id(shared), shared)
    return list(found.values())


def _depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups == conv.in_channels == conv.out_channels > 1


@torch.no_grad()
def sort_hidden(modules: Iterable[nn.Module], hidden: int, state: Mapping) -> torch.Tensor:
    """Sort the ``hidden`` channels shared by ``modules`` (one block's convs and BNs, in block order) by importance.

    Importance is the L1 norm of the projection weights that read each channel (the projection: the
    last non-depthwise conv whose input is the hidden layer). A conv writing ``hidden`` channels moves
    its filters and bias, one reading them moves its input weights (a depthwise conv its channels), a
    BN of ``hidden`` features its weight, bias and running statistics. A squeeze-and-excite pair (a
    conv reading the hidden layer before the projection, and the later conv that reads its output and
    writes the hidden layer) also sorts its squeeze channels by the excite weights that read them.
    ``state`` is an optimizer's state (``optimizer.state``): what it holds for a moved parameter moves too.

    Returns:
        The hidden channels' new order (``order[i]`` is the old index of new channel ``i``).

    >>> expand, project = nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(3, 2, 1, bias=False)
    >>> _ = project.weight.data.copy_(torch.tensor([[1., 3., 2.], [1., 3., 2.]]).reshape(2, 3, 1, 1))
    >>> sort_hidden([expand, project], 3, {}).tolist(), project.weight[0, :, 0, 0].tolist()
    ([1, 2, 0], [3.0, 2.0, 1.0])
    """
    modules = list(modules)
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    readers = [c for c in convs if c.in_channels == hidden and not _depthwise(c)]
    project = readers[-1]
    order = project.weight.abs().sum((0, 2, 3)).argsort(descending=True)
    for conv in convs:
        if conv.out_channels == hidden and conv is not project:
            permute(conv.weight, order, 0, state)
            permute(conv.bias, order, 0, state)
        if conv.in_channels == hidden and not _depthwise(conv):
            permute(conv.weight, order, 1, state)
    for bn in modules:
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.num_features == hidden:
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                permute(tensor, order, 0, state)
    for reduce in readers[:-1]:
        excite = next((c for c in convs[convs.index(reduce) + 1:]
                       if c.in_channels == reduce.out_channels and c.out_channels == hidden), None)
        if excite is not None:
            squeeze = excite.weight.abs().sum((0, 2, 3)).argsort(descending=True)
            permute(reduce.weight, squeeze, 0, state)
            permute(reduce.bias, squeeze, 0, state)
            permute(excite.weight, squeeze, 1, state)
    return order


def expansion_choices(gm: nn.Module) -> list[Choice]:
    """The Choices :func:`~gmgraph.spaces.from_model.elastic_expansions` made (each marks its shared hidden
    width, ``hidden_width``) that still hold two or more widths, in module order."""
    return [m for m in gm.modules()
            if isinstance(m, Choice) and getattr(m, "hidden_width", None) and len(m.ops) > 1]


def sort_expansions(gm: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Re-sort the hidden channels of every elastic-expansion block of ``gm`` (:func:`sort_hidden`).

    Works on a traced supernet or a restricted child (each owns its shared modules). ``optimizer``'s state
    of the moved parameters (SGD's momentum buffers) is permuted with them.

    Returns:
        The number of blocks sorted.

    >>> from torchvision.models.mobilenetv2 import InvertedResidual
    >>> from gmgraph.spaces.from_model import elastic_expansions, supernetify
    >>> net = supernetify(nn.Sequential(InvertedResidual(8, 8, 1, 6)), elastic_expansions((3, 4)))
    >>> sort_expansions(net), [choice.hidden_width for choice in expansion_choices(net)]
    (1, [48])
    """
    state = optimizer.state if optimizer is not None else {}
    done: set[int] = set()
    for choice in expansion_choices(gm):
        modules = shared_modules(next(iter(choice.ops.values())))
        if modules and id(modules[0]) not in done:  # a block is sorted once, however many Choices view it
            done.add(id(modules[0]))
            sort_hidden(modules, choice.hidden_width, state)
    return len(done)


def inner_width_choices(gm: nn.Module) -> list[Choice]:
    """The Choices :func:`~gmgraph.spaces.from_model.elastic_widths` made (each op a ResNet block running the first
    channels of its inner layers) that still hold two or more widths, in module order."""
    blocks = _resnet_blocks()
    return [m for m in gm.modules() if isinstance(m, Choice) and len(m.ops) > 1
            and all(isinstance(op, blocks) for op in m.ops.values())]


def _resnet_blocks() -> tuple[type, ...]:
    """torchvision's ResNet block classes, or none while ``torchvision.models.resnet`` is not loaded (no block can
    exist then). Not imported here: torchvision (and the torch modules it loads) took about 2 s of every process
    that imports ``gmgraph.spaces``, a CLI run or a benchmark's worker, and most never build a ResNet.

    >>> from torchvision.models.resnet import BasicBlock, Bottleneck
    >>> _resnet_blocks() == (BasicBlock, Bottleneck)
    True
    """
    resnet = sys.modules.get("torchvision.models.resnet")
    return () if resnet is None else (resnet.BasicBlock, resnet.Bottleneck)


def _shared(module: nn.Module) -> nn.Module:
    """The conv or BN whose tensors ``module`` runs: a view's shared module, a Choice's (of the same module's
    views: a stage width or a kernel size nested inside the block) through its first op, else ``module``."""
    if isinstance(module, Choice):
        return _shared(next(iter(module.ops.values())))
    return module.conv if isinstance(module, ConvView) else module.bn if isinstance(module, NormView) else module


@torch.no_grad()
def sort_inner_layer(writer: nn.Conv2d, norm: nn.modules.batchnorm._BatchNorm, reader: nn.Conv2d,
                     state: Mapping) -> torch.Tensor:
    """Sort the channels ``writer`` writes, ``norm`` normalises and ``reader`` reads by the L1 norm of the
    reader's weights on each (OFA-ResNet's re-sort of a block's middle channels), in place: the block computes
    the same function. ``state``: an optimizer's state, permuted with its parameters.

    Returns:
        The new order (``order[i]`` is the old index of new channel ``i``).

    >>> writer, reader = nn.Conv2d(2, 3, 1), nn.Conv2d(3, 2, 1, bias=False)
    >>> _ = reader.weight.data.copy_(torch.tensor([[1., 3., 2.], [1., 3., 2.]]).reshape(2, 3, 1, 1))
    >>> sort_inner_layer(writer, nn.BatchNorm2d(3), reader, {}).tolist(), reader.weight[0, :, 0, 0].tolist()
    ([1, 2, 0], [3.0, 2.0, 1.0])
    """
    order = reader.weight.abs().sum((0, 2, 3)).argsort(descending=True)
    permute(writer.weight, order, 0, state)
    permute(writer.bias, order, 0, state)
    for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
        permute(tensor, order, 0, state)
    permute(reader.weight, order, 1, state)
    return order


def sort_inner_widths(gm: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Re-sort the inner channels of every ResNet block with an elastic inner width (``elastic_widths``) by
    importance, before the width phase: a ``BasicBlock``'s ``conv1`` outputs by ``conv2``'s weights on them; a
    ``Bottleneck``'s ``conv2`` outputs by ``conv3``'s, then its ``conv1`` outputs by ``conv2``'s. The widest
    subnet computes the same function; every narrower width then keeps the most important channels.

    Works on a traced supernet or a restricted child; nested decisions (a stage width, a kernel size, a depth
    around the block) are followed to the shared tensors, and a block is sorted once however many Choices view it.

    Returns:
        The number of blocks sorted.

    >>> from torchvision.models.resnet import BasicBlock
    >>> from gmgraph.spaces.from_model import elastic_widths, supernetify
    >>> _ = torch.manual_seed(0)
    >>> net = supernetify(nn.Sequential(BasicBlock(16, 16)), elastic_widths((0.5,)))
    >>> sort_inner_widths(net), net[0].ops["w1"].conv2.conv.weight.abs().sum((0, 2, 3)).diff().le(0).all().item()
    (1, True)
    """
    state = optimizer.state if optimizer is not None else {}
    done: set[int] = set()
    for choice in inner_width_choices(gm):
        block = next(iter(choice.ops.values()))
        conv1 = _shared(block.conv1)
        if id(conv1) in done:
            continue
        done.add(id(conv1))
        if isinstance(block, _resnet_blocks()[1]):  # a block was found: torchvision is loaded
            sort_inner_layer(_shared(block.conv2), _shared(block.bn2), _shared(block.conv3), state)
        sort_inner_layer(conv1, _shared(block.bn1), _shared(block.conv2), state)
    return len(done)


def before_phase(gm: nn.Module, phase: str, optimizer: torch.optim.Optimizer | None = None) -> str | None:
    """The progressive-shrinking hook of a space made with ``elastic_expansions`` or ``elastic_widths`` (the
    default ``SpaceSpec.before_phase``): before the ``width`` phase, :func:`sort_expansions` and
    :func:`sort_inner_widths` (optimizer state permuted too) and a note saying so; None before other phases and
    on a graph without such blocks.
    """
    if phase != "width":
        return None
    notes = []
    expansions = sort_expansions(gm, optimizer)
    if expansions:
        notes.append(f"the hidden channels of {expansions} elastic expansion block(s)")
    blocks = sort_inner_widths(gm, optimizer)
    if blocks:
        notes.append(f"the inner channels of {blocks} elastic-width ResNet block(s)")
    return f"sorted {' and '.join(notes)} by importance" if notes else None
