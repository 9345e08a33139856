"""Every extension point is one table; the CLI and the settings checks read their names from it."""

from __future__ import annotations

import argparse

import pytest

from gmgraph import data, spaces
from gmgraph.errors import ConfigError
from gmgraph.samplers import SAMPLERS, UniformSampler
from gmgraph.scores.splitters import SPLITTERS, get_splitter, method_names, split_exhaustive
from gmgraph.scores.zero_cost import METRICS
from gmgraph.search.strategies import STRATEGIES, search_randomly
from gmgraph.search_job import SearchSettings
from gmgraph.settings import add_flags, from_mapping
from gmgraph.train import FewShotConfig, TrainConfig


def help_text() -> str:
    parser = argparse.ArgumentParser()
    add_flags(parser, SearchSettings)
    return parser.format_help()


@pytest.mark.parametrize("table, flag", [
    (SAMPLERS, "--sampler"), (STRATEGIES, "--search"), (spaces.REGISTRY, "--space"), (data.DATASETS, "--data"),
])
def test_the_cli_offers_exactly_the_table(table, flag):
    offered = set(table) | ({"auto"} if flag == "--sampler" else set())  # auto: the default, pada or uniform
    line = next(part for part in help_text().split() if part.startswith("{") and "," in part
                and set(part.strip("[]{}").split(",")) == offered)
    assert line  # the flag's choices are the table's keys


def test_methods_are_the_splitters_and_one_per_metric():
    assert method_names() == tuple(SPLITTERS) + tuple(f"metric:{m}" for m in METRICS)
    with pytest.raises(ConfigError, match="unknown method 'metric:nope'; choose one of oneshot"):
        get_splitter("metric:nope")


@pytest.fixture
def registered(monkeypatch):
    """One new entry in each table, removed after the test."""
    monkeypatch.setitem(SPLITTERS, "first-only", split_exhaustive)
    monkeypatch.setitem(SAMPLERS, "mine", UniformSampler)
    monkeypatch.setitem(STRATEGIES, "mine", search_randomly)
    monkeypatch.setitem(data.DATASETS, "mine", data.DATASETS["synthetic"])


def test_a_new_entry_is_accepted_everywhere_its_table_is_read(registered):
    s = from_mapping(SearchSettings, {"method": "first-only", "sampler": "mine", "search": "mine", "data": "mine"})
    assert (s.fewshot.method, s.train.sampler, s.search.strategy, s.data) == ("first-only", "mine", "mine", "mine")
    assert "first-only" in method_names() and "mine" in help_text()
    assert FewShotConfig(method="first-only").method == "first-only" and TrainConfig(sampler="mine")
    loaders = data.load("mine", shape=(1, 4, 4), size=(8, 4, 4), batch_size=4)
    assert data.info(loaders).name == "mine"


def test_without_the_entry_the_same_names_are_refused():
    for values, message in (({"method": "first-only"}, "unknown method"), ({"sampler": "mine"}, "unknown sampler"),
                            ({"search": "mine"}, "unknown search"), ({"data": "mine"}, "unknown dataset")):
        with pytest.raises(ConfigError, match=message):
            from_mapping(SearchSettings, values)


def test_every_built_in_name_resolves_to_its_object():
    from gmgraph import registry
    from gmgraph.spaces import BUILTIN

    for table in (registry.SAMPLERS, registry.SPLITTERS, registry.METRICS, registry.STRATEGIES,
                  registry.DATASETS, registry.SPACES):
        assert all(callable(table[name]) or hasattr(table[name], "build") for name in table.names())
    assert registry.DATASETS.names()[:len(data.BUILDERS)] == tuple(data.BUILDERS)
    assert registry.SPACES.names()[:len(BUILTIN)] == tuple(BUILTIN)
    assert registry.SAMPLERS["darts"].bilevel and not registry.SAMPLERS["uniform"].bilevel
    with pytest.raises(KeyError, match="unknown sampler 'nope'; choose one of uniform, darts, gdas, pada"):
        registry.SAMPLERS["nope"]
