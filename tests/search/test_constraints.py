"""Constraints in random search, evolution and NSGA-II: never broken, counted, impossible ones refused."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmgraph.arch import enumerate_archs, key
from gmgraph.config import check_maximum
from gmgraph.errors import ConfigError
from gmgraph.search import Constraint, Constraints, Objective, evolution, nsga2, random_search
from gmgraph.search.constraints import Screen, from_limits

OPS = ("a", "b", "c", "d", "e")
SPACE = {f"e{i}": OPS for i in range(6)}  # 15,625 archs
COST = {op: float(i) for i, op in enumerate(OPS)}


def size(arch) -> float:
    """A params-like cost: 0 (all 'a') .. 24 (all 'e')."""
    return sum(COST[op] for op in arch.values())


def accuracy(arch) -> float:
    """Rewards the costly ops, with a twist so that the best arch under a limit is unique-ish."""
    return sum(COST[op] * (1 + 0.1 * i) for i, op in enumerate(arch.values()))


def limited(maximum: float, max_draws: int = 2_000) -> Constraints:
    return Constraints([Constraint("size", size, maximum)], max_draws=max_draws)


def searches(constraints: Constraints, seed: int):
    """The three searches on the same budget, each returning (result, the archs it claims)."""
    r = random_search(SPACE, accuracy, 40, seed=seed, constraints=constraints)
    e = evolution(SPACE, accuracy, population=10, sample_size=3, cycles=40, seed=seed, constraints=constraints)
    objectives = [Objective("accuracy", accuracy, "max"), Objective("size", size, "min")]
    p = nsga2(SPACE, objectives, budget=40, population=10, seed=seed, constraints=constraints)
    return [
        (r, [r.best] + [a for a, _ in r.history]),
        (e, [e.best] + [a for a, _ in e.history]),
        (p, [p.best] + [a for a, _ in p.front] + [a for a, _ in p.history]),
    ]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), maximum=st.floats(4.0, 23.0))  # from 1 in 74 archs allowed to nearly all
def test_no_search_returns_an_arch_over_the_limit(seed, maximum):
    for result, archs in searches(limited(maximum), seed):
        assert all(size(a) <= maximum for a in archs)
        assert result.as_dict()["rejected"] == result.rejected >= 0


def test_random_search_fills_its_budget_with_feasible_archs_only():
    space = {f"e{i}": OPS for i in range(4)}  # 625 archs, 15 of size <= 2
    feasible = [a for a in enumerate_archs(space) if size(a) <= 2]
    r = random_search(space, accuracy, len(feasible), seed=0, constraints=limited(2))
    assert r.evaluations == len(feasible) == 15
    assert {key(a) for a, _ in r.history} == {key(a) for a in feasible}
    assert r.best_fitness == max(accuracy(a) for a in feasible)
    assert 0 < r.rejected <= 625 - 15  # candidates are distinct: each infeasible one is rejected once at most


def test_rejected_candidates_cost_no_budget():
    calls = []

    def counted(arch):
        calls.append(key(arch))
        return accuracy(arch)

    r = random_search(SPACE, counted, 30, seed=3, constraints=limited(6))
    assert r.evaluations == len(calls) == 30 and r.rejected > 0  # 30 feasible archs scored, the rest redrawn
    e = evolution(SPACE, accuracy, population=8, sample_size=3, cycles=50, seed=3, constraints=limited(6))
    assert len(e.history) == 8 + 50 and e.rejected > 0  # a rejected child does not use up a cycle


def test_a_limit_everything_meets_changes_nothing():
    loose = limited(1e9)
    assert random_search(SPACE, accuracy, 25, seed=1, constraints=loose) == random_search(SPACE, accuracy, 25, seed=1)
    kwargs = dict(population=10, sample_size=3, cycles=30, seed=1)
    assert evolution(SPACE, accuracy, constraints=loose, **kwargs) == evolution(SPACE, accuracy, **kwargs)


@pytest.mark.parametrize("search", [
    lambda c: random_search(SPACE, accuracy, 10, constraints=c),
    lambda c: evolution(SPACE, accuracy, population=5, sample_size=2, cycles=5, constraints=c),
    lambda c: nsga2(SPACE, [Objective("accuracy", accuracy)], budget=10, population=5, constraints=c),
])
def test_an_impossible_limit_is_an_error_naming_the_smallest_value_seen(search):
    with pytest.raises(ConfigError, match=r"no architecture met size <= 0.5 in 300 draws: the constraint is "
                                          r"probably impossible \(the smallest size seen was [1-9]"):
        search(limited(0.5, max_draws=300))


def test_a_small_space_tried_whole_says_so():
    space = {"x": ("a", "b")}
    c = Constraints([Constraint("size", lambda arch: COST[arch["x"]] + 0.75, 0.5)])
    with pytest.raises(ConfigError, match=r"no architecture of the space meets size <= 0.5 \(the smallest size "
                                          r"seen was 0.75\); raise the limit"):
        random_search(space, accuracy, 5, constraints=c)


def test_the_feasible_region_exhausted_ends_nsga2_early_without_waste():
    space = {"x": ("a", "b", "c"), "y": ("a", "b")}
    c = Constraints([Constraint("size", size, 1.0)])  # aa, ab, ba
    r = nsga2(space, [Objective("accuracy", accuracy)], budget=100, population=2, constraints=c)
    assert sorted(key(a) for a, _ in r.history) == ["x=a;y=a", "x=a;y=b", "x=b;y=a"]
    assert r.evaluations == 3 and 3 <= r.rejected <= 3 * 50  # stops once the feasible archs are all known


def test_the_screen_measures_each_arch_once_and_keeps_the_minimum():
    calls = []

    def measure(arch):
        calls.append(arch["x"])
        return {"a": 3.0, "b": 1.0}[arch["x"]]

    screen = Screen(Constraints([Constraint("cost", measure, 2.0)]))
    answers = [screen.allows({"x": op}) for op in ("a", "a", "b", "a", "b")]
    assert answers == [False, False, True, False, True]
    assert calls == ["a", "b"] and screen.rejected == 3 and screen.allowed == 1 and screen.refused == 1
    assert screen.smallest == {"cost": 1.0}
    assert screen.as_dict() == {"rejected": 3, "limits": {"cost": 2.0}, "smallest": {"cost": 1.0}}


@pytest.mark.parametrize("maximum", [0, -1, -0.5, math.inf, math.nan, True, "5"])
def test_a_non_positive_or_odd_maximum_is_refused(maximum):
    with pytest.raises(ConfigError, match="the limit on size must be a positive number"):
        Constraint("size", size, maximum)
    if not isinstance(maximum, str | bool):
        with pytest.raises(ConfigError, match="max-flops must be a positive number"):
            check_maximum("max-flops", maximum)


def test_constraints_are_checked_once_built():
    with pytest.raises(ConfigError, match="each quantity can be limited once"):
        Constraints([Constraint("size", size, 1.0), Constraint("size", size, 2.0)])
    with pytest.raises(ConfigError, match="max_draws must be a positive integer"):
        Constraints([], max_draws=0)
    with pytest.raises(ConfigError, match="holds Constraint objects"):
        Constraints([("size", size, 1.0)])
    with pytest.raises(ConfigError, match="--max-flops needs a flops measure"):
        from_limits({"flops": 3.0}, {}, flags={"flops": "--max-flops"})


def test_results_record_rejections_as_json():
    r = random_search(SPACE, accuracy, 5, seed=0, constraints=limited(3))
    record = json.loads(json.dumps(r.as_dict()))
    assert record["rejected"] == r.rejected > 0 and record["evaluations"] == 5
