"""Tests of gmgraph.search.regularized_evolution (regularised evolution)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from gmgraph.arch import enumerate_archs, key, validate
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.search import evolution, random_search
from gmgraph.search.regularized_evolution import mutate

evolution_module = importlib.import_module("gmgraph.search.regularized_evolution")

SPACE = {f"e{i}": ("a", "b", "c", "d", "e") for i in range(6)}  # 15,625 archs
TARGET = {"e0": "c", "e1": "e", "e2": "a", "e3": "d", "e4": "b", "e5": "c"}


def matches(arch):
    """Synthetic fitness: decisions agreeing with the hidden TARGET (0..6)."""
    return float(sum(arch[label] == op for label, op in TARGET.items()))


def differ(a, b):
    return [label for label in a if a[label] != b[label]]


def test_finds_the_target():
    result = evolution(SPACE, matches, population=20, sample_size=5, cycles=300, seed=0)
    assert result.best == TARGET and result.best_fitness == 6.0
    assert result.evaluations <= 20 + 300


def test_beats_random_search_with_the_same_budget():
    evo, rnd = [], []
    for seed in range(5):
        e = evolution(SPACE, matches, population=20, sample_size=5, cycles=150, seed=seed)
        evo.append(e.best_fitness)
        rnd.append(random_search(SPACE, matches, e.evaluations, seed=seed).best_fitness)
    assert np.mean(evo) > np.mean(rnd)


def test_oldest_member_leaves():
    pop = 8
    result = evolution(SPACE, matches, population=pop, sample_size=3, cycles=40, seed=2)
    assert len(result.history) == pop + 40
    # one child in, the oldest out: the final population is the last `pop` arrivals,
    # so even the fittest initial member is gone after `pop` cycles
    assert result.population == result.history[-pop:]
    best_initial = max(result.history[:pop], key=lambda m: m[1])
    assert not any(m is best_initial for m in result.population)


def test_each_child_mutates_the_best_of_the_population_in_one_decision():
    # sample_size == population: the parent is the population's best; an injective
    # fitness makes that best unique
    order = {key(a): float(i) for i, a in enumerate(enumerate_archs(SPACE))}
    pop = 6
    result = evolution(SPACE, lambda a: order[key(a)], population=pop, sample_size=pop, cycles=30, seed=1)
    for i in range(pop, len(result.history)):
        window = result.history[i - pop : i]  # the population when child i was made
        parent = max(window, key=lambda m: m[1])[0]
        assert len(differ(parent, result.history[i][0])) == 1


def test_mutate_changes_exactly_one_mutable_decision():
    space = {"fixed": ("only",), "x": ("p", "q"), "y": ("r", "s", "t")}
    arch = {"fixed": "only", "x": "p", "y": "t"}
    changed = set()
    for seed in range(200):
        child = mutate(arch, space, np.random.default_rng(seed))
        validate(child, space)
        (label,) = differ(arch, child)
        changed.add((label, child[label]))
    assert arch == {"fixed": "only", "x": "p", "y": "t"}  # not mutated in place
    assert changed == {("x", "q"), ("y", "r"), ("y", "s")}
    with pytest.raises(SpaceError, match="single op"):
        mutate({"fixed": "only"}, {"fixed": ("only",)}, np.random.default_rng(0))


def test_repeats_use_no_evaluation_and_the_search_ends_when_the_space_does():
    space = {"x": ("p", "q"), "y": ("r", "s")}
    calls = []
    result = evolution(
        space, lambda a: calls.append(key(a)) or matches_xy(a), population=3, sample_size=2, cycles=50
    )
    assert len(calls) == len(set(calls)) == result.evaluations == len(result.history) == 4  # the whole space
    assert [key(a) for a, _ in result.history] == calls


def test_the_budget_counts_distinct_evaluations():
    # a small space where the paper's children would often repeat: each cycle still evaluates a new arch
    space = {f"e{i}": ("a", "b") for i in range(5)}  # 32 archs
    result = evolution(space, matches_xy_free, population=8, sample_size=4, cycles=20, seed=3)
    keys = [key(a) for a, _ in result.history]
    assert len(keys) == len(set(keys)) == result.evaluations == 8 + 20


def matches_xy(arch):
    return float(arch["x"] == "q") + float(arch["y"] == "s")


def matches_xy_free(arch):
    return float(sum(op == "b" for op in arch.values()))


def test_no_mutable_label_stops_after_the_initial_population():
    result = evolution({"x": ("p",), "y": ("r",)}, lambda a: 1.0, population=4, sample_size=2, cycles=10)
    assert len(result.history) == 1 and result.evaluations == 1  # the space holds one arch
    assert result.population == result.history


def test_deterministic_and_reports_progress():
    seen = []
    a = evolution(
        SPACE, matches, population=5, sample_size=2, cycles=20, seed=7, progress=lambda *x: seen.append(x)
    )
    b = evolution(SPACE, matches, population=5, sample_size=2, cycles=20, seed=7)
    assert a == b
    assert seen == [(i + 1, arch, f) for i, (arch, f) in enumerate(a.history)]
    assert evolution(SPACE, matches, population=5, sample_size=2, cycles=0).history == (
        evolution(SPACE, matches, population=5, sample_size=2, cycles=0).population
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"population": 0}, "population must be >= 1"),
        ({"population": 2.5}, "population must be an integer"),
        ({"sample_size": 0}, "sample_size must be >= 1"),
        ({"population": 3, "sample_size": 4}, r"sample_size \(4\) cannot exceed population \(3\)"),
        ({"cycles": -1}, "cycles must be >= 0"),
        ({"cycles": True}, "cycles must be an integer"),
        ({"seed": -3}, "seed must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        evolution(SPACE, matches, **kwargs)
