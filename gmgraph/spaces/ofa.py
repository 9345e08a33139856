"""Once-for-All's MobileNetV3 space (Cai et al., ICLR 2020), with every candidate a view of shared weights.

A stem (3x3 conv, BN, h-swish), a fixed first MBConv (expansion 1, 3x3), five
stages of widths 24, 40, 80, 112, 160 (times the width multiplier), then a
1x1 expansion to 6x the last width, global pooling, a feature layer and the
classifier. Stages 1 and 2 use ReLU, the later ones h-swish; stages 2, 4 and
5 (OFA's 1, 3, 4 counted from 0) have squeeze-and-excite. Three kinds of
decision, all of them labels of :func:`gmgraph.space`:

* ``s<i>.depth`` (``d2``, ``d3``, ``d4``): the stage runs its first 2, 3 or 4
  blocks (the same block objects under every depth: blocks after the first
  are residual, so a shallower stage leaves them off the end);
* ``s<i>.b<j>.expand`` (``e3``, ``e4``, ``e6``): the block's hidden width,
  the first ``c`` channels of ONE expand conv -> BN -> depthwise conv -> BN ->
  SE -> projection (views, :mod:`gmgraph.elastic`);
* ``s<i>.b<j>.kernel`` (``k3``, ``k5``, ``k7``): the centre of ONE 7x7
  depthwise conv. The kernel Choice sits *inside* each expansion candidate
  (nested Choices), and the blocks sit inside the depth Choice.

The supernet holds the parameters of its largest subnet and nothing more::

    >>> import torch, gmgraph
    >>> from gmgraph.passes import derive
    >>> gm = gmgraph.trace(supernet(num_classes=10, width_mult=0.25, strides=strides_for(2), divisor=4))
    >>> len(gmgraph.space(gm)), gmgraph.space(gm)["s1.b1.kernel"]
    (45, ('k3', 'k5', 'k7'))
    >>> big = derive(gm, largest(gm))
    >>> sum(p.numel() for p in big.parameters()) == sum(p.numel() for p in gm.parameters())
    True
    >>> arch = smallest(gm)
    >>> to_str(arch)
    'd2:k3e3,k3e3,-,-/d2:k3e3,k3e3,-,-/d2:k3e3,k3e3,-,-/d2:k3e3,k3e3,-,-/d2:k3e3,k3e3,-,-'
    >>> with gmgraph.use(gm.eval(), arch):
    ...     gm(torch.randn(1, 3, 16, 16)).shape
    torch.Size([1, 10])

(A block the depth leaves off is written ``-`` and runs nothing; its labels are
still part of the space, set to their smallest op.)

OFA's learned kernel transform matrices are ``supernet(kernel_transform=True)``;
its channel re-sorting before the width phase is :func:`sort_channels`, which
:func:`before_phase` runs when a ``--shrink`` schedule starts its ``width`` phase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from gmgraph.arch import Arch
from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, KernelTransform, NormView
from gmgraph.errors import ArchError, SpaceError
from gmgraph.graph import choices
from gmgraph.label_sizes import largest as largest_op
from gmgraph.label_sizes import smallest as smallest_op
from gmgraph.spaces.channel_sort import shared_modules, sort_hidden

WIDTHS = (24, 40, 80, 112, 160)
STRIDES = (2, 2, 2, 1, 2)
RELU_STAGES = (1, 2)
SE_STAGES = (2, 4, 5)
DEPTHS = (2, 3, 4)
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
STAGES = len(WIDTHS)
LABELS = tuple(label for s in range(1, STAGES + 1) for label in (
    f"s{s}.depth", *(f"s{s}.b{b}.{kind}" for b in range(1, max(DEPTHS) + 1) for kind in ("kernel", "expand"))))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, losing no more than 10% (at least ``divisor``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite on views: ``x * hsigmoid(expand(relu(reduce(mean(x)))))`` (OFA's SE, bias on)."""

    def __init__(self, reduce: nn.Module, expand: nn.Module):
        super().__init__()
        self.reduce, self.expand = reduce, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * F.hardsigmoid(self.expand(s))


