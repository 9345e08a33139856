"""NAS-Bench-201: the cell search space of Dong & Yang (ICLR 2020).

A cell has 4 nodes; node i is the sum over j < i of op(i<-j)(node j); node 3
is the output. The six edge decisions are shared by all ``3 * N`` cells::

    >>> import gmgraph
    >>> gm = gmgraph.trace(supernet(C=4, N=1))
    >>> gmgraph.space_size(gm)
    15625
    >>> to_str(parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"))
    '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|'

Network (C=16, N=5 on CIFAR-10 has 73,306 + 28,000·n1 + 243,040·n3
parameters once derived): stem conv3x3+BN, N cells at C, a residual block to
2C, N cells, a residual block to 4C, N cells, BN-ReLU, global pooling, linear.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import fx, nn

from gmgraph.arch import NB201_LABELS, NB201_OPS, Arch, format_nb201, parse_nb201
from gmgraph.choice import Choice, Zero
from gmgraph.pooling import AvgPool2d

LABELS = NB201_LABELS
OPS = NB201_OPS
parse = parse_nb201
to_str = format_nb201


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BatchNorm, the NB201 conv op."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


def candidate_ops(C: int, affine: bool = True, fast_pool: bool = False) -> dict[str, nn.Module]:
    """The five NB201 candidates for an edge inside a cell of width C (``fast_pool``: ignored, see :func:`supernet`)."""
    return {
        "none": Zero(),
        "skip_connect": nn.Identity(),
        "nor_conv_1x1": ReLUConvBN(C, C, 1, affine=affine),
        "nor_conv_3x3": ReLUConvBN(C, C, 3, affine=affine),
        "avg_pool_3x3": AvgPool2d(3, stride=1, padding=1, count_include_pad=False),  # torch's bits, faster
    }


class Cell(nn.Module):
    """One NB201 cell: six edge Choices over four nodes."""

    def __init__(self, C: int, affine: bool = True):
        super().__init__()
        self.edges = nn.ModuleList(Choice(candidate_ops(C, affine), label) for label in LABELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        edge = iter(self.edges)  # LABELS order is node by node, source by source
        for i in range(1, 4):
            total = None
            for j in range(i):
                y = next(edge)(nodes[j])
                total = y if total is None else total + y
            nodes.append(total)
        return nodes[3]


class ResidualBlock(nn.Module):
    """The fixed reduction block between stages: two ReLUConvBN and a pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class Network(nn.Module):
    """The NB201 macro skeleton around cells that hold Choices."""

    def __init__(self, C: int, N: int, num_classes: int, in_channels: int, affine: bool):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C)
        )
        blocks: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                blocks.append(ResidualBlock(width // 2, width))
            blocks.extend(Cell(width, affine) for _ in range(N))
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.cells:
            x = block(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(torch.flatten(x, 1))


def supernet(
    C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3, *, affine: bool = False,
    fast_pool: bool = False,
) -> nn.Module:
    """The NB201 supernet (untraced; ``gmgraph.trace`` turns it into the graph).

    Args:
        C: channels of the first stage (doubled at each of the two reductions).
        N: cells per stage.
        num_classes: outputs of the classifier.
        in_channels: channels of the input images.
        affine: affine BatchNorm inside the cells' conv ops. The reference search
            code uses non-affine BN there (the default); a derived network always
            gets affine BN, identity-initialised where the supernet had none.
        fast_pool: accepted for older callers, no effect: every ``avg_pool_3x3`` is
            :class:`gmgraph.pooling.AvgPool2d`, bit for bit ``nn.AvgPool2d(3, 1, 1, count_include_pad=False)``
            forward and backward, and about twice as fast on the CPU (it used to select a faster pooling
            that was equal only within float32 rounding).
    """
    return Network(C, N, num_classes, in_channels, affine)


def network(arch: Arch | str, C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> fx.GraphModule:
    """The standalone (derived) NB201 network of one architecture, freshly initialised.

    >>> net = network("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|")
    >>> sum(p.numel() for p in net.parameters())   # node 2 feeds nothing: pruned
    73306
    """
    from gmgraph.graph import trace
    from gmgraph.passes.derive import derive

    if isinstance(arch, str):
        arch = parse(arch)
    return derive(trace(supernet(C, N, num_classes, in_channels, affine=True)), arch, inherit=False)


def shared_parameters(gm: nn.Module, label: str) -> list[str]:
    """GM-NAS's shared set on NB201: every parameter inside the cells and the
    residual blocks between them (stem and classifier excluded). Gradient
    matching drops the tested label's own ops from it.
    """
    return [name for name, _ in gm.named_parameters() if name.startswith("cells.")]


def live_edges(arch: Mapping[str, str] | str) -> tuple[str, ...]:
    """Labels of the edges whose output reaches the cell output (node 3).

    An edge is dead when it is ``none`` or when its target node feeds nothing
    live; NAS-Bench-201's parameter counts include dead edges' ops.

    >>> live_edges("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    ('3<-0',)
    """
    if isinstance(arch, str):
        arch = parse(arch)
    live_nodes, live = {3}, []
    for label in reversed(LABELS):  # targets are visited after every node they feed
        target, source = (int(n) for n in label.split("<-"))
        if target in live_nodes and arch[label] != "none":
            live_nodes.add(source)
            live.append(label)
    return tuple(sorted(live, key=LABELS.index))


def count_params(
    arch: Mapping[str, str] | str,
    C: int = 16,
    N: int = 5,
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    prune: bool = False,
) -> int:
    """Closed-form parameter count of the derived network (no model is built).

    With ``prune=False`` (as NAS-Bench-201 counts) the ops of dead edges count
    too; with ``prune=True`` only live edges count, as in ``derive(..., prune=True)``.

    >>> count_params("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    1531546
    """
    if isinstance(arch, str):
        arch = parse(arch)
    if prune:
        live = live_edges(arch)
        arch = {label: op if label in live else "none" for label, op in arch.items()}
    stages = (C, 2 * C, 4 * C)
    per_conv = {k: sum(N * (c * c * k * k + 2 * c) for c in stages) for k in (1, 3)}
    fixed = in_channels * C * 9 + 2 * C  # stem
    for c in stages[1:]:
        fixed += (c // 2) * c * 9 + 2 * c + c * c * 9 + 2 * c + (c // 2) * c  # residual blocks
    fixed += 2 * 4 * C + 4 * C * num_classes + num_classes  # last BN, classifier
    n1 = sum(op == "nor_conv_1x1" for op in arch.values())
    n3 = sum(op == "nor_conv_3x3" for op in arch.values())
    return fixed + n1 * per_conv[1] + n3 * per_conv[3]
