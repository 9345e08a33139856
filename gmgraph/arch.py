"""Architectures: plain ``dict[str, str]`` mapping a decision label to an op name.

Validation against a space, enumeration, a stable key, and the NAS-Bench-201
string codec::

    >>> space = {"a": ("x", "y"), "b": ("z",)}
    >>> validate({"a": "y", "b": "z"}, space)
    >>> [key(arch) for arch in enumerate_archs(space)]
    ['a=x;b=z', 'a=y;b=z']
    >>> parse_nb201("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|")["2<-1"]
    'nor_conv_3x3'
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator, Mapping

from gmgraph.errors import ArchError

Arch = dict[str, str]
Space = dict[str, tuple[str, ...]]

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_LABELS = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")


def validate(arch: Mapping[str, str], space: Mapping[str, tuple[str, ...]]) -> None:
    """Raise ArchError unless ``arch`` names every label of ``space`` with an allowed op."""
    if not isinstance(arch, Mapping):
        raise ArchError(f"an architecture is a mapping label -> op name, got {type(arch).__name__}")
    missing = [label for label in space if label not in arch]
    unknown = [label for label in arch if label not in space]
    problems = []
    if missing:
        problems.append(f"missing label(s) {missing}")
    if unknown:
        problems.append(f"unknown label(s) {unknown}")
    for label, op in arch.items():
        if label in space and op not in space[label]:
            problems.append(f"op {op!r} is not allowed for {label!r} (allowed: {', '.join(space[label])})")
    if problems:
        raise ArchError(f"invalid architecture: {'; '.join(problems)}. Space labels: {list(space)}")


def enumerate_archs(space: Mapping[str, tuple[str, ...]]) -> Iterator[Arch]:
    """Every architecture of ``space``, the last label varying fastest."""
    labels = list(space)
    for ops in itertools.product(*(space[label] for label in labels)):
        yield dict(zip(labels, ops))


def key(arch: Mapping[str, str]) -> str:
    """A stable, human-readable key: ``label=op`` pairs sorted by label.

    Equal architectures have equal keys whatever their dict order.
    """
    return ";".join(f"{label}={arch[label]}" for label in sorted(arch))


def format_pairs(arch: Mapping[str, str]) -> str:
    """The generic text of an arch, for spaces without a codec of their own: ``label=op;...`` in arch order.

    >>> format_pairs({"b": "x", "a": "y"})
    'b=x;a=y'
    """
    return ";".join(f"{label}={op}" for label, op in arch.items())


def parse_pairs(text: str) -> Arch:
    """Read :func:`format_pairs` (or :func:`key`) text back.

    >>> parse_pairs("b=x;a=y")
    {'b': 'x', 'a': 'y'}

    Raises:
        ArchError: a part is not ``label=op``.
    """
    arch: Arch = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        label, sep, op = part.partition("=")
        if not sep or not label or not op:
            raise ArchError(f"architecture text {text!r}: expected label=op pairs separated by ';', got {part!r}")
        arch[label] = op
    return arch


def arch_hash(arch: Mapping[str, str]) -> str:
    """A short stable hash of :func:`key` (12 hex digits), e.g. for file names."""
    return hashlib.sha1(key(arch).encode()).hexdigest()[:12]


_NB201_TOKEN = re.compile(r"^([A-Za-z0-9_]+)~(\d+)$")


def parse_nb201(text: str) -> Arch:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` into ``{"1<-0": op, ...}``.

    Raises:
        ArchError: pointing at the malformed part.
    """
    if not isinstance(text, str):
        raise ArchError(f"a NAS-Bench-201 string is a str, got {type(text).__name__}")
    nodes = text.strip().split("+")
    if len(nodes) != 3:
        raise ArchError(
            f"NAS-Bench-201 string {text!r} has {len(nodes)} node part(s) separated by '+'; "
            "expected 3, like |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    arch: Arch = {}
    for node, part in enumerate(nodes, start=1):
        arch.update(_parse_node(text, node, part))
    return arch


def _parse_node(text: str, node: int, part: str) -> Arch:
    if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
        raise ArchError(f"in {text!r}: node {node} part {part!r} must start and end with '|'")
    tokens = part[1:-1].split("|")
    if len(tokens) != node:
        raise ArchError(f"in {text!r}: node {node} part {part!r} needs {node} edge(s), has {len(tokens)}")
    edges = {}
    for source, token in enumerate(tokens):
        match = _NB201_TOKEN.match(token)
        if not match:
            raise ArchError(f"in {text!r}: edge {token!r} of node {node} is not of the form op~index")
        op, index = match.group(1), int(match.group(2))
        if index != source:
            raise ArchError(f"in {text!r}: edge {token!r} of node {node} must come from node {source}, not {index}")
        if op not in NB201_OPS:
            raise ArchError(f"in {text!r}: unknown op {op!r}; NAS-Bench-201 ops are {', '.join(NB201_OPS)}")
        edges[f"{node}<-{source}"] = op
    return edges


def format_nb201(arch: Mapping[str, str]) -> str:
    """Format an NB201 architecture as ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    validate(arch, {label: NB201_OPS for label in NB201_LABELS})
    parts = []
    for node in (1, 2, 3):
        parts.append("|" + "|".join(f"{arch[f'{node}<-{j}']}~{j}" for j in range(node)) + "|")
    return "+".join(parts)
