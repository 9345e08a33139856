"""Multi-objective search: NSGA-II (Deb et al., 2002) over a space, returning the whole Pareto front.

Each objective is a function of an architecture with a sense (``"max"`` or
``"min"``). The population is ranked by non-dominated sorting and, within a
front, by crowding distance; parents win binary tournaments on (rank, crowding),
children are one parent (or, with probability ``crossover``, a uniform
crossover of two) mutated in one decision, and parents and children compete for
the next population. Only new architectures are evaluated, so ``budget``
counts distinct queries, as :func:`~gmgraph.search.evolution` does::

    >>> space = {f"e{i}": ("a", "b", "c") for i in range(4)}
    >>> count = lambda op: (lambda arch: float(sum(v == op for v in arch.values())))
    >>> objectives = [Objective("a", count("a"), "max"), Objective("b", count("b"), "max")]
    >>> r = nsga2(space, objectives, budget=60, population=10, seed=0)
    >>> sorted(set(values for _, values in r.front)), len(r.front)  # the 2**4 archs of a and b only
    ([(0.0, 4.0), (1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (4.0, 0.0)], 16)
    >>> r.evaluations <= 60, r.best_fitness
    (True, 4.0)

The front is the non-dominated set of *every* architecture evaluated (the
archive), not only of the final population, so nothing found is ever lost.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from gmgraph.arch import Arch, key
from gmgraph.errors import ConfigError, GmGraphError
from gmgraph.search.canonical import Canonical, distinct_networks
from gmgraph.search.constraints import Constraints, Screen
from gmgraph.search.novelty import NOVELTY_TRIES, novel
from gmgraph.search.pareto import (
    SENSES,
    crowding_distance,
    non_dominated,
    non_dominated_sort,
    to_minimisation,
)
from gmgraph.search.random import check_int, check_space, count_archs, distinct_archs
from gmgraph.search.regularized_evolution import mutate
from gmgraph.search.result import SearchResult

Values = tuple[float, ...]
"""One value per objective, in the order of the objectives."""

OnValues = Callable[[int, Arch, Values], None]
"""``progress(step, arch, values)`` after each new evaluation; ``step`` counts from 1."""


@dataclass(frozen=True)
class Objective:
    """One objective: ``measure(arch)``, maximised or minimised.

    Raises:
        ConfigError: ``sense`` is not ``"max"``/``"min"`` or ``name`` is empty.

    Example:
        >>> Objective("flops", lambda arch: 1.0, "smaller")
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: objective flops: sense must be 'max' or 'min', got 'smaller'
    """

    name: str
    measure: Callable[[Arch], float]
    sense: str = "max"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"an objective needs a name (e.g. 'accuracy'), got {self.name!r}")
        if self.sense not in SENSES:
            raise ConfigError(f"objective {self.name}: sense must be 'max' or 'min', got {self.sense!r}")


@dataclass
class ParetoResult(SearchResult):
    """The outcome of :func:`nsga2`: a :class:`SearchResult` that also holds the front.

    Attributes:
        best: the front member best in the first objective (ties: in the next ones).
        best_fitness: its value of the first objective.
        history: every ``(arch, values)`` evaluated, in order (all distinct).
        evaluations: distinct architectures evaluated (``len(history)``).
        population: the final population, ``(arch, values)``.
        rejected: candidates turned down by the constraints.
        objectives: the objectives' names, in order.
        senses: ``"max"`` or ``"min"`` for each.
        front: the non-dominated ``(arch, values)`` of ``history``, best first
            objective first (``front[0]`` is ``best``).
    """

    history: list[tuple[Arch, Values]]
    population: list[tuple[Arch, Values]] | None = None
    objectives: tuple[str, ...] = ()
    senses: tuple[str, ...] = ()
    front: list[tuple[Arch, Values]] = field(default_factory=list)

    def as_dict(self) -> dict:
        """A JSON-able dict: the objectives, the front, the history and the counts.

        Example:
            >>> r = nsga2({"a": ("x", "yy")}, [Objective("len", lambda arch: len(arch["a"]), "min")], budget=2)
            >>> r.as_dict()["front"], r.as_dict()["objectives"], r.as_dict()["evaluations"]
            ([{'arch': {'a': 'x'}, 'values': {'len': 1.0}}], [{'name': 'len', 'sense': 'min'}], 2)
        """

        def points(items):
            return [{"arch": dict(a), "values": dict(zip(self.objectives, v))} for a, v in items]

        return {
            "best": dict(self.best),
            "best_fitness": self.best_fitness,
            "evaluations": self.evaluations,
            "rejected": self.rejected,
            "objectives": [{"name": n, "sense": s} for n, s in zip(self.objectives, self.senses)],
            "front": points(self.front),
            "history": points(self.history),
            "population": None if self.population is None else points(self.population),
        }


def nsga2(
    space: Mapping[str, Sequence[str]],
    objectives: Sequence[Objective],
    *,
    budget: int = 1000,
    population: int = 50,
    crossover: float = 0.0,
    seed: int = 0,
    constraints: Constraints | None = None,
    progress: OnValues | None = None,
    canonical: Canonical | None = None,
) -> ParetoResult:
    """Search ``space`` for the Pareto front of ``objectives`` with NSGA-II.

    Args:
        space: label -> candidate op names, as returned by ``gmgraph.space(gm)``.
        objectives: what to optimise (one or more); each is measured once per architecture.
        budget: most distinct architectures evaluated. The search stops earlier
            when the space is exhausted, or when no new allowed architecture
            can be found (a tiny feasible region already explored).
        population: members kept from one generation to the next; the first
            ones are distinct uniform draws, and a generation makes as many children.
        crossover: probability that a child mixes two parents (uniform
            crossover: each label from either) before its one-decision mutation.
            Off by default: on NAS-Bench-201 (accuracy vs FLOPs, tuning seeds
            100-109) mutation alone reached a larger hypervolume than 0.2 or 0.5.
        seed: seeds every draw (numpy ``default_rng``); same seed, same run.
        constraints: limits every evaluated architecture meets; rejected
            candidates are counted and replaced without costing budget.
        progress: called as ``progress(step, arch, values)`` for each new evaluation.
        canonical: maps an architecture to the one standing for its derived
            network (:func:`~gmgraph.search.canonical.canonical_form`): each
            network is evaluated once, so the front never offers one network
            twice, and ``budget`` counts networks.

    Returns:
        A :class:`ParetoResult`.

    Raises:
        ConfigError: bad ``budget``, ``population``, ``crossover``, ``seed`` or
            objectives (none, or two with one name); constraints nothing meets.
        SpaceError: ``space`` is not a mapping of labels to non-empty op names.

    Example:
        >>> space = {"a": ("x", "y", "z"), "b": ("u", "v")}
        >>> acc = lambda arch: {"x": 1.0, "y": 2.0, "z": 3.0}[arch["a"]] + (arch["b"] == "v")
        >>> cost = lambda arch: {"x": 1.0, "y": 1.0, "z": 5.0}[arch["a"]]
        >>> r = nsga2(space, [Objective("acc", acc, "max"), Objective("cost", cost, "min")], budget=6)
        >>> [(arch["a"] + arch["b"], values) for arch, values in r.front]
        [('zv', (4.0, 5.0)), ('yv', (3.0, 1.0))]
    """
    check_space(space)
    _check_args(objectives, budget, population, crossover, seed)
    rng = np.random.default_rng(seed)
    screen = Screen(constraints)
    senses = tuple(o.sense for o in objectives)
    seen: dict[str, Values] = {}
    history: list[tuple[Arch, Values]] = []

    def evaluate(arch: Arch) -> tuple[Arch, Values]:
        values = tuple(_measure(o, arch) for o in objectives)
        seen[key(arch)] = values
        history.append((dict(arch), values))
        if progress is not None:
            progress(len(history), dict(arch), values)
        return dict(arch), values

    first = screen.feasible(distinct_networks(distinct_archs(space, population, rng), canonical))
    members = [evaluate(arch) for arch in itertools.islice(first, min(population, budget))]
    size = count_archs(space)

    def more() -> bool:  # budget left, and architectures neither evaluated nor known to break a limit
        return len(seen) < min(budget, size - screen.refused)

    can_vary = any(len(ops) >= 2 for ops in space.values())
    while can_vary and more():
        parents = _Parents(members, senses, rng)
        children = []
        while len(children) < population and more():
            arch = novel(partial(_child, parents, space, crossover, rng), NOVELTY_TRIES, space, seen, screen,
                         rng, canonical)
            if arch is None:
                break
            children.append(evaluate(arch))
        if not children:
            break  # no allowed architecture left to find
        members = survivors(members + children, population, senses)
    return _result(history, members, objectives, screen.rejected)


def survivors(
    pool: Sequence[tuple[Arch, Values]], size: int, senses: Sequence[str]
) -> list[tuple[Arch, Values]]:
    """NSGA-II selection: whole fronts in rank order, the last one cut by crowding distance (largest first).

    Example:
        >>> pool = [({"i": "0"}, (1.0, 4.0)), ({"i": "1"}, (2.0, 2.0)), ({"i": "2"}, (3.0, 3.0)),
        ...         ({"i": "3"}, (4.0, 1.0))]
        >>> [arch["i"] for arch, _ in survivors(pool, 2, ("min", "min"))]  # front 0, its extremes kept
        ['0', '3']
    """
    values = np.array([v for _, v in pool])
    chosen: list[int] = []
    for front in non_dominated_sort(values, senses):
        if len(chosen) + len(front) <= size:
            chosen += front
            continue
        distance = crowding_distance(values[front])
        order = np.argsort(-distance, kind="stable")
        chosen += [front[i] for i in order[: size - len(chosen)]]
        break
    return [pool[i] for i in sorted(chosen)]


class _Parents:
    """Binary tournaments on (rank, crowding distance) over the current population."""

    def __init__(self, members: Sequence[tuple[Arch, Values]], senses: Sequence[str], rng: np.random.Generator):
        values = np.array([v for _, v in members])
        self.members = members
        self.rng = rng
        self.rank = np.zeros(len(members), dtype=int)
        self.crowding = np.zeros(len(members))
        for rank, front in enumerate(non_dominated_sort(values, senses)):
            self.rank[front] = rank
            self.crowding[front] = crowding_distance(values[front])

    def pick(self) -> Arch:
        i, j = (int(x) for x in self.rng.integers(len(self.members), size=2))
        if (self.rank[j], -self.crowding[j]) < (self.rank[i], -self.crowding[i]):
            i = j
        return self.members[i][0]


def _child(parents: _Parents, space: Mapping[str, Sequence[str]], crossover: float,
           rng: np.random.Generator) -> Arch:
    """A parent (or, with probability ``crossover``, a crossover of two) mutated in one decision."""
    child = parents.pick()
    if rng.random() < crossover:
        child = _uniform_crossover(child, parents.pick(), rng)
    return mutate(child, space, rng)


def _uniform_crossover(a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
    take_b = rng.random(len(a)) < 0.5
    return {label: (b[label] if flip else a[label]) for label, flip in zip(a, take_b)}


def _result(history: list[tuple[Arch, Values]], members: list[tuple[Arch, Values]],
            objectives: Sequence[Objective], rejected: int) -> ParetoResult:
    senses = tuple(o.sense for o in objectives)
    values = np.array([v for _, v in history])
    mask = non_dominated(values, senses)
    indices = np.flatnonzero(mask)
    minimised = to_minimisation(values[indices], senses)
    order = indices[np.lexsort(minimised.T[::-1])]  # best in the first objective first, ties by the next
    front = [history[i] for i in order]
    best, best_values = front[0]
    return ParetoResult(best=dict(best), best_fitness=best_values[0], history=history, evaluations=len(history),
                        population=members, rejected=rejected, objectives=tuple(o.name for o in objectives),
                        senses=senses, front=front)


def _measure(objective: Objective, arch: Arch) -> float:
    value = float(objective.measure(dict(arch)))
    if math.isnan(value):
        raise GmGraphError(f"objective {objective.name} returned NaN for architecture {key(arch)}")
    return value


def _check_args(objectives: object, budget: object, population: object, crossover: object, seed: object) -> None:
    if isinstance(objectives, Objective) or not isinstance(objectives, Sequence) or not objectives:
        raise ConfigError("nsga2 needs a non-empty list of Objective (name, measure, sense)")
    for o in objectives:
        if not isinstance(o, Objective):
            raise ConfigError(f"objectives must be Objective(name, measure, sense), got {type(o).__name__}")
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"objective names must be distinct, got {names}")
    check_int("budget", budget, minimum=1)
    check_int("population", population, minimum=1)
    check_int("seed", seed, minimum=0)
    if isinstance(crossover, bool) or not isinstance(crossover, (int, float)) or not 0 <= crossover <= 1:
        raise ConfigError(f"crossover is a probability in [0, 1], got {crossover!r}")
