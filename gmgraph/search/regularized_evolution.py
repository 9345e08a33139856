"""Regularised (aging) evolution, Real et al., AAAI 2019.

Keep a population; each cycle the fittest of a random sample becomes the
parent, its one-decision mutant joins the population and the *oldest* member
leaves, however fit. Aging is the regulariser: a lucky evaluation cannot stay
forever, only architectures that keep being rediscovered do::

    >>> space = {f"e{i}": ("a", "b", "c") for i in range(4)}
    >>> target = {"e0": "c", "e1": "a", "e2": "b", "e3": "c"}
    >>> r = evolution(space, lambda arch: sum(arch[k] == v for k, v in target.items()),
    ...               population=10, sample_size=3, cycles=60)
    >>> r.best == target, r.evaluations <= 10 + 60
    (True, True)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from gmgraph.arch import Arch, key
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.search.constraints import Constraints, Screen
from gmgraph.search.random import check_int, check_space, random_arch
from gmgraph.search.result import Fitness, OnStep, SearchResult, score


def evolution(
    space: Mapping[str, Sequence[str]],
    fitness: Fitness,
    *,
    population: int = 20,
    sample_size: int = 5,
    cycles: int = 100,
    seed: int = 0,
    progress: OnStep | None = None,
    constraints: Constraints | None = None,
) -> SearchResult:
    """Search ``space`` by regularised evolution.

    Args:
        space: label -> candidate op names, as returned by ``gmgraph.space(gm)``.
        fitness: scores an architecture, higher is better. Results are cached by
            :func:`gmgraph.arch.key`, so an architecture met again costs nothing.
        population: members kept alive; the initial ones are drawn uniformly
            (with replacement, as in the paper).
        sample_size: members drawn (without replacement) to pick each parent;
            larger means greedier.
        cycles: children made; none when no label has two or more ops.
        seed: seeds every draw (numpy ``default_rng``); same seed, same run.
        progress: called as ``progress(step, arch, fitness)`` for each member added.
        constraints: limits every member meets. A candidate (initial draw or
            child) that breaks one is rejected before it is scored, counted in
            ``rejected``, and replaced: a child by the mutant of a new
            tournament's winner, or, after ``constraints.max_draws`` rejected
            mutants in a row, by a uniformly drawn architecture.

    Returns:
        A :class:`SearchResult`: ``best`` over everything seen (not only the
        final population); ``history`` holds the initial members then every
        child (``population + cycles`` entries); ``evaluations`` counts distinct
        fitness calls; ``population`` is the final one, oldest first.

    Raises:
        ConfigError: unless ``population >= 1``, ``1 <= sample_size <= population``,
            ``cycles >= 0`` and ``seed >= 0``; or ``constraints.max_draws``
            uniform draws in a row broke the constraints (probably impossible ones).
        SpaceError: ``space`` is not a mapping of labels to non-empty op names.
    """
    check_space(space)
    _check_args(population, sample_size, cycles, seed)
    rng = np.random.default_rng(seed)
    cache: dict[str, float] = {}
    history: list[tuple[Arch, float]] = []
    members: deque[tuple[Arch, float]] = deque()

    def add(arch: Arch) -> None:
        k = key(arch)
        if k not in cache:
            cache[k] = score(fitness, arch)
        members.append((arch, cache[k]))
        history.append((arch, cache[k]))
        if progress is not None:
            progress(len(history), dict(arch), cache[k])

    screen = Screen(constraints)

    def uniform() -> Arch:
        return random_arch(space, rng)

    def child() -> Arch:
        return mutate(_tournament(members, sample_size, rng), space, rng)

    for _ in range(population):
        add(screen.draw(uniform))
    if any(len(ops) >= 2 for ops in space.values()):
        for _ in range(cycles):
            add(screen.first(child, screen.max_draws) or screen.draw(uniform))
            members.popleft()  # the oldest, not the worst: that is the "regularised"
    return SearchResult.from_history(history, evaluations=len(cache), population=members,
                                     rejected=screen.rejected)


def mutate(arch: Mapping[str, str], space: Mapping[str, Sequence[str]], rng: np.random.Generator) -> Arch:
    """A copy of ``arch`` with one decision switched to a different op, both drawn uniformly.

    Only labels with at least two ops can change.

    Raises:
        SpaceError: no label of ``space`` has two or more ops.

    Example:
        >>> mutate({"a": "x", "b": "u"}, {"a": ("x", "y"), "b": ("u",)}, np.random.default_rng(0))
        {'a': 'y', 'b': 'u'}
    """
    labels = [label for label, ops in space.items() if len(ops) >= 2]
    if not labels:
        raise SpaceError("cannot mutate: every label of the space has a single op")
    label = labels[int(rng.integers(len(labels)))]
    others = [op for op in space[label] if op != arch[label]]
    child = dict(arch)
    child[label] = others[int(rng.integers(len(others)))]
    return child


def _tournament(members: Sequence[tuple[Arch, float]], sample_size: int, rng: np.random.Generator) -> Arch:
    """The fittest of ``sample_size`` distinct members (the first drawn on ties)."""
    picks = rng.choice(len(members), size=sample_size, replace=False)
    best = max((members[int(i)] for i in picks), key=lambda member: member[1])
    return best[0]


def _check_args(population: object, sample_size: object, cycles: object, seed: object) -> None:
    check_int("population", population, minimum=1)
    check_int("sample_size", sample_size, minimum=1)
    check_int("cycles", cycles, minimum=0)
    check_int("seed", seed, minimum=0)
    if sample_size > population:
        raise ConfigError(
            f"sample_size ({sample_size}) cannot exceed population ({population}): "
            "the parent is picked from sample_size distinct members"
        )
