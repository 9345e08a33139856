"""Regularised (aging) evolution, Real et al., AAAI 2019.

Keep a population; each cycle the fittest of a random sample becomes the
parent, its one-decision mutant joins the population and the *oldest* member
leaves, however fit. Aging is the regulariser: a lucky evaluation cannot stay
forever, only lines whose children keep doing well do. Each child is a network
not evaluated before, so the budget counts distinct networks::

    >>> space = {f"e{i}": ("a", "b", "c") for i in range(4)}
    >>> target = {"e0": "c", "e1": "a", "e2": "b", "e3": "c"}
    >>> r = evolution(space, lambda arch: sum(arch[k] == v for k, v in target.items()),
    ...               population=10, sample_size=3, cycles=60)
    >>> r.best == target, r.evaluations, len({str(arch) for arch, _ in r.history})
    (True, 70, 70)
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from gmgraph.arch import Arch, key
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.search.canonical import Canonical, distinct_networks
from gmgraph.search.constraints import Constraints, Screen
from gmgraph.search.novelty import NOVELTY_TRIES, novel
from gmgraph.search.random import check_int, check_space, distinct_archs
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
    canonical: Canonical | None = None,
) -> SearchResult:
    """Search ``space`` by regularised evolution, evaluating ``population + cycles`` distinct networks.

    Every evaluation is of a network not evaluated before: the paper lets a
    child repeat an earlier architecture, but on a supernet's fixed weights a
    repeat scores the same again, so here it would only use up the budget.

    Args:
        space: label -> candidate op names, as returned by ``gmgraph.space(gm)``.
        fitness: scores an architecture, higher is better; called once per network.
        population: members kept alive; the initial ones are distinct uniform draws.
        sample_size: members drawn (without replacement) to pick each parent;
            larger means greedier.
        cycles: children made, each a new network: a mutant of a tournament's
            winner (a new tournament when it repeats an evaluated network or
            breaks a limit), or after that many tries a uniform draw; none when
            no label has two or more ops.
        seed: seeds every draw (numpy ``default_rng``); same seed, same run.
        progress: called as ``progress(step, arch, fitness)`` for each member added.
        constraints: limits every member meets; a candidate that breaks one is
            rejected before it is scored (counted in ``rejected``) and replaced,
            as a repeat is. The tries per child are ``constraints.max_draws``
            (at least :data:`~gmgraph.search.novelty.NOVELTY_TRIES`).
        canonical: maps an architecture to the one standing for its derived
            network (:func:`~gmgraph.search.canonical.canonical_form`): members
            are canonical architectures, one per network.

    Returns:
        A :class:`SearchResult`: ``best`` over everything evaluated (not only the
        final population); ``history`` holds the initial members then every
        child, all distinct; ``evaluations`` is ``len(history)``: ``population + cycles``
        unless the space ran out of new allowed networks first (the search then
        ends early); ``population`` is the final one, oldest first.

    Raises:
        ConfigError: unless ``population >= 1``, ``1 <= sample_size <= population``,
            ``cycles >= 0`` and ``seed >= 0``; or no architecture met the
            constraints (probably impossible ones).
        SpaceError: ``space`` is not a mapping of labels to non-empty op names.
    """
    check_space(space)
    _check_args(population, sample_size, cycles, seed)
    rng = np.random.default_rng(seed)
    screen = Screen(constraints)
    seen: set[str] = set()
    history: list[tuple[Arch, float]] = []
    members: deque[tuple[Arch, float]] = deque()

    def add(arch: Arch) -> None:
        value = score(fitness, arch)
        seen.add(key(arch))
        members.append((arch, value))
        history.append((arch, value))
        if progress is not None:
            progress(len(history), dict(arch), value)

    first = screen.feasible(distinct_networks(distinct_archs(space, population, rng), canonical))
    for arch in itertools.islice(first, population):
        add(arch)

    def child() -> Arch:
        return mutate(_tournament(members, min(sample_size, len(members)), rng), space, rng)

    tries = max(screen.max_draws, NOVELTY_TRIES)
    for _ in range(cycles if any(len(ops) >= 2 for ops in space.values()) else 0):
        arch = novel(child, tries, space, seen, screen, rng, canonical)
        if arch is None:
            break  # no new allowed network left to find
        add(arch)
        members.popleft()  # the oldest, not the worst: that is the "regularised"
    return SearchResult.from_history(history, population=members, rejected=screen.rejected)


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
