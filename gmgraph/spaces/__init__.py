"""Ready search spaces, and the registry the CLI builds them from.

>>> from gmgraph.spaces import get
>>> spec = get("nb201")
>>> net = spec.build(width=4, cells=1, num_classes=10, in_channels=1)
>>> spec.to_str({label: "none" for label in nb201.LABELS})
'|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
>>> sorted(REGISTRY)
['darts', 'mobilenet', 'nb201']

Your own model becomes a space through :func:`supernetify` and rules such as
:func:`conv_kernels`; :func:`original_arch` names the architecture that is the
original model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from gmgraph.errors import ConfigError
from gmgraph.spaces import darts, mobilenet, nb201
from gmgraph.spaces.from_model import conv_kernels, inverted_residual_expansions, original_arch, supernetify


@dataclass(frozen=True)
class SpaceSpec:
    """How the CLI builds a named space and talks about its architectures.

    Attributes:
        build: ``build(width, cells, num_classes, in_channels) -> nn.Module`` (untraced supernet).
        shared: the gradient-matching shared-parameter preset ``(gm, label) -> names`` (None: automatic).
        to_str / parse: the space's own architecture string codec (None: ``label=op;...``).
    """

    name: str
    build: Callable[..., nn.Module]
    shared: Callable | None = None
    to_str: Callable | None = None
    parse: Callable | None = None


def _nb201(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    return nb201.supernet(C=width, N=cells, num_classes=num_classes, in_channels=in_channels)


def _darts(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    # `cells` is normal cells per stage, as NB201's N: cells=2 gives DARTS's 8-layer search net.
    return darts.supernet(C=width, layers=3 * cells + 2, num_classes=num_classes, in_channels=in_channels)


def _mobilenet(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    # `width` is the first MBConv's channels (16 at width_mult 1.0); the 21 blocks are fixed, so `cells` is unused.
    return mobilenet.supernet(num_classes=num_classes, width_mult=width / 16, in_channels=in_channels)


REGISTRY: dict[str, SpaceSpec] = {
    "nb201": SpaceSpec("nb201", _nb201, nb201.shared_parameters, nb201.to_str, nb201.parse),
    "darts": SpaceSpec("darts", _darts, darts.shared_parameters, darts.to_str, darts.parse),
    "mobilenet": SpaceSpec("mobilenet", _mobilenet, mobilenet.shared_parameters, mobilenet.to_str, mobilenet.parse),
}


def get(name: str) -> SpaceSpec:
    """The registered space ``name``.

    Raises:
        ConfigError: naming the registered spaces.
    """
    if name not in REGISTRY:
        raise ConfigError(f"unknown space {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = [
    "REGISTRY",
    "SpaceSpec",
    "conv_kernels",
    "darts",
    "get",
    "inverted_residual_expansions",
    "mobilenet",
    "nb201",
    "original_arch",
    "supernetify",
]
