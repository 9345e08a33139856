"""Tests of gmgraph.search.multi_objective (NSGA-II): the front it returns against brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gmgraph.arch import enumerate_archs, key, validate
from gmgraph.errors import ConfigError, GmGraphError
from gmgraph.search import (
    Objective,
    ParetoResult,
    SearchResult,
    hypervolume,
    non_dominated,
    nsga2,
    random_search,
)
from gmgraph.search.multi_objective import survivors

OPS = ("a", "b", "c", "d", "e")
SPACE = {f"e{i}": OPS for i in range(6)}  # 15,625 archs
WEIGHT = {op: i for i, op in enumerate(OPS)}
RNG = np.random.default_rng(7)
GAIN = RNG.uniform(0.5, 1.5, size=(6, 5))  # per (label, op): a rugged accuracy-like landscape


def quality(arch) -> float:
    return float(sum(GAIN[i, WEIGHT[op]] * (1 + WEIGHT[op]) ** 0.5 for i, op in enumerate(arch.values())))


def cost(arch) -> float:
    return float(sum(WEIGHT[op] ** 1.5 for op in arch.values()))


OBJECTIVES = [Objective("quality", quality, "max"), Objective("cost", cost, "min")]
SENSES = ("max", "min")


def true_front_values(space) -> set[tuple[float, float]]:
    points = np.array([(quality(a), cost(a)) for a in enumerate_archs(space)])
    return {tuple(p) for p in points[non_dominated(points, SENSES)].tolist()}


def test_with_the_whole_space_as_budget_the_front_is_exact():
    space = {f"e{i}": OPS[:3] for i in range(4)}  # 81 archs
    r = nsga2(space, OBJECTIVES, budget=81, population=10, seed=0)
    assert r.evaluations == 81
    assert {v for _, v in r.front} == true_front_values(space)


def test_the_front_is_the_non_dominated_set_of_everything_evaluated():
    r = nsga2(SPACE, OBJECTIVES, budget=300, population=30, seed=1)
    history = np.array([v for _, v in r.history])
    expected = sorted(key(r.history[i][0]) for i in np.flatnonzero(non_dominated(history, SENSES)))
    assert sorted(key(a) for a, _ in r.front) == expected
    assert r.front[0][0] == r.best and r.best_fitness == max(v[0] for _, v in r.front)
    assert [v for _, v in r.front] == sorted((v for _, v in r.front), key=lambda v: (-v[0], v[1]))
    for arch, values in r.history:
        validate(arch, SPACE)
        assert values == (quality(arch), cost(arch))


def test_budget_counts_distinct_queries_and_each_is_made_once():
    calls = []
    counted = [Objective("quality", lambda a: calls.append(key(a)) or quality(a), "max"), OBJECTIVES[1]]
    r = nsga2(SPACE, counted, budget=200, population=20, seed=2)
    assert r.evaluations == len(r.history) == len(calls) == len(set(calls)) == 200


def test_deterministic_per_seed():
    a = nsga2(SPACE, OBJECTIVES, budget=150, population=20, seed=5, crossover=0.5)
    b = nsga2(SPACE, OBJECTIVES, budget=150, population=20, seed=5, crossover=0.5)
    c = nsga2(SPACE, OBJECTIVES, budget=150, population=20, seed=6, crossover=0.5)
    assert a == b and a.history != c.history


def test_beats_random_search_on_hypervolume_at_the_same_budget():
    ref = (0.0, 6 * 4**1.5 + 1)
    wins = 0
    for seed in range(4):
        p = nsga2(SPACE, OBJECTIVES, budget=400, population=40, seed=seed)
        found = [v for _, v in p.front]
        rnd = random_search(SPACE, quality, 400, seed=seed)
        points = np.array([(q, cost(a)) for a, q in rnd.history])
        wins += hypervolume(found, ref, SENSES) > hypervolume(points[non_dominated(points, SENSES)], ref, SENSES)
    assert wins == 4


def test_progress_sees_every_new_evaluation():
    seen = []
    r = nsga2(SPACE, OBJECTIVES, budget=60, population=10, seed=0,
              progress=lambda step, arch, values: seen.append((step, key(arch), values)))
    assert seen == [(i, key(a), v) for i, (a, v) in enumerate(r.history, 1)]


def test_survivors_keep_whole_fronts_then_the_least_crowded():
    pool = [({"i": str(i)}, v) for i, v in enumerate([(1.0, 5.0), (5.0, 1.0), (3.0, 3.0), (2.9, 3.1),
                                                       (6.0, 6.0), (7.0, 7.0)])]
    kept = [a["i"] for a, _ in survivors(pool, 4, ("min", "min"))]
    assert kept == ["0", "1", "2", "3"]  # front 0 is four points
    kept = [a["i"] for a, _ in survivors(pool, 3, ("min", "min"))]
    # the extremes (inf), then (3, 3): crowding 2.1/4 + 2.1/4 = 1.05 against 2/4 + 2/4 = 1.0 for (2.9, 3.1)
    assert kept == ["0", "1", "2"]
    assert len(survivors(pool, 5, ("min", "min"))) == 5


def test_result_is_a_search_result_with_a_json_front():
    r = nsga2(SPACE, OBJECTIVES, budget=40, population=10, seed=0)
    assert isinstance(r, ParetoResult) and isinstance(r, SearchResult)
    record = json.loads(json.dumps(r.as_dict()))
    assert record["objectives"] == [{"name": "quality", "sense": "max"}, {"name": "cost", "sense": "min"}]
    assert len(record["front"]) == len(r.front) and record["evaluations"] == 40 == len(record["history"])
    assert record["front"][0]["values"] == {"quality": r.front[0][1][0], "cost": r.front[0][1][1]}


def test_small_and_degenerate_spaces():
    r = nsga2({"a": ("x",), "b": ("y",)}, [Objective("n", lambda a: 1.0)], budget=10)
    assert r.evaluations == 1 and r.best == {"a": "x", "b": "y"}
    r = nsga2({"a": ("x", "y", "z")}, [Objective("n", lambda a: float(a["a"] == "y"))], budget=10, population=1)
    assert r.evaluations == 3 and r.best == {"a": "y"}
    r = nsga2(SPACE, OBJECTIVES, budget=5, population=50)
    assert r.evaluations == 5  # the budget caps the first population too


@pytest.mark.parametrize("kwargs, message", [
    (dict(budget=0), "budget must be >= 1"),
    (dict(population=0), "population must be >= 1"),
    (dict(crossover=1.5), r"crossover is a probability in \[0, 1\]"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(objectives=[]), "non-empty list of Objective"),
    (dict(objectives=[OBJECTIVES[0], OBJECTIVES[0]]), "objective names must be distinct"),
])
def test_bad_arguments(kwargs, message):
    kwargs = {"objectives": OBJECTIVES, **kwargs}
    with pytest.raises(ConfigError, match=message):
        nsga2(SPACE, **kwargs)


def test_a_nan_objective_is_refused():
    with pytest.raises(GmGraphError, match="objective bad returned NaN"):
        nsga2(SPACE, [Objective("bad", lambda a: float("nan"))], budget=3)
    with pytest.raises(ConfigError, match="sense must be 'max' or 'min'"):
        Objective("x", quality, "maximise")
