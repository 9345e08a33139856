"""DARTS: the cell search space of Liu, Simonyan & Yang (ICLR 2019).

A cell takes the outputs of the two previous cells (nodes 0 and 1) and builds
four intermediate nodes 2..5; node i is the sum over j < i of op(i<-j)(node j)
and the cell outputs the concatenation of nodes 2..5. Normal cells and
reduction cells (at layers L/3 and 2L/3) have their own 14 decisions each,
labelled ``normal/i<-j`` and ``reduce/i<-j``::

    >>> import torch, gmgraph
    >>> gm = gmgraph.trace(supernet(C=4, layers=3))
    >>> len(gmgraph.space(gm)), gmgraph.space(gm)["reduce/5<-4"][:2]
    (28, ('none', 'max_pool_3x3'))
    >>> alphas = {label: torch.zeros(len(OPS)) for label in LABELS}    # every edge ties
    >>> darts_arch(alphas, gmgraph.space(gm))["normal/5<-0"]           # top-2 of node 5: edges 0 and 1
    'max_pool_3x3'

Deriving follows the DARTS rule as an *architecture*, not as a special pass:
:func:`darts_arch` keeps the top-2 incoming edges of every node and gives the
others ``none``, which the generic ``derive`` drops from the node sums.
GM-NAS searches without ``none`` (``ops=OPS[1:]``); such a supernet cannot run
``none``, so :func:`with_none` adds a visible ``none`` candidate to a copy
before deriving (:func:`discretize` does both).
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from gmgraph.arch import Arch
from gmgraph.choice import Choice, Zero
from gmgraph.config import check_positive_int
from gmgraph.errors import ArchError, SpaceError
from gmgraph.graph import choices, space
from gmgraph.pooling import AvgPool2d
from gmgraph.spaces.nb201 import ReLUConvBN

OPS = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
KINDS = ("normal", "reduce")
NODES = (2, 3, 4, 5)
LABELS = tuple(f"{kind}/{i}<-{j}" for kind in KINDS for i in NODES for j in range(i))


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 stride-2 convs, one shifted by a pixel."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Shift by padding instead of cropping so odd sizes give the same shape as conv_1.
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def dil_conv(c: int, kernel: int, stride: int, dilation: int, affine: bool) -> nn.Sequential:
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, kernel, stride, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=c, bias=False),
        nn.Conv2d(c, c, 1, bias=False),
        nn.BatchNorm2d(c, affine=affine),
    )


def sep_conv(c: int, kernel: int, stride: int, affine: bool) -> nn.Sequential:
    """Two stacked undilated ``dil_conv``s, only the first one strided."""
    return nn.Sequential(*dil_conv(c, kernel, stride, 1, affine), *dil_conv(c, kernel, 1, 1, affine))


def candidate_ops(C: int, stride: int, ops: Sequence[str], affine: bool, pool_bn: bool,
                  fast_pool: bool = False) -> dict[str, nn.Module]:
    """The DARTS candidates named in ``ops`` for one edge of width C (``fast_pool``: ignored, see :func:`supernet`)."""

    def pool(kind: type[nn.Module], **kw) -> nn.Module:
        p = kind(3, stride=stride, padding=1, **kw)
        # DARTS search normalises pool outputs so they mix on the scale of the BN'ed convs.
        return nn.Sequential(p, nn.BatchNorm2d(C, affine=affine)) if pool_bn else p

    build = {
        "none": lambda: Zero(stride),
        "max_pool_3x3": lambda: pool(nn.MaxPool2d),
        "avg_pool_3x3": lambda: pool(AvgPool2d, count_include_pad=False),  # torch's bits, faster on the CPU
        "skip_connect": lambda: nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine),
        "sep_conv_3x3": lambda: sep_conv(C, 3, stride, affine),
        "sep_conv_5x5": lambda: sep_conv(C, 5, stride, affine),
        "dil_conv_3x3": lambda: dil_conv(C, 3, stride, 2, affine),
        "dil_conv_5x5": lambda: dil_conv(C, 5, stride, 2, affine),
    }
    return {name: build[name]() for name in ops}


class Cell(nn.Module):
    """Two preprocessed inputs, four summed nodes, their concatenation as output."""

    def __init__(self, c_pp: int, c_p: int, C: int, reduction: bool, reduction_prev: bool, ops, affine, pool_bn):
        super().__init__()
        kind = "reduce" if reduction else "normal"
        # The cell two back is twice as large when the previous cell reduced.
        self.preprocess0 = FactorizedReduce(c_pp, C, affine) if reduction_prev else ReLUConvBN(c_pp, C, 1, affine=affine)
        self.preprocess1 = ReLUConvBN(c_p, C, 1, affine=affine)
        self.edges = nn.ModuleList(
            Choice(candidate_ops(C, 2 if reduction and j < 2 else 1, ops, affine, pool_bn),
                   f"{kind}/{i}<-{j}")
            for i in NODES for j in range(i)
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = iter(self.edges)  # edges are stored node by node, source by source
        for _ in NODES:
            total = None
            for h in list(states):
                y = next(edge)(h)
                total = y if total is None else total + y  # `+`: derive drops zero terms of sums
            states.append(total)
        return torch.cat(states[2:], dim=1)


class Network(nn.Module):
    """The DARTS search network: stem, ``layers`` cells, global pooling, linear classifier."""

    def __init__(self, C, layers, num_classes, ops, in_channels, affine, pool_bn, stem_multiplier):
        super().__init__()
        c_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        c_pp, c_p, c, reduction_prev = c_stem, c_stem, C, False
        cells = []
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            c = 2 * c if reduction else c
            cells.append(Cell(c_pp, c_p, c, reduction, reduction_prev, ops, affine, pool_bn))
            c_pp, c_p, reduction_prev = c_p, 4 * c, reduction
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))


def supernet(
    C: int = 16,
    layers: int = 8,
    num_classes: int = 10,
    ops: Sequence[str] = OPS,
    in_channels: int = 3,
    *,
    affine: bool = False,
    pool_bn: bool = True,
    stem_multiplier: int = 3,
    fast_pool: bool = False,
) -> nn.Module:
    """The DARTS supernet (untraced; ``gmgraph.trace`` turns it into the graph).

    Args:
        C: channels of the first cells (doubled at each reduction).
        layers: number of cells; reductions at ``layers // 3`` and ``2 * layers // 3``.
        num_classes: outputs of the classifier.
        ops: candidate ops of every edge, a subset of :data:`OPS` in any order;
            ``OPS[1:]`` drops ``none`` as GM-NAS does.
        in_channels: channels of the input images.
        affine: affine BN inside cells (DARTS search uses none; derived networks
            always get identity-initialised affine BN).
        pool_bn: a BN after each pooling op, as the DARTS search code adds (derived
            networks keep it; :func:`network` builds the evaluation net without).
        stem_multiplier: the stem has ``stem_multiplier * C`` channels.
        fast_pool: accepted for older callers, no effect: ``avg_pool_3x3`` is always
            :class:`gmgraph.pooling.AvgPool2d`, torch's pooling bit for bit (see :func:`gmgraph.spaces.nb201.supernet`).

    Raises:
        SpaceError: unknown or repeated ops, or too few layers.
    """
    unknown = [op for op in ops if op not in OPS]
    if unknown or not ops or len(set(ops)) != len(ops):
        raise SpaceError(f"DARTS ops must be distinct names among {', '.join(OPS)}; got {list(ops)}")
    check_positive_int("DARTS's C", C, error=SpaceError)
    check_positive_int("DARTS's layers", layers, error=SpaceError)
    return Network(C, layers, num_classes, tuple(ops), in_channels, affine, pool_bn, stem_multiplier)


def _edge(label: str) -> tuple[str, int, int]:
    match = re.fullmatch(r"(normal|reduce)/([2-5])<-([0-4])", label)
    if not match or int(match.group(3)) >= int(match.group(2)):
        raise SpaceError(f"{label!r} is not a DARTS edge label; labels look like 'normal/2<-0' (see darts.LABELS)")
    return match.group(1), int(match.group(2)), int(match.group(3))


def darts_arch(alphas: Mapping[str, torch.Tensor | Sequence[float]], space: Mapping[str, Sequence[str]]) -> Arch:
    """The DARTS discretisation of architecture logits, as an architecture.

    Per node, the two incoming edges with the largest strength are kept, where
    an edge's strength is its largest softmax weight over ops other than
    ``none`` (as in DARTS; ties go to the lower source). A kept edge gets its
    argmax op other than ``none``; every other edge gets ``none``.

    Args:
        alphas: label -> logits, one per op of ``space[label]`` (softmax is taken here).
        space: the DARTS space, e.g. ``gmgraph.space(gm)`` of a (sub-)supernet.

    Returns:
        label -> op for every label of ``space``. It names ``none`` even when the
        space has no ``none``: derive it from :func:`with_none` of the supernet.

    Raises:
        SpaceError: labels that are not DARTS edges, or alphas of the wrong shape.

    Example:
        >>> space = {f"normal/2<-{j}": ("none", "skip_connect", "sep_conv_3x3") for j in (0, 1)}
        >>> darts_arch({"normal/2<-0": [5.0, 0.0, 1.0], "normal/2<-1": [0.0, 1.0, 0.0]}, space)
        {'normal/2<-0': 'sep_conv_3x3', 'normal/2<-1': 'skip_connect'}
    """
    missing = [label for label in space if label not in alphas]
    if missing:
        raise SpaceError(f"alphas miss label(s) {missing[:3]}; one logit vector per label of the space is needed")
    best: dict[str, tuple[float, str]] = {}
    for label, ops in space.items():
        _edge(label)
        logits = torch.as_tensor(alphas[label], dtype=torch.float64).detach().cpu()
        if logits.shape != (len(ops),):
            raise SpaceError(f"{label!r} has {len(ops)} ops but its alphas have shape {tuple(logits.shape)}")
        weights = logits.softmax(0).tolist()
        scored = [(w, op) for w, op in zip(weights, ops) if op != "none"]
        # max() keeps the first of equal weights: ties go to the op listed first.
        best[label] = max(scored, key=lambda pair: pair[0]) if scored else (float("-inf"), "none")
    arch = {label: "none" for label in space}
    for kind, node in {_edge(label)[:2] for label in space}:
        incoming = [label for label in space if _edge(label)[:2] == (kind, node)]
        incoming.sort(key=lambda label: (-best[label][0], _edge(label)[2]))
        for label in incoming[:2]:
            arch[label] = best[label][1]
    return arch


def with_none(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of a DARTS (sub-)supernet whose every Choice also holds ``none`` (appended last).

    Lets a supernet searched without ``none`` run and derive :func:`darts_arch`
    results; the copy's space differs from ``gm``'s only by that op.
    """
    out = copy.deepcopy(gm)
    for label, group in choices(out).items():
        kind, _, source = _edge(label)
        for choice in group:
            if "none" not in choice.ops:
                choice.ops["none"] = Zero(2 if kind == "reduce" and source < 2 else 1)
    return out