class Shared(nn.Module):
    """The full-size modules of one block that every candidate views (never a submodule of the block)."""

    def __init__(self, c_in: int, c_out: int, hidden: int, stride: int, se: int | None, transform: bool):
        super().__init__()
        k = max(KERNELS)
        self.transform = KernelTransform(k, [size for size in KERNELS if size < k]) if transform else None
        self.expand = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.se_reduce = None if se is None else nn.Conv2d(hidden, se, 1)
        self.se_expand = None if se is None else nn.Conv2d(se, hidden, 1)
        self.project = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)


class Block(nn.Module):
    """One MBConv: an expansion Choice of bodies (views at that hidden width, each holding a kernel
    Choice), with the identity shortcut when the block keeps its shape."""

    def __init__(self, c_in: int, c_out: int, stride: int, label: str, *, relu: bool, se: bool, divisor: int,
                 transform: bool = False):
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        hidden = {e: make_divisible(c_in * e, divisor) for e in EXPANSIONS}
        squeeze = {e: make_divisible(h // 4, divisor) for e, h in hidden.items()}
        shared = Shared(c_in, c_out, max(hidden.values()), stride, max(squeeze.values()) if se else None, transform)
        act = nn.ReLU if relu else nn.Hardswish
        self.body = Choice({f"e{e}": _body(shared, hidden[e], squeeze[e] if se else None, act, f"{label}.kernel")
                            for e in EXPANSIONS}, f"{label}.expand")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _body(shared: Shared, hidden: int, squeeze: int | None, act: type[nn.Module], kernel_label: str) -> nn.Sequential:
    kernel = Choice({f"k{k}": ConvView(shared.depthwise, kernel=k, out_channels=hidden, transform=shared.transform)
                     for k in KERNELS}, kernel_label)
    layers = [ConvView(shared.expand, out_channels=hidden), NormView(shared.bn1, hidden), act(),
              kernel, NormView(shared.bn2, hidden), act()]
    if squeeze is not None:
        layers.append(SqueezeExcite(ConvView(shared.se_reduce, out_channels=squeeze, in_channels=hidden),
                                    ConvView(shared.se_expand, out_channels=hidden, in_channels=squeeze)))
    layers += [ConvView(shared.project, in_channels=hidden), shared.bn3]
    return nn.Sequential(*layers)


class FirstBlock(nn.Module):
    """OFA's fixed first MBConv: 3x3 depthwise, BN, ReLU, 1x1 projection, BN, with the identity shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(), nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage(c_in: int, c_out: int, stride: int, index: int, divisor: int, transform: bool = False) -> Choice:
    """Stage ``index`` (1-based): a depth Choice whose candidates run the first 2, 3 or 4 of its blocks."""
    blocks = nn.Sequential(*(
        Block(c_in if b == 0 else c_out, c_out, stride if b == 0 else 1, f"s{index}.b{b + 1}",
              relu=index in RELU_STAGES, se=index in SE_STAGES, divisor=divisor, transform=transform)
        for b in range(max(DEPTHS))))
    return Choice({f"d{d}": blocks[:d] for d in DEPTHS}, f"s{index}.depth")


class Network(nn.Module):
    """Stem, first block, five elastic stages, final expansion, pooling, feature layer, classifier."""

    def __init__(self, num_classes: int, width_mult: float, in_channels: int, strides: tuple[int, ...],
                 divisor: int, transform: bool = False):
        super().__init__()
        stem = make_divisible(16 * width_mult, divisor)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, strides[0], 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.Hardswish())
        self.first_block = FirstBlock(stem)
        widths = [make_divisible(w * width_mult, divisor) for w in WIDTHS]
        self.stages = nn.Sequential(*(stage(c_in, c_out, stride, i, divisor, transform) for i, (c_in, c_out, stride)
                                      in enumerate(zip([stem, *widths], widths, strides[1:]), 1)))
        last = make_divisible(6 * widths[-1], divisor)
        # OFA keeps 1280 features below width 1.0; they scale here so that small supernets stay small.
        features = make_divisible(1280 * width_mult, divisor)
        self.final_expand = nn.Sequential(nn.Conv2d(widths[-1], last, 1, bias=False), nn.BatchNorm2d(last),
                                          nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature = nn.Sequential(nn.Conv2d(last, features, 1, bias=False), nn.Hardswish())
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.stages(self.first_block(self.stem(x))))
        return self.classifier(torch.flatten(self.feature(self.pool(x)), 1))


def supernet(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
             strides: tuple[int, ...] = (2, *STRIDES), divisor: int = 8, kernel_transform: bool = False) -> nn.Module:
    """OFA's MobileNetV3 supernet (untraced; ``gmgraph.trace`` turns it into the graph).

    Args:
        num_classes: outputs of the classifier.
        width_mult: scales every width (OFA's 1.0: a 16-channel stem, stages 24 ... 160).
        in_channels: channels of the input images.
        strides: the stem's stride, then the five stages' (OFA: 2, then 2, 2, 2, 1, 2); small images
            keep fewer of them (:func:`strides_for`).
        divisor: widths are rounded to its multiples (OFA: 8; 4 keeps a small supernet small).
        kernel_transform: OFA's learned kernel transform matrices (:class:`~gmgraph.elastic.KernelTransform`,
            a 25x25 and a 9x9 per block, shared by the block's widths): the 5x5 and 3x3 kernels are
            transformed centres of the 7x7, not plain ones. The supernet then holds its largest subnet's
            parameters plus the matrices (which ``derive`` folds into the kernels).

    Raises:
        SpaceError: strides that are not six 1s and 2s, or a divisor below 1.
    """
    strides = tuple(strides)
    if len(strides) != STAGES + 1 or any(s not in (1, 2) for s in strides):
        raise SpaceError(f"strides are the stem's and the {STAGES} stages', each 1 or 2; got {strides}")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        raise SpaceError(f"divisor must be a positive integer, got {divisor!r}")
    return Network(num_classes, width_mult, in_channels, strides, divisor, kernel_transform)


def strides_for(downsamplings: int) -> tuple[int, ...]:
    """OFA's strides keeping only the first ``downsamplings`` of its five stride-2 layers.

    >>> strides_for(5), strides_for(2)
    ((2, 2, 2, 2, 1, 2), (2, 2, 1, 1, 1, 1))

    Raises:
        SpaceError: a count outside 0..5.
    """
    full = (2, *STRIDES)
    twos = [i for i, s in enumerate(full) if s == 2]
    if isinstance(downsamplings, bool) or not isinstance(downsamplings, int) \
            or not 0 <= downsamplings <= len(twos):
        raise SpaceError(f"the OFA space has {len(twos)} stride-2 layers; keep 0 to {len(twos)}, "
                         f"got {downsamplings!r}")
    return tuple(2 if i in twos[:downsamplings] else 1 for i in range(len(full)))


def largest(gm: nn.Module) -> Arch:
    """Every label at its largest op (OFA's largest subnet: d4, k7, e6 everywhere)."""
    return {label: largest_op(group) for label, group in choices(gm).items()}


def smallest(gm: nn.Module) -> Arch:
    """Every label at its smallest op (d2, k3, e3 everywhere)."""
    return {label: smallest_op(group) for label, group in choices(gm).items()}


def sort_channels(gm: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Reorder every block's hidden channels (and SE squeeze channels) by importance, largest first (OFA).

    A narrower expansion runs the first ``c`` hidden channels; before OFA's width phase they are
    re-sorted so that those are the most important: by the L1 norm of the projection weights that
    read each channel (the squeeze channels by the SE excite weights that read them). The
    permutation is applied consistently to every module that holds the channel (expand conv, both
    BNs with their statistics, the depthwise conv, SE, projection), so the widest subnet computes
    the same function. ``optimizer``'s state of those parameters (SGD's momentum buffers, every
    tensor of the parameter's shape) is permuted with them, so training goes on as if the channels
    had always been in this order. Works on a traced supernet or a restricted child.

    >>> import gmgraph
    >>> gm = gmgraph.trace(supernet(num_classes=10, width_mult=0.25, divisor=4))
    >>> sort_channels(gm)
    20

    Returns:
        The number of blocks sorted.
    """
    state = optimizer.state if optimizer is not None else {}
    blocks = [m for m in gm.modules() if isinstance(m, Block)]
    for block in blocks:
        body = next(iter(block.body.ops.values()))
        sort_hidden(shared_modules(body), body[0].conv.out_channels, state)  # one Shared per block
    return len(blocks)


def before_phase(gm: nn.Module, phase: str, optimizer: torch.optim.Optimizer | None = None) -> str | None:
    """The OFA space's progressive-shrinking hook (``SpaceSpec.before_phase``): before the ``width`` phase,
    :func:`sort_channels` (momentum permuted too); other phases change nothing.

    >>> import gmgraph
    >>> gm = gmgraph.trace(supernet(num_classes=10, width_mult=0.25, divisor=4))
    >>> before_phase(gm, "kernel") is None, before_phase(gm, "width")
    (True, 'sorted the hidden channels of 20 blocks by importance')
    """
    if phase != "width":
        return None
    return f"sorted the hidden channels of {sort_channels(gm, optimizer)} blocks by importance"


def shared_parameters(gm: fx.GraphModule, label: str) -> list[str]:
    """Gradient-matching shared set: every parameter of the five stages (the stem, first block and head
    excluded, as on the other spaces). Gradient matching drops the tested label's own ops."""
    return [name for name, _ in gm.named_parameters() if name.startswith("stages.")]


_BLOCK = re.compile(r"k(\d+)e(\d+)")


def to_str(arch: Mapping[str, str]) -> str:
    """Stages joined by ``/``, each ``d<depth>:`` then its four blocks ``k<kernel>e<expansion>``, ``,``-joined;
    a block past the stage's depth is ``-``.

    >>> arch = {label: "k5" if label.endswith("kernel") else "e4" if label.endswith("expand") else "d3"
    ...         for label in LABELS}
    >>> to_str(arch).split("/")[0]
    'd3:k5e4,k5e4,k5e4,-'

    Raises:
        ArchError: a label of the space is missing.
    """
    missing = [label for label in LABELS if label not in arch]
    if missing:
        raise ArchError(f"an OFA architecture names all {len(LABELS)} labels; missing {missing[:3]}")
    stages = []
    for s in range(1, STAGES + 1):
        depth = int(arch[f"s{s}.depth"][1:])
        blocks = [f"{arch[f's{s}.b{b}.kernel']}{arch[f's{s}.b{b}.expand']}" if b <= depth else "-"
                  for b in range(1, max(DEPTHS) + 1)]
        stages.append(f"d{depth}:{','.join(blocks)}")
    return "/".join(stages)


def parse(text: str) -> Arch:
    """Inverse of :func:`to_str`; a ``-`` block takes the smallest kernel and expansion.

    >>> parse("d2:k7e6,k3e4,-,-/" * 4 + "d4:k3e3,k3e3,k3e3,k5e6")["s1.b1.kernel"]
    'k7'

    Raises:
        ArchError: saying what is wrong and what the text should look like.
    """
    if not isinstance(text, str):
        raise ArchError(f"an OFA architecture string is a str, got {type(text).__name__}")
    parts = text.strip().split("/")
    if len(parts) != STAGES:
        raise ArchError(f"{text!r} names {len(parts)} stage(s); an OFA architecture names {STAGES}, "
                        "like d4:k7e6,k5e4,k3e3,k3e6/... ('/' between stages)")
    arch: Arch = {}
    for s, part in enumerate(parts, 1):
        arch.update(_parse_stage(s, part))
    return arch


def _parse_stage(s: int, part: str) -> Arch:
    head, _, rest = part.partition(":")
    depths = [f"d{d}" for d in DEPTHS]
    blocks = rest.split(",")
    if head not in depths or len(blocks) != max(DEPTHS):
        raise ArchError(f"stage {s} {part!r} should be d<depth>:<{max(DEPTHS)} blocks>, depth one of "
                        f"{', '.join(depths)}, e.g. d3:k5e4,k3e6,k7e3,-")
    depth = int(head[1:])
    arch = {f"s{s}.depth": head}
    for b, block in enumerate(blocks, 1):
        if block == "-" and b > depth:
            kernel, expand = min(KERNELS), min(EXPANSIONS)
        else:
            match = _BLOCK.fullmatch(block)
            if match is None or int(match[1]) not in KERNELS or int(match[2]) not in EXPANSIONS:
                raise ArchError(f"stage {s} block {b} {block!r} should be k<kernel>e<expansion> with kernel in "
                                f"{KERNELS} and expansion in {EXPANSIONS}" + (" ('-' only past the depth)"
                                                                                if block == "-" else ""))
            kernel, expand = int(match[1]), int(match[2])
        arch[f"s{s}.b{b}.kernel"], arch[f"s{s}.b{b}.expand"] = f"k{kernel}", f"e{expand}"
    return arch
