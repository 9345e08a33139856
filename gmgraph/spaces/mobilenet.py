"""MobileNet / ProxylessNAS: the block-wise search space of Cai, Zhu & Han (ICLR 2019).

21 searchable inverted-residual (MBConv) blocks in six stages (widths
24/40/80/96/192/320, depths 4,4,4,4,4,1, strides 2,2,2,1,2,1; the first block
of a stage has the stride). Each block, labelled ``block1`` ... ``block21``,
chooses a kernel in {3, 5, 7} and an expansion in {3, 6} (``k3_e3`` ...
``k7_e6``); blocks with stride 1 and equal widths may also be ``zero``: the
block is a residual, so ``zero`` leaves only its identity shortcut::

    >>> import torch, gmgraph
    >>> gm = gmgraph.trace(supernet(num_classes=10, width_mult=0.25))
    >>> gmgraph.space(gm)["block1"], gmgraph.space(gm)["block2"][-1]
    (('k3_e3', 'k3_e6', 'k5_e3', 'k5_e6', 'k7_e3', 'k7_e6'), 'zero')
    >>> with gmgraph.use(gm.eval(), {label: "k3_e3" for label in gmgraph.space(gm)}):
    ...     gm(torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 10])

Around the blocks, as in ProxylessNAS: a 3x3 stride-2 conv (32 channels), a
fixed MBConv with expansion 1 to 16 channels, and after the blocks a 1x1 conv
to 1280 channels, global pooling and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from gmgraph.arch import Arch
from gmgraph.choice import Choice, Zero
from gmgraph.errors import ArchError

OPS = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6")
WIDTHS = (24, 40, 80, 96, 192, 320)
DEPTHS = (4, 4, 4, 4, 4, 1)
STRIDES = (2, 2, 2, 1, 2, 1)
LABELS = tuple(f"block{i}" for i in range(1, sum(DEPTHS) + 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MBConv(nn.Sequential):
    """Inverted residual body: 1x1 expand (skipped at expansion 1), k x k depthwise, 1x1 linear project.

    The shortcut lives in :class:`Block`, so that ``zero`` can be chosen in its place.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        hidden = round(c_in * expand)
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_norm_act(c_in, hidden, 1, activation_layer=nn.ReLU6))
        layers += [
            _conv_norm_act(hidden, hidden, kernel, stride, groups=hidden, activation_layer=nn.ReLU6),
            _conv_norm_act(hidden, c_out, 1, activation_layer=None),
        ]
        super().__init__(*layers)


def candidate_ops(c_in: int, c_out: int, stride: int) -> dict[str, nn.Module]:
    """The six MBConvs, plus ``zero`` when the block can be skipped (stride 1, equal widths)."""
    ops: dict[str, nn.Module] = {}
    for name in OPS:
        kernel, expand = (int(part[1:]) for part in name.split("_"))
        ops[name] = MBConv(c_in, c_out, kernel, stride, expand)
    if stride == 1 and c_in == c_out:
        ops["zero"] = Zero()
    return ops


class Block(nn.Module):
    """One searchable block: a Choice of bodies, plus the identity shortcut when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int, label: str):
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        self.choice = Choice(candidate_ops(c_in, c_out, stride), label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `x + body`: with body = zero, derive drops the term and the block is the identity.
        return x + self.choice(x) if self.residual else self.choice(x)


class Network(nn.Module):
    """First conv, the fixed first MBConv, the 21 searchable blocks, feature mix, pool, classifier."""

    def __init__(self, num_classes: int, width_mult: float, in_channels: int):
        super().__init__()
        c = make_divisible(32 * width_mult)
        first = make_divisible(16 * width_mult)
        self.first_conv = _conv_norm_act(in_channels, c, 3, stride=2, activation_layer=nn.ReLU6)
        self.first_block = MBConv(c, first, 3, 1, 1)
        blocks, c = [], first
        for width, depth, stride in zip(WIDTHS, DEPTHS, STRIDES):
            out = make_divisible(width * width_mult)
            for i in range(depth):
                blocks.append(Block(c, out, stride if i == 0 else 1, f"block{len(blocks) + 1}"))
                c = out
        self.blocks = nn.Sequential(*blocks)
        # ProxylessNAS widens the last layer only above width 1.0.
        last = make_divisible(1280 * width_mult) if width_mult > 1.0 else 1280
        self.feature_mix = _conv_norm_act(c, last, 1, activation_layer=nn.ReLU6)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.feature_mix(self.blocks(self.first_block(self.first_conv(x))))
        return self.classifier(torch.flatten(self.global_pooling(x), 1))


def supernet(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3) -> nn.Module:
    """The ProxylessNAS mobile supernet (untraced; ``gmgraph.trace`` turns it into the graph).

    Args:
        num_classes: outputs of the classifier.
        width_mult: scales every width (rounded to multiples of 8, at least 8).
        in_channels: channels of the input images.

    The network downsamples by 32: 32x32 inputs reach the blocks at 16x16 and end at 1x1.
    """
    return Network(num_classes, width_mult, in_channels)


def shared_parameters(gm: nn.Module, label: str) -> list[str]:
    """Gradient-matching shared set: every parameter of the 21 searchable blocks
    (the fixed first conv and first MBConv, the feature mix and the classifier are
    excluded, as stem and classifier are on NB201). Gradient matching drops the
    tested label's own ops.
    """
    return [name for name, _ in gm.named_parameters() if name.startswith("blocks.")]


def to_str(arch: Mapping[str, str]) -> str:
    """The 21 block ops joined by ``-``, block1 first.

    >>> to_str({label: "k3_e3" for label in LABELS})[:17]
    'k3_e3-k3_e3-k3_e3'
    """
    missing = [label for label in LABELS if label not in arch]
    if missing:
        raise ArchError(f"a MobileNet architecture names all {len(LABELS)} blocks; missing {missing[:3]}")
    return "-".join(arch[label] for label in LABELS)


def parse(text: str) -> Arch:
    """Inverse of :func:`to_str`.

    Raises:
        ArchError: wrong number of blocks or an unknown op.
    """
    if not isinstance(text, str):
        raise ArchError(f"a MobileNet architecture string is a str, got {type(text).__name__}")
    ops = text.strip().split("-")
    if len(ops) != len(LABELS):
        raise ArchError(f"{text!r} names {len(ops)} block(s); a MobileNet architecture names {len(LABELS)}")
    unknown = sorted({op for op in ops if op not in (*OPS, "zero")})
    if unknown:
        raise ArchError(f"in {text!r}: unknown op(s) {unknown}; block ops are {', '.join(OPS)}, zero")
    return dict(zip(LABELS, ops))


def _conv_norm_act(*args, **kwargs) -> nn.Module:
    """torchvision's conv + BN + activation block, imported only when a MobileNet is built.

    torchvision's import takes about a second (it loads torch._dynamo), which every process that
    imports gmgraph.spaces, and never builds this space, would otherwise pay.
    """
    from torchvision.ops.misc import Conv2dNormActivation

    return Conv2dNormActivation(*args, **kwargs)
