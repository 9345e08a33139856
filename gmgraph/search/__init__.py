"""Search over a trained supernet, and how to judge the ranking it gives.

Fitness is usually the supernet-estimated accuracy of a child::

    >>> import gmgraph, torch
    >>> from gmgraph.spaces import nb201
    >>> from gmgraph import search
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> g = torch.Generator().manual_seed(0)
    >>> batches = [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(10, (8,), generator=g))]
    >>> result = search.random_search(
    ...     gmgraph.space(gm), lambda arch: search.evaluate(gm, arch, batches, calib_loader=batches), n=3)
    >>> result.evaluations
    3

Modules are named for what they hold, never for a function they export, so
``gmgraph.search.evaluate`` is always the function (module ``evaluation``),
``evolution`` lives in ``regularized_evolution``, ``argmax`` in
``from_alphas`` and ``nsga2`` in ``multi_objective``; ``pareto`` holds the
geometry of fronts (dominance, sorting, crowding, hypervolume) and
``constraints`` the limits a searched architecture must meet. The strategies
``gmgraph search --search`` offers are the table
:data:`~gmgraph.search.strategies.STRATEGIES`.
"""

from gmgraph.search.canonical import CanonicalForm, canonical_form
from gmgraph.search.constraints import Constraint, Constraints
from gmgraph.search.evaluation import accuracy, evaluate, evaluate_many, recalibrate_bn
from gmgraph.search.from_alphas import argmax
from gmgraph.search.multi_objective import Objective, ParetoResult, nsga2
from gmgraph.search.pareto import crowding_distance, dominates, hypervolume, non_dominated, non_dominated_sort
from gmgraph.search.random import random_search
from gmgraph.search.rank_correlation import kendall_tau, spearman, top_k_precision
from gmgraph.search.regularized_evolution import evolution
from gmgraph.search.result import SearchResult
from gmgraph.search.strategies import (
    STRATEGIES,
    SearchConfig,
    SearchContext,
    constraints_for,
    objectives_for,
)

__all__ = [
    "STRATEGIES",
    "CanonicalForm",
    "Constraint",
    "Constraints",
    "Objective",
    "ParetoResult",
    "SearchConfig",
    "SearchContext",
    "SearchResult",
    "accuracy",
    "argmax",
    "canonical_form",
    "constraints_for",
    "crowding_distance",
    "dominates",
    "evaluate",
    "evaluate_many",
    "evolution",
    "hypervolume",
    "kendall_tau",
    "non_dominated",
    "non_dominated_sort",
    "nsga2",
    "objectives_for",
    "random_search",
    "recalibrate_bn",
    "spearman",
    "top_k_precision",
]