def discretize(gm: fx.GraphModule, alphas: Mapping[str, torch.Tensor], *, inherit: bool = True) -> fx.GraphModule:
    """The plain network DARTS derives from ``gm`` and its architecture logits.

    >>> import torch, gmgraph
    >>> gm = gmgraph.trace(supernet(C=2, layers=3, ops=OPS[1:]))
    >>> net = discretize(gm, {label: torch.randn(7) for label in LABELS})
    >>> net(torch.randn(1, 3, 8, 8)).shape
    torch.Size([1, 10])
    """
    from gmgraph.passes.derive import derive

    arch = darts_arch(alphas, space(gm))
    full = gm if all("none" in ops for ops in space(gm).values()) else with_none(gm)
    return derive(full, arch, inherit=inherit)


def network(arch: Arch | str, C: int = 36, layers: int = 20, num_classes: int = 10, in_channels: int = 3) -> fx.GraphModule:
    """The DARTS evaluation network of ``arch`` (no auxiliary head, no drop path), freshly initialised.

    Affine BN everywhere and no BN after pools, as DARTS trains its final networks.
    Only the ops ``arch`` uses are built.
    """
    from gmgraph.graph import trace
    from gmgraph.passes.derive import derive

    arch = parse(arch) if isinstance(arch, str) else arch
    used = tuple(op for op in OPS if op == "none" or op in arch.values())
    net = supernet(C, layers, num_classes, used, in_channels, affine=True, pool_bn=False)
    return derive(trace(net), arch, inherit=False)


