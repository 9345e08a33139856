"""What a search returns: the best architecture and how it got there.

>>> r = SearchResult.from_history([({"a": "x"}, 0.2), ({"a": "y"}, 0.7)])
>>> r.best, r.best_fitness, r.evaluations
({'a': 'y'}, 0.7, 2)
>>> r.as_dict()["history"][0]
{'arch': {'a': 'x'}, 'fitness': 0.2}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from gmgraph.arch import Arch, key
from gmgraph.errors import GmGraphError

Fitness = Callable[[Arch], float]
"""Scores one architecture; higher is better."""

OnStep = Callable[[int, Arch, float], None]
"""``progress(step, arch, fitness)`` after each step of a search; ``step`` counts from 1."""


@dataclass
class SearchResult:
    """The outcome of :func:`~gmgraph.search.random_search` or :func:`~gmgraph.search.evolution`.

    Attributes:
        best: the best architecture seen (the first one on ties).
        best_fitness: its fitness.
        history: every ``(arch, fitness)`` the search evaluated, in order, each
            architecture (and, given a canonical form, each derived network) once.
        evaluations: the search's one count of evaluations: ``len(history)``,
            the fitness calls. Summaries, report.json and the per-leaf counts
            (which add up to it) all read this number.
        population: evolution's final population, oldest first; ``None`` for
            searches without one.
        rejected: candidates turned down by the search's constraints (never
            scored, never in ``history``); 0 without constraints.
    """

    best: Arch
    best_fitness: float
    history: list[tuple[Arch, float]]
    evaluations: int
    population: list[tuple[Arch, float]] | None = None
    rejected: int = 0

    @classmethod
    def from_history(
        cls,
        history: Sequence[tuple[Arch, float]],
        population: Sequence[tuple[Arch, float]] | None = None,
        rejected: int = 0,
    ) -> SearchResult:
        """Build a result whose best is the first maximum of ``history`` (non-empty, each arch once)."""
        best, best_fitness = history[0]
        for arch, fitness in history[1:]:
            if fitness > best_fitness:
                best, best_fitness = arch, fitness
        return cls(
            dict(best),
            best_fitness,
            list(history),
            len(history),
            None if population is None else list(population),
            rejected,
        )

    def as_dict(self) -> dict:
        """A JSON-able dict of every field (for reports and the CLI)."""

        def pairs(items):
            return [{"arch": dict(a), "fitness": f} for a, f in items]

        return {
            "best": dict(self.best),
            "best_fitness": self.best_fitness,
            "evaluations": self.evaluations,
            "history": pairs(self.history),
            "population": None if self.population is None else pairs(self.population),
            "rejected": self.rejected,
        }


def score(fitness: Fitness, arch: Mapping[str, str]) -> float:
    """``float(fitness(arch))``, refusing NaN (it would make every comparison false)."""
    value = float(fitness(dict(arch)))
    if math.isnan(value):
        raise GmGraphError(f"the fitness function returned NaN for architecture {key(arch)}")
    return value
