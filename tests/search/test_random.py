"""Tests of gmgraph.search.random_search."""

from __future__ import annotations

import collections
import importlib

import numpy as np
import pytest

from gmgraph.arch import enumerate_archs, key, validate
from gmgraph.errors import ConfigError, GmGraphError, SpaceError
from gmgraph.search import SearchResult, random_search
from gmgraph.search.random import sample_distinct

random_module = importlib.import_module("gmgraph.search.random")

BIG = {f"e{i}": ("a", "b", "c", "d", "e") for i in range(6)}  # 15,625 archs
SMALL = {"x": ("p", "q", "r"), "y": ("s", "t", "u", "v")}  # 12 archs


def index_fitness(space):
    """An injective fitness: the arch's position in enumeration order."""
    order = {key(a): float(i) for i, a in enumerate(enumerate_archs(space))}
    return lambda arch: order[key(arch)]


def test_deterministic_for_a_seed():
    f = index_fitness(BIG)
    a, b = random_search(BIG, f, 30, seed=3), random_search(BIG, f, 30, seed=3)
    assert a == b
    assert [x for x, _ in random_search(BIG, f, 30, seed=4).history] != [x for x, _ in a.history]


@pytest.mark.parametrize("space, n", [(BIG, 200), (SMALL, 5), (SMALL, 8), (SMALL, 11)])
def test_archs_are_distinct_and_valid(space, n):
    # (SMALL, 8) and (SMALL, 11) take the dense path (a permutation of indices)
    result = random_search(space, index_fitness(space), n, seed=1)
    keys = [key(a) for a, _ in result.history]
    assert len(keys) == len(set(keys)) == n == result.evaluations
    for arch, _ in result.history:
        validate(arch, space)


@pytest.mark.parametrize("n", [12, 13, 1000])
def test_n_at_least_space_size_enumerates_all(n):
    calls = []
    result = random_search(SMALL, lambda arch: calls.append(arch) or 0.0, n)
    assert [a for a, _ in result.history] == list(enumerate_archs(SMALL)) == calls
    assert result.evaluations == 12


def test_best_is_the_first_maximum_of_history():
    result = random_search(BIG, index_fitness(BIG), 40, seed=0)
    fitnesses = [f for _, f in result.history]
    assert result.best_fitness == max(fitnesses)
    assert result.best == result.history[fitnesses.index(max(fitnesses))][0]
    tied = random_search(SMALL, lambda arch: float(arch["x"] != "p"), 12)
    assert tied.best == {"x": "q", "y": "s"}  # first of the 8 archs with fitness 1
    assert tied.population is None


def test_draws_are_uniform():
    # n=1 (sparse path) and n=7 of 12 (dense path): every arch equally likely
    for n, trials in ((1, 2400), (7, 400)):
        counts = collections.Counter()
        for seed in range(trials):
            counts.update(key(a) for a in sample_distinct(SMALL, n, np.random.default_rng(seed)))
        expected = n * trials / 12
        assert len(counts) == 12
        assert all(abs(c - expected) < 0.25 * expected for c in counts.values()), counts


def test_progress_reports_every_evaluation():
    seen = []
    result = random_search(BIG, index_fitness(BIG), 5, progress=lambda *args: seen.append(args))
    assert seen == [(i + 1, a, f) for i, (a, f) in enumerate(result.history)]


def test_result_as_dict_is_plain_data():
    result = random_search(SMALL, index_fitness(SMALL), 3)
    d = result.as_dict()
    assert d["best"] == result.best and d["evaluations"] == 3 and d["population"] is None
    assert [h["fitness"] for h in d["history"]] == [f for _, f in result.history]
    assert isinstance(result, SearchResult)


def test_empty_space_has_one_architecture():
    result = random_search({}, lambda arch: 1.0, 5)
    assert result.history == [({}, 1.0)]


def test_errors():
    f = index_fitness(SMALL)
    for bad_n in (0, -1, 2.0, True, None):
        with pytest.raises(ConfigError, match="n must be"):
            random_search(SMALL, f, bad_n)
    with pytest.raises(ConfigError, match="seed"):
        random_search(SMALL, f, 3, seed=-1)
    with pytest.raises(SpaceError, match="non-empty"):
        random_search({"x": ()}, f, 3)
    with pytest.raises(SpaceError, match="mapping"):
        random_search([("x", ("p",))], f, 3)
    with pytest.raises(GmGraphError, match="NaN"):
        random_search(SMALL, lambda arch: float("nan"), 3)