def shared_parameters(gm: nn.Module, label: str) -> list[str]:
    """GM-NAS's shared set on DARTS: every parameter inside the cells, i.e. the
    other decisions' ops and the preprocessing between cells (stem and
    classifier excluded). Gradient matching drops the tested label's own ops.
    """
    return [name for name, _ in gm.named_parameters() if name.startswith("cells.")]


def to_str(arch: Mapping[str, str]) -> str:
    """``normal=|op~0|op~1|+|op~0|op~1|op~2|+...;reduce=...``: every edge, node by node.

    >>> arch = {label: "none" for label in LABELS}
    >>> to_str(arch).split(";")[1][:40]
    'reduce=|none~0|none~1|+|none~0|none~1|no'
    """
    missing = [label for label in LABELS if label not in arch]
    if missing:
        raise ArchError(f"a DARTS architecture names all 28 edges; missing {missing[:3]}")
    cells = []
    for kind in KINDS:
        nodes = ["|" + "|".join(f"{arch[f'{kind}/{i}<-{j}']}~{j}" for j in range(i)) + "|" for i in NODES]
        cells.append(f"{kind}=" + "+".join(nodes))
    return ";".join(cells)


def parse(text: str) -> Arch:
    """Parse :func:`to_str` output, or a DARTS ``Genotype(normal=[('sep_conv_3x3', 0), ...], ...)``.

    A genotype lists two (op, source) pairs per node; every edge it does not
    list is ``none``. The concat fields are ignored (DARTS always uses nodes 2..5).

    Raises:
        ArchError: pointing at the malformed part.
    """
    if not isinstance(text, str):
        raise ArchError(f"a DARTS architecture string is a str, got {type(text).__name__}")
    arch = _parse_genotype(text) if text.lstrip().startswith("Genotype") else _parse_cells(text)
    bad = [op for op in arch.values() if op not in OPS]
    if bad:
        raise ArchError(f"in {text!r}: unknown op(s) {sorted(set(bad))}; DARTS ops are {', '.join(OPS)}")
    return arch


