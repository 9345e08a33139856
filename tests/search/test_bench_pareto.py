"""benchmarks/bench_pareto.py --quick runs end to end in seconds and its known answers hold."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from gmgraph.nasbench import nb201

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pareto.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_pareto", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def test_the_true_front_matches_a_running_maximum(bench):
    table = bench.Table.load()
    for cost in ("FLOPs", "params"):
        front = {tuple(p) for p in bench.true_front(table, cost).tolist()}
        # independent 2-D reference: by cost ascending, a point is optimal iff it beats every cheaper one
        acc, c = table.accuracy, table.costs[cost]
        expected, record = set(), -np.inf
        for value in np.unique(c):
            best = acc[c == value].max()
            if best > record:
                expected.add((float(best), float(value)))
                record = best
        assert front == expected
    assert table.accuracy[nb201.index_of(0)] == nb201.query(0)


def test_quick_mode_writes_the_tables(bench, tmp_path):
    result = bench.main(["--quick", "--out", str(tmp_path)])
    text = (tmp_path / "pareto.md").read_text()
    assert "Command: `.venv/bin/python benchmarks/bench_pareto.py --quick --out" in text
    for cost in ("FLOPs", "params"):
        assert f"| accuracy vs {cost} | NSGA-II | 200 |" in text and f"| accuracy vs {cost} | random search |" in text
        runs = result["pareto"][cost]["runs"]
        for run in runs.values():
            assert len(run["fraction"]) == 2 and all(0 < f <= 1 for f in run["fraction"])
        assert np.median(runs["NSGA-II"]["fraction"]) > np.median(runs["random search"]["fraction"])
    (row,) = result["constrained"]
    assert row["limit"] == 20.0 and row["best"] == 91.51  # the best CIFAR-10 arch under 20 MFLOPs
    assert all(run["violations"] == 0 for run in row["runs"].values())
    assert "| <= 20 | 91.51 | evolution |" in text


def test_bootstrap_interval_brackets_the_median(bench):
    median, low, high = bench.bootstrap_median([0.9, 0.95, 0.97, 0.99, 1.0], resamples=500)
    assert median == 0.97 and low <= median <= high and 0.9 <= low and high <= 1.0
    assert bench.bootstrap_median([0.5] * 4, resamples=10) == (0.5, 0.5, 0.5)
