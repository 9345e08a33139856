"""SearchConfig's objectives and limits, and the strategies' constraints: flags, checks and wiring."""

from __future__ import annotations

import argparse

import pytest

from gmgraph.errors import ConfigError
from gmgraph.search import Constraint, Constraints, ParetoResult, SearchConfig, SearchContext
from gmgraph.search.strategies import STRATEGIES, constraints_for, objectives_for
from gmgraph.settings import add_flags, from_flags, from_mapping, to_flags

OPS = ("a", "b", "c", "d")
SPACE = {f"e{i}": OPS for i in range(5)}  # 1,024 archs
RANK = {op: i for i, op in enumerate(OPS)}


def accuracy(arch) -> float:
    return sum(RANK[op] * (1 + 0.1 * i) for i, op in enumerate(arch.values()))


def params(arch) -> float:
    return float(sum(RANK[op] ** 2 for op in arch.values()))


def parse(argv: list[str]) -> SearchConfig:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, SearchConfig)
    return from_flags(SearchConfig, parser.parse_args(argv))


def test_flags_set_objectives_and_limits_and_round_trip():
    config = parse(["--search", "pareto", "--objectives", "accuracy,params", "--max-params", "0.5",
                    "--max-latency-ms", "4", "--max-flops", "none"])
    assert config.objectives == ("accuracy", "params")
    assert config.limits() == {"params": 0.5, "flops": None, "latency": 4.0}
    assert parse(to_flags(config)) == config
    assert SearchConfig().limits() == {"params": None, "flops": None, "latency": None}


def test_objectives_accept_text_or_a_list():
    a = SearchConfig(strategy="pareto", objectives="accuracy, latency")
    b = from_mapping(SearchConfig, {"search": "pareto", "objectives": ["accuracy", "latency"]})
    assert a == b and a.objectives == ("accuracy", "latency")


@pytest.mark.parametrize("values, message", [
    ({"objectives": ["accuracy", "energy"]}, "unknown objective 'energy'; choose from accuracy, latency, params"),
    ({"search": "pareto", "objectives": ["params", "params"]}, "each objective may be named once"),
    ({"objectives": []}, "objectives must be names from"),
    ({"objectives": ["accuracy", "params"]}, "--objectives accuracy,params needs --search pareto"),
    ({"max-params": -1}, r"max-params must be a positive number \(or none for no limit\), got -1"),
    ({"max-flops": 0}, "max-flops must be a positive number"),
    ({"max-latency-ms": float("inf")}, "max-latency-ms must be a positive number"),
    ({"max-latency-ms": "fast"}, "max-latency-ms must be a number"),
])
def test_bad_values_are_one_clear_error(values, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(SearchConfig, values)


def test_a_bad_limit_on_the_command_line_is_one_clear_error():
    with pytest.raises(ConfigError, match="max-params must be a positive number .*got -2.0"):
        parse(["--max-params", "-2"])
    with pytest.raises(argparse.ArgumentError, match="max-flops must be a number"):
        parse(["--max-flops", "lots"])


def test_constraints_and_objectives_come_from_the_config_and_the_measures():
    config = SearchConfig(strategy="pareto", objectives=("accuracy", "params"), max_params=10.0)
    constraints = constraints_for(config, {"params": params, "flops": params})
    assert constraints.describe() == "params <= 10"
    objectives = objectives_for(config, accuracy, {"params": params})
    assert [(o.name, o.sense) for o in objectives] == [("accuracy", "max"), ("params", "min")]
    assert objectives[0].measure is accuracy and objectives[1].measure is params
    assert not constraints_for(SearchConfig(), {})  # no limit set: nothing needed
    with pytest.raises(ConfigError, match=r"--max-flops needs a flops measure .* \(available: params\)"):
        constraints_for(SearchConfig(max_flops=3.0), {"params": params})
    with pytest.raises(ConfigError, match="--objectives latency needs a latency measure"):
        objectives_for(SearchConfig(strategy="pareto", objectives=("accuracy", "latency")), accuracy, {})


@pytest.mark.parametrize("strategy", ["random", "evolution", "pareto"])
def test_every_drawing_strategy_honours_the_limit(strategy):
    limit = Constraints([Constraint("params", params, 6.0)])
    steps = []
    ctx = SearchContext(SPACE, accuracy, evaluations=60, seed=3, constraints=limit,
                        progress=lambda step, arch, value: steps.append(value))
    found = STRATEGIES[strategy](ctx)
    assert params(found.best) <= 6.0 and found.rejected > 0
    assert all(params(arch) <= 6.0 for arch, _ in found.history)
    assert found.evaluations <= 60 and len(steps) == len(found.history)
    assert found.as_dict()["rejected"] == found.rejected


def test_pareto_returns_the_front_and_reports_accuracy_to_progress():
    config = SearchConfig(strategy="pareto", objectives=("accuracy", "params"), evaluations=120)
    values = []
    ctx = SearchContext(SPACE, accuracy, evaluations=config.evaluations, seed=0,
                        objectives=objectives_for(config, accuracy, {"params": params}),
                        progress=lambda step, arch, value: values.append(value))
    found = STRATEGIES["pareto"](ctx)
    assert isinstance(found, ParetoResult) and found.objectives == ("accuracy", "params")
    assert values == [accuracy(arch) for arch, _ in found.history]
    assert found.best_fitness == accuracy(found.best) == max(v[0] for _, v in found.front)
    assert len(found.front) > 3  # a trade-off curve, not one point


def test_pareto_without_objectives_maximises_accuracy():
    found = STRATEGIES["pareto"](SearchContext(SPACE, accuracy, evaluations=200, seed=0))
    assert found.objectives == ("accuracy",) and len({v for _, v in found.front}) == 1
    assert found.best_fitness == max(f for _, (f,) in found.history)


def test_argmax_refuses_constraints():
    ctx = SearchContext(SPACE, accuracy, alphas=[({}, SPACE)], constraints=Constraints([Constraint("p", params, 1)]))
    with pytest.raises(ConfigError, match="argmax cannot honour"):
        STRATEGIES["argmax"](ctx)
