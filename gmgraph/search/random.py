"""Random search: evaluate ``n`` distinct uniformly drawn architectures, keep the best.

The baseline every NAS search must beat (Li & Talwalkar, 2019)::

    >>> space = {"a": ("x", "y", "z"), "b": ("u", "v")}
    >>> r = random_search(space, lambda arch: float(arch["a"] == "z"), n=6)
    >>> r.best["a"], r.evaluations
    ('z', 6)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from gmgraph.arch import Arch, enumerate_archs, key
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.search.canonical import Canonical, distinct_networks
from gmgraph.search.constraints import Constraints, Screen
from gmgraph.search.result import Fitness, OnStep, SearchResult, score


def random_search(
    space: Mapping[str, Sequence[str]],
    fitness: Fitness,
    n: int,
    *,
    seed: int = 0,
    progress: OnStep | None = None,
    constraints: Constraints | None = None,
    canonical: Canonical | None = None,
) -> SearchResult:
    """Evaluate ``n`` distinct architectures drawn uniformly from ``space``.

    Args:
        space: label -> candidate op names, as returned by ``gmgraph.space(gm)``.
        fitness: scores an architecture, higher is better (e.g. a closure over
            :func:`gmgraph.search.evaluation`).
        n: architectures to evaluate; when ``n`` reaches the size of the space
            every architecture is evaluated once, in enumeration order.
        seed: seeds the draw (numpy ``default_rng``); same seed, same archs.
        progress: called as ``progress(step, arch, fitness)`` after each evaluation.
        constraints: limits every evaluated architecture meets. A candidate
            that breaks one is rejected before it is scored (counted in
            ``rejected``) and another distinct one is drawn; after
            ``constraints.max_draws`` rejections in a row the search stops
            with what it has (fewer than ``n`` evaluations).
        canonical: maps an architecture to the one standing for its derived
            network (:func:`~gmgraph.search.canonical.canonical_form`): each
            network is evaluated once, as its canonical architecture, and ``n``
            counts networks. ``None``: every architecture is a network of its own.

    Returns:
        A :class:`SearchResult`; ``history`` is in evaluation order.

    Raises:
        ConfigError: ``n < 1`` or ``seed`` is not an integer >= 0, or no
            architecture met the constraints (probably impossible ones).
        SpaceError: ``space`` is not a mapping or has a label without ops.

    Example:
        >>> r = random_search({"a": ("x", "y")}, lambda arch: len(arch["a"]), n=5)
        >>> [a["a"] for a, _ in r.history]  # the space has only 2 archs
        ['x', 'y']
        >>> from gmgraph.search.constraints import Constraint, Constraints
        >>> short = Constraints([Constraint("length", lambda arch: len(arch["a"]), maximum=2)])
        >>> r = random_search({"a": ("abc", "ab", "a")}, lambda arch: len(arch["a"]), n=3, constraints=short)
        >>> r.best, r.evaluations, r.rejected
        ({'a': 'ab'}, 2, 1)
    """
    check_space(space)
    check_int("n", n, minimum=1)
    check_int("seed", seed, minimum=0)
    screen = Screen(constraints)
    history: list[tuple[Arch, float]] = []
    candidates = screen.feasible(distinct_networks(distinct_archs(space, n, np.random.default_rng(seed)), canonical))
    for step, arch in enumerate(itertools.islice(candidates, n), start=1):
        value = score(fitness, arch)
        history.append((arch, value))
        if progress is not None:
            progress(step, dict(arch), value)
    return SearchResult.from_history(history, rejected=screen.rejected)


def sample_distinct(space: Mapping[str, Sequence[str]], n: int, rng: np.random.Generator) -> list[Arch]:
    """``min(n, size)`` distinct architectures, uniformly without replacement."""
    return list(itertools.islice(distinct_archs(space, n, rng), n))


def distinct_archs(space: Mapping[str, Sequence[str]], n: int, rng: np.random.Generator) -> Iterator[Arch]:
    """Distinct architectures in uniformly random order, until the space is exhausted.

    ``n`` is how many the caller expects to take: it picks the method (all of
    them in enumeration order when ``n`` covers the space, a permutation when
    ``n`` is over half of it, redrawing repeats otherwise), so the first ``n``
    are those :func:`sample_distinct` returns. Taking more than ``n`` (a
    constrained search replacing rejected ones) is fine.

    Example:
        >>> archs = distinct_archs({"a": ("x", "y", "z")}, 2, np.random.default_rng(0))
        >>> sorted(arch["a"] for arch in archs)
        ['x', 'y', 'z']
    """
    size = count_archs(space)
    if n >= size:
        yield from enumerate_archs(space)
        return
    if 2 * n > size:  # dense: a permutation of the indices never stalls
        for index in rng.permutation(size):
            yield _decode(space, int(index))
        return
    # sparse (the usual case; spaces may exceed int64): redraw the rare repeats
    seen: set[str] = set()
    while len(seen) < size:
        arch = random_arch(space, rng)
        if key(arch) not in seen:
            seen.add(key(arch))
            yield arch


def random_arch(space: Mapping[str, Sequence[str]], rng: np.random.Generator) -> Arch:
    """One architecture, each label's op drawn uniformly."""
    return {label: ops[int(rng.integers(len(ops)))] for label, ops in space.items()}


def count_archs(space: Mapping[str, Sequence[str]]) -> int:
    """Number of architectures in ``space`` (a Python int: no overflow)."""
    return math.prod(len(ops) for ops in space.values())


def check_space(space: object) -> None:
    """Raise SpaceError unless ``space`` maps labels to non-empty sequences of op names."""
    if not isinstance(space, Mapping):
        raise SpaceError(
            f"a space is a mapping label -> op names (gmgraph.space(gm)), got {type(space).__name__}"
        )
    for label, ops in space.items():
        if isinstance(ops, str) or not isinstance(ops, Sequence) or len(ops) == 0:
            raise SpaceError(f"space label {label!r} needs a non-empty tuple of op names, got {ops!r}")


def _decode(space: Mapping[str, Sequence[str]], index: int) -> Arch:
    # mixed radix, last label fastest: the same order as enumerate_archs
    arch = {}
    for label in reversed(list(space)):
        index, digit = divmod(index, len(space[label]))
        arch[label] = space[label][digit]
    return {label: arch[label] for label in space}


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
