"""``make_sampler``: a sampler built by name from the sampler table (:data:`gmgraph.registry.SAMPLERS`).

Kept apart from :mod:`gmgraph.samplers` because looking a name up may import any
sampler's module (``proxyless``, ``snas``), and those import the base classes
from :mod:`gmgraph.samplers`: the factory sits above everything it builds::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> sampler = make_sampler("uniform", gmgraph.trace(nb201.supernet(C=4, N=1)), seed=0)
    >>> type(sampler).__name__
    'UniformSampler'
"""

from __future__ import annotations

from torch import fx

from gmgraph.errors import ConfigError
from gmgraph.samplers import SAMPLERS, Sampler


def make_sampler(name: str, gm: fx.GraphModule, *, seed: int = 0, **options) -> Sampler:
    """Build sampler ``name`` (a key of :data:`~gmgraph.samplers.SAMPLERS`) bound to ``gm``.

    Raises:
        ConfigError: for an unknown name or option.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    try:
        return SAMPLERS[name](gm, seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for sampler {name!r}: {exc}") from exc
