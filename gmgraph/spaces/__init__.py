"""Ready search spaces, and the registry the CLI builds them from.

>>> from gmgraph.spaces import get
>>> spec = get("nb201")
>>> net = spec.build(width=4, cells=1, num_classes=10, in_channels=1)
>>> spec.to_str({label: "none" for label in nb201.LABELS})
'|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from gmgraph.errors import ConfigError
from gmgraph.spaces import nb201


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


REGISTRY: dict[str, SpaceSpec] = {
    "nb201": SpaceSpec("nb201", _nb201, nb201.shared_parameters, nb201.to_str, nb201.parse),
}


def get(name: str) -> SpaceSpec:
    """The registered space ``name``.

    Raises:
        ConfigError: naming the registered spaces.
    """
    if name not in REGISTRY:
        raise ConfigError(f"unknown space {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = ["REGISTRY", "SpaceSpec", "get", "nb201"]
