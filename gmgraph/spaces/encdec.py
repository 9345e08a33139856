"""A tiny encoder–decoder space for dense prediction (``--space encdec``): per-pixel logits.

Two resolutions: an encoder block at full size, one at half size after a strided
conv, a bottleneck, then an upsampling decoder that adds the full-size encoder's
features back (a U-Net's skip, summed) before its own block and a 1x1 head.
Each of the four blocks is a decision among five ops::

    >>> import torch, gmgraph
    >>> gm = gmgraph.trace(supernet(num_classes=11, in_channels=1, width=4))
    >>> gmgraph.space(gm)["enc1"]
    ('conv_3x3', 'conv_5x5', 'dil_conv_3x3', 'sep_conv_3x3', 'skip_connect')
    >>> with gmgraph.use(gm, dict.fromkeys(gmgraph.space(gm), "conv_3x3")):
    ...     tuple(gm(torch.zeros(2, 1, 16, 16)).shape)
    (2, 11, 16, 16)

Its 625 architectures are small enough to search on CPU with the placed
digits' masks (``--data digits16-seg``, ``--task segmentation``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gmgraph.choice import Choice

LABELS = ("enc1", "enc2", "mid", "dec")
OPS = ("conv_3x3", "conv_5x5", "dil_conv_3x3", "sep_conv_3x3", "skip_connect")


def _conv(c: int, kernel: int, dilation: int = 1, groups: int = 1) -> nn.Module:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(c, c, kernel, padding=pad, dilation=dilation, groups=groups, bias=False),
                         nn.BatchNorm2d(c), nn.ReLU())


def candidate_ops(c: int) -> dict[str, nn.Module]:
    """The five candidates of a block of width ``c`` (each keeps the shape)."""
    return {
        "conv_3x3": _conv(c, 3),
        "conv_5x5": _conv(c, 5),
        "dil_conv_3x3": _conv(c, 3, dilation=2),
        "sep_conv_3x3": nn.Sequential(_conv(c, 3, groups=c), _conv(c, 1)),
        "skip_connect": nn.Identity(),
    }


class EncoderDecoder(nn.Module):
    """The supernet: stem, ``enc1``, down, ``enc2``, ``mid``, up + skip, ``dec``, head."""

    def __init__(self, num_classes: int, in_channels: int, width: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.enc1 = Choice(candidate_ops(width), "enc1")
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.enc2 = Choice(candidate_ops(2 * width), "enc2")
        self.mid = Choice(candidate_ops(2 * width), "mid")
        self.up = nn.Sequential(nn.Conv2d(2 * width, width, 1, bias=False), nn.BatchNorm2d(width))
        self.dec = Choice(candidate_ops(width), "dec")
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.enc1(self.stem(x))
        half = self.mid(self.enc2(self.down(full)))
        up = F.interpolate(self.up(half), size=full.shape[-2:], mode="nearest")
        return self.head(self.dec(F.relu(up + full)))


def supernet(num_classes: int = 11, in_channels: int = 1, width: int = 8) -> EncoderDecoder:
    """The encoder–decoder supernet for ``num_classes`` per-pixel classes."""
    return EncoderDecoder(num_classes, in_channels, width)


def shared_parameters(gm, label: str) -> list[str]:
    """Gradient matching's shared set: every parameter outside the Choices (stem, down, up, head)."""
    inside = {id(p) for m in gm.modules() if isinstance(m, Choice) for p in m.parameters()}
    return [name for name, p in gm.named_parameters() if id(p) not in inside]
