"""Search strategies as a table: how ``gmgraph search`` picks the architecture once the supernets are trained.

A strategy is one function ``(context) -> SearchResult``; :data:`STRATEGIES`
names them, and ``--search`` accepts exactly its keys::

    >>> space = {"a": ("x", "y", "z"), "b": ("u", "v")}
    >>> ctx = SearchContext(space, fitness=lambda arch: float(arch["a"] == "z"), evaluations=6)
    >>> STRATEGIES["random"](ctx).best["a"]
    'z'
    >>> SearchConfig(strategy="evolution", evaluations=0)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: evaluations must be a positive integer, got 0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from gmgraph.arch import Arch
from gmgraph.errors import ConfigError
from gmgraph.search.from_alphas import argmax
from gmgraph.search.random import random_search
from gmgraph.search.regularized_evolution import evolution
from gmgraph.search.result import Fitness, OnStep, SearchResult
from gmgraph.settings import setting


@dataclass
class SearchContext:
    """What a strategy gets.

    Attributes:
        space: the whole space (label -> ops) to search.
        fitness: scores an architecture, higher is better (supernet-estimated accuracy).
        evaluations: how many architectures it may evaluate.
        seed: seeds its draws.
        progress: called as ``progress(step, arch, fitness)``.
        alphas: per sub-supernet, ``(architecture parameters, its space)`` (weighted samplers only).
    """

    space: Mapping[str, Sequence[str]]
    fitness: Fitness
    evaluations: int = 100
    seed: int = 0
    progress: OnStep | None = None
    alphas: list[tuple[Mapping, Mapping[str, Sequence[str]]]] = field(default_factory=list)


def search_randomly(ctx: SearchContext) -> SearchResult:
    """Random search over ``ctx.evaluations`` distinct architectures."""
    return random_search(ctx.space, ctx.fitness, n=ctx.evaluations, seed=ctx.seed, progress=ctx.progress)


def search_by_evolution(ctx: SearchContext) -> SearchResult:
    """Regularised evolution: a population of 20 (or fewer), tournaments of 5, the rest as cycles."""
    population = min(20, ctx.evaluations)
    return evolution(ctx.space, ctx.fitness, population=population, sample_size=min(5, population),
                     cycles=max(ctx.evaluations - population, 0), seed=ctx.seed, progress=ctx.progress)


def search_by_argmax(ctx: SearchContext) -> SearchResult:
    """The argmax architecture of each sub-supernet's alphas, the best of them by fitness."""
    if not ctx.alphas:
        raise ConfigError("--search argmax reads architecture parameters: use a weighted sampler (darts, gdas)")
    scored: list[tuple[Arch, float]] = []
    for step, (alphas, space) in enumerate(ctx.alphas, 1):
        arch = argmax(alphas, space)
        scored.append((arch, ctx.fitness(arch)))
        if ctx.progress is not None:
            ctx.progress(step, arch, scored[-1][1])
    return SearchResult.from_history(scored, evaluations=len(scored))


STRATEGIES: dict[str, Callable[[SearchContext], SearchResult]] = {
    "evolution": search_by_evolution,
    "random": search_randomly,
    "argmax": search_by_argmax,
}
"""The strategy table: name -> strategy; a new one is a function and an entry."""


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the search step of ``gmgraph search``."""

    strategy: str = setting("evolution", "search strategy", choices=lambda: tuple(STRATEGIES), flag="search")
    evaluations: int = setting(100, "architectures the search evaluates")
    bn_batches: int = setting(4, "BN recalibration batches per evaluation")

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown search {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not isinstance(self.evaluations, int) or isinstance(self.evaluations, bool) or self.evaluations <= 0:
            raise ConfigError(f"evaluations must be a positive integer, got {self.evaluations!r}")
        if not isinstance(self.bn_batches, int) or isinstance(self.bn_batches, bool) or self.bn_batches < 0:
            raise ConfigError(f"bn-batches must be 0 or more, got {self.bn_batches!r}")
