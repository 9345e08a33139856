"""Where the output width of a torchvision ResNet's stage reaches: the modules whose channels follow it.

A stage's blocks add their output to their input, so every block of a stage outputs one width: the
last conv and BN of each block, the first block's shortcut (``downsample``), the inputs of the other
blocks' ``conv1``, and what reads the stage: the next stage's first ``conv1`` and ``downsample``
conv, or the classifier ``fc`` after the last one. :func:`stage_slots` names, per module, which
stage its output and input channels follow (:func:`~gmgraph.spaces.from_model.elastic_stage_widths`
turns each into a Choice of views).

A stage may change its width only where its first block has a projection shortcut (it then reads its
input through convs alone) and what reads it does too, so ResNet-18's and -34's ``layer1``, whose
first block adds the stem's 64 channels to its output, keeps its width::

    >>> from torchvision.models import resnet18
    >>> slots = stage_slots(resnet18(), lambda c: {"w1": c, "w0p5": c // 2})
    >>> sorted({slot.out.label for slot in slots.values() if slot.out})
    ['layer2/width', 'layer3/width', 'layer4/width']
    >>> slots["layer3.0.downsample.0"].inp.label, slots["layer3.0.downsample.0"].out.label
    ('layer2/width', 'layer3/width')
    >>> slots["fc"].inp.widths
    {'w1': 512, 'w0p5': 256}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class StageWidth:
    """One stage's decision: its label and op name -> output channels, the original (all) first."""

    label: str
    widths: Mapping[str, int]


@dataclass(frozen=True)
class Slot:
    """Which stage a module's output channels (``out``) and input channels (``inp``) follow, if any."""

    out: StageWidth | None = None
    inp: StageWidth | None = None


def stage_slots(model: nn.Module, widths_of: Callable[[int], Mapping[str, int]]) -> dict[str, Slot]:
    """Module name -> its :class:`Slot`, for every torchvision ``ResNet`` in ``model`` (itself or inside it).

    ``widths_of(channels)`` gives a stage of ``channels`` outputs its op names and widths; a stage it
    gives one width only keeps it.
    """
    slots: dict[str, Slot] = {}
    for prefix, net in model.named_modules():
        if isinstance(net, ResNet):
            _resnet_slots(prefix, net, widths_of, slots)
    return slots


def _resnet_slots(prefix: str, net: ResNet, widths_of, slots: dict[str, Slot]) -> None:
    names = [f"{prefix}.{key}" if prefix else key for key in STAGES]
    stages = [getattr(net, key) for key in STAGES]
    head = f"{prefix}.fc" if prefix else "fc"
    for i, (name, stage) in enumerate(zip(names, stages)):
        after = stages[i + 1] if i + 1 < len(stages) else None
        readable = _reads_by_convs(after[0]) if after is not None else isinstance(net.fc, nn.Linear)
        width = _stage_width(name, stage, widths_of) if readable else None
        if width is not None:
            _add_stage(name, stage, width, slots)
            reader = f"{names[i + 1]}.0" if after is not None else None
            targets = [f"{reader}.conv1", f"{reader}.downsample.0"] if reader else [head]
            for target in targets:
                _add(slots, target, inp=width)


def _stage_width(name: str, stage: nn.Module, widths_of) -> StageWidth | None:
    """The stage's decision, or None where it cannot change its width (or has one width only)."""
    blocks = list(stage) if isinstance(stage, nn.Sequential) else []
    if not blocks or not all(isinstance(b, (BasicBlock, Bottleneck)) for b in blocks):
        return None
    if not _reads_by_convs(blocks[0]) or not all(_outer_convs_plain(b) for b in blocks):
        return None
    widths = dict(widths_of(_last(blocks[0])[0].out_channels))
    return StageWidth(f"{name.replace('.', '/')}/width", widths) if len(widths) > 1 else None


def _reads_by_convs(block: nn.Module) -> bool:
    """Whether ``block`` reads its input through ``conv1`` and a ``downsample`` of (conv, BN) only."""
    ds = getattr(block, "downsample", None)
    return (isinstance(block, (BasicBlock, Bottleneck)) and isinstance(ds, nn.Sequential) and len(ds) == 2
            and isinstance(ds[0], nn.Conv2d) and ds[0].groups == 1
            and isinstance(ds[1], nn.modules.batchnorm._BatchNorm) and block.conv1.groups == 1)


def _outer_convs_plain(block: nn.Module) -> bool:
    """Whether the convs that touch the stage's width can be sliced (ungrouped)."""
    return block.conv1.groups == 1 and _last(block)[0].groups == 1


def _last(block: nn.Module) -> tuple[nn.Conv2d, str, str]:
    """The block's last conv and the keys of it and of the BN after it."""
    return (block.conv3, "conv3", "bn3") if isinstance(block, Bottleneck) else (block.conv2, "conv2", "bn2")


def _add_stage(name: str, stage: nn.Sequential, width: StageWidth, slots: dict[str, Slot]) -> None:
    for j, block in enumerate(stage):
        _, conv, bn = _last(block)
        for key in (conv, bn, *(("downsample.0", "downsample.1") if j == 0 else ())):
            _add(slots, f"{name}.{j}.{key}", out=width)
        if j > 0:
            _add(slots, f"{name}.{j}.conv1", inp=width)


def _add(slots: dict[str, Slot], name: str, out: StageWidth | None = None, inp: StageWidth | None = None) -> None:
    old = slots.get(name, Slot())
    slots[name] = Slot(out or old.out, inp or old.inp)
