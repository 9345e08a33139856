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

Constraints and objectives come from the settings and the measures the caller
has for a searched architecture (:func:`constraints_for`, :func:`objectives_for`);
units are those of the flags: params and FLOPs in millions, latency in ms::

    >>> config = SearchConfig(strategy="pareto", objectives=("accuracy", "params"), max_params=0.5)
    >>> measures = {"params": lambda arch: 0.2 if arch["a"] == "x" else 0.9}
    >>> fitness = lambda arch: {"x": 0.7, "y": 0.8, "z": 0.9}[arch["a"]]
    >>> ctx = SearchContext({"a": ("x", "y", "z")}, fitness, evaluations=3,
    ...                     constraints=constraints_for(config, measures),
    ...                     objectives=objectives_for(config, fitness, measures))
    >>> found = STRATEGIES["pareto"](ctx)
    >>> found.best, found.rejected, [values for _, values in found.front]
    ({'a': 'x'}, 2, [(0.7, 0.2)])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gmgraph import registry
from gmgraph.arch import Arch, key
from gmgraph.config import LIMITS, OBJECTIVES, SearchConfig
from gmgraph.errors import ConfigError
from gmgraph.search.canonical import Canonical
from gmgraph.search.constraints import Constraints, Measure, from_limits
from gmgraph.search.from_alphas import argmax
from gmgraph.search.multi_objective import Objective, nsga2
from gmgraph.search.random import random_search
from gmgraph.search.regularized_evolution import evolution
from gmgraph.search.result import Fitness, OnStep, SearchResult


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
        constraints: limits every evaluated architecture meets (``None``: none); see
            :func:`constraints_for`. ``argmax`` refuses them (it does not draw candidates).
        objectives: what ``pareto`` optimises; empty means accuracy (``fitness``) alone.
            See :func:`objectives_for`. The other strategies maximise ``fitness``.
        canonical: maps an architecture to the one standing for its derived network
            (:func:`~gmgraph.search.canonical.canonical_form`); every strategy then
            evaluates each network once, and ``evaluations`` counts networks. ``None``:
            each architecture is a network of its own.
    """

    space: Mapping[str, Sequence[str]]
    fitness: Fitness
    evaluations: int = 100
    seed: int = 0
    progress: OnStep | None = None
    alphas: list[tuple[Mapping, Mapping[str, Sequence[str]]]] = field(default_factory=list)
    constraints: Constraints | None = None
    objectives: Sequence[Objective] = ()
    canonical: Canonical | None = None


def search_randomly(ctx: SearchContext) -> SearchResult:
    """Random search over ``ctx.evaluations`` distinct architectures."""
    return random_search(ctx.space, ctx.fitness, n=ctx.evaluations, seed=ctx.seed, progress=ctx.progress,
                         constraints=ctx.constraints, canonical=ctx.canonical)


def search_by_evolution(ctx: SearchContext) -> SearchResult:
    """Regularised evolution: a population of 20 (or fewer), tournaments of 5, the rest as cycles."""
    population = min(20, ctx.evaluations)
    return evolution(ctx.space, ctx.fitness, population=population, sample_size=min(5, population),
                     cycles=max(ctx.evaluations - population, 0), seed=ctx.seed, progress=ctx.progress,
                     constraints=ctx.constraints, canonical=ctx.canonical)


def search_pareto(ctx: SearchContext) -> SearchResult:
    """NSGA-II over ``ctx.objectives``: a :class:`~gmgraph.search.multi_objective.ParetoResult` holding the front.

    The population is a quarter of the budget, between 2 and 50; ``progress``
    gets the first objective's value. ``best`` is the front member best in the
    first objective (the most accurate one for ``--objectives accuracy,...``).
    """
    objectives = list(ctx.objectives) or [Objective("accuracy", ctx.fitness, "max")]
    population = max(2, min(50, ctx.evaluations // 4))
    progress = None
    if ctx.progress is not None:
        def progress(step, arch, values):
            ctx.progress(step, arch, values[0])
    return nsga2(ctx.space, objectives, budget=ctx.evaluations, population=population, seed=ctx.seed,
                 constraints=ctx.constraints, progress=progress, canonical=ctx.canonical)


def search_by_argmax(ctx: SearchContext) -> SearchResult:
    """The argmax architecture of each sub-supernet's alphas, the best of them by fitness.

    Leaves whose argmax derives a network an earlier leaf's already gave are not evaluated again.
    """
    if not ctx.alphas:
        raise ConfigError("--search argmax reads architecture parameters: use a sampler that trains them "
                          "(darts, gdas, snas, proxyless)")
    if ctx.constraints:
        raise ConfigError("--search argmax cannot honour --max-params/--max-flops/--max-latency-ms: it takes "
                          "each leaf's argmax as it is; use --search evolution, random or pareto")
    scored: list[tuple[Arch, float]] = []
    networks: set[str] = set()
    for alphas, space in ctx.alphas:
        arch = argmax(alphas, space)
        network = key(ctx.canonical(arch) if ctx.canonical else arch)
        if network in networks:
            continue
        networks.add(network)
        scored.append((arch, ctx.fitness(arch)))
        if ctx.progress is not None:
            ctx.progress(len(scored), arch, scored[-1][1])
    return SearchResult.from_history(scored)


STRATEGIES = registry.STRATEGIES
"""The strategy table (:data:`gmgraph.registry.STRATEGIES`): name -> strategy; a new one is a function
and an entry."""


def constraints_for(config: SearchConfig, measures: Mapping[str, Measure]) -> Constraints:
    """The constraints ``config`` sets, each measured by ``measures[name]``.

    Args:
        config: the search settings (``max_params``, ``max_flops``, ``max_latency_ms``).
        measures: ``"params"``, ``"flops"``, ``"latency"`` -> function arch -> value, in
            millions of parameters, millions of FLOPs and ms. Only those limited are needed.

    Raises:
        ConfigError: a limit is set and its measure is missing.

    Example:
        >>> constraints_for(SearchConfig(max_flops=100.0), {"flops": lambda arch: 50.0}).describe()
        'flops <= 100'
        >>> constraints_for(SearchConfig(max_latency_ms=5.0), {})
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: --max-latency-ms needs a latency measure for the searched architectures, \
and none is available here (available: none)
    """
    flags = {measure: "--" + name.replace("_", "-") for measure, name in LIMITS.items()}
    return from_limits(config.limits(), measures, flags=flags)


def objectives_for(config: SearchConfig, fitness: Fitness, measures: Mapping[str, Measure]) -> list[Objective]:
    """The objectives ``config`` names: ``"accuracy"`` is ``fitness`` (maximised), the rest ``measures[name]`` (minimised).

    Raises:
        ConfigError: an objective other than accuracy has no measure.

    Example:
        >>> objs = objectives_for(SearchConfig(strategy="pareto", objectives=("accuracy", "flops")),
        ...                       lambda arch: 0.9, {"flops": lambda arch: 12.0})
        >>> [(o.name, o.sense) for o in objs]
        [('accuracy', 'max'), ('flops', 'min')]
    """
    out = []
    for name in config.objectives:
        if name == "accuracy":
            out.append(Objective(name, fitness, OBJECTIVES[name]))
        elif name in measures:
            out.append(Objective(name, measures[name], OBJECTIVES[name]))
        else:
            raise ConfigError(f"--objectives {name} needs a {name} measure for the searched architectures, and "
                              f"none is available here (available: {', '.join(measures) or 'none'})")
    return out