def _parse_cells(text: str) -> Arch:
    arch: Arch = {}
    parts = dict(part.split("=", 1) for part in text.strip().split(";") if "=" in part)
    if sorted(parts) != sorted(KINDS):
        raise ArchError(f"{text!r} must have the form normal=|op~0|op~1|+...;reduce=|op~0|op~1|+...")
    for kind in KINDS:
        nodes = parts[kind].split("+")
        if len(nodes) != len(NODES):
            raise ArchError(f"in {text!r}: the {kind} cell needs {len(NODES)} nodes separated by '+'")
        for i, node in zip(NODES, nodes):
            tokens = node.strip("|").split("|")
            expected = [f"~{j}" for j in range(i)]
            if len(tokens) != i or any(not t.endswith(e) for t, e in zip(tokens, expected)):
                raise ArchError(f"in {text!r}: node {i} of the {kind} cell must read |op~0|...|op~{i - 1}|, got {node!r}")
            arch.update({f"{kind}/{i}<-{j}": t.rsplit("~", 1)[0] for j, t in enumerate(tokens)})
    return arch


def _parse_genotype(text: str) -> Arch:
    arch = {label: "none" for label in LABELS}
    for kind in KINDS:
        match = re.search(rf"\b{kind}\s*=\s*(\[[^\]]*\])", text)
        try:
            pairs = ast.literal_eval(match.group(1)) if match else None
        except (ValueError, SyntaxError):
            pairs = None
        if not isinstance(pairs, list) or len(pairs) != 2 * len(NODES):
            raise ArchError(f"in {text!r}: {kind}=[...] must list {2 * len(NODES)} (op, source) pairs")
        for k, pair in enumerate(pairs):
            node = NODES[k // 2]
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], int) and 0 <= pair[1] < node):
                raise ArchError(f"in {text!r}: {pair!r} is not an (op, source) pair with source < {node}")
            label = f"{kind}/{node}<-{pair[1]}"
            if arch[label] != "none":
                raise ArchError(f"in {text!r}: edge {label} is listed twice")
            arch[label] = pair[0]
    return arch
