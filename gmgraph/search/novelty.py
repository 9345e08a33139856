"""A search's next candidate: a network it has not evaluated yet, meeting the limits.

The fitness of a network on fixed weights and fixed batches never changes, so
evaluating it again tells a search nothing. Evolution and NSGA-II therefore
never spend an evaluation on a repeat: they vary (mutate) until a new network
comes, fall back on uniform draws when variation keeps repeating, and stop when
those find nothing new either::

    >>> import numpy as np
    >>> from gmgraph.search.constraints import Screen
    >>> space = {"a": ("x", "y", "z")}
    >>> novel(lambda: {"a": "x"}, 5, space, {"a=x"}, Screen(), np.random.default_rng(0))["a"] in ("y", "z")
    True
    >>> novel(lambda: {"a": "x"}, 5, space, {"a=x", "a=y", "a=z"}, Screen(), np.random.default_rng(0)) is None
    True
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from gmgraph.arch import Arch, key
from gmgraph.search.canonical import Canonical
from gmgraph.search.constraints import Screen
from gmgraph.search.random import count_archs, random_arch

NOVELTY_TRIES = 50
"""Varied candidates drawn in a row before one that repeats an evaluated network is replaced by a uniform draw."""

UNIFORM_TRIES = 1000
"""Uniform draws (at least; ``constraints.max_draws`` if larger) for a new network before the search ends."""


def novel(make: Callable[[], Arch], tries: int, space: Mapping[str, Sequence[str]], seen: Collection[str],
          screen: Screen, rng: np.random.Generator, canonical: Canonical | None = None) -> Arch | None:
    """The first of ``tries`` calls of ``make()`` that is new and allowed, else a new allowed uniform draw, else None.

    Args:
        make: draws a varied candidate (a mutant of a parent, say).
        tries: calls of ``make`` before uniform draws take over.
        space: label -> op names, for the uniform draws.
        seen: keys (:func:`gmgraph.arch.key`) of what was evaluated, canonical forms given ``canonical``.
        screen: the search's constraints; it counts what it rejects.
        rng: draws the uniform candidates.
        canonical: maps a candidate to the architecture standing for its network
            (:mod:`gmgraph.search.canonical`); what comes back is that one.

    Returns:
        A candidate neither in ``seen`` nor breaking a limit, or None when none was found (the space holds
        no other allowed network, or it is too rare to draw).
    """
    same = canonical or dict
    for _ in range(tries):
        arch = same(make())
        if key(arch) not in seen and screen.allows(arch):
            return arch
    size = count_archs(space)
    for _ in range(max(screen.max_draws, UNIFORM_TRIES)):
        if len(seen) + screen.refused >= size:
            return None  # every architecture is evaluated or known to break a limit
        arch = same(random_arch(space, rng))
        if key(arch) not in seen and not screen.known_to_break(arch) and screen.allows(arch):
            return arch
    return None
