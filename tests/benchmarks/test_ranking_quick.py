"""The ranking benchmark's --quick mode runs end to end on a tiny synthetic ground truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import groundtruth_lib as local
import pytest

from gmgraph.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ranking.py"


def load_script():
    spec = importlib.util.spec_from_file_location("ranking_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ranking():
    return load_script()


def test_equal_budgets(ranking):
    for m in ranking.METHODS:
        epochs, split_at = ranking.schedule(m, 70, 10)
        spent = sum(m.fanout ** sum(s <= e for s in split_at) for e in range(epochs))
        assert spent == 70 and len(split_at) == m.splits
    with pytest.raises(ConfigError, match="costs exactly 12"):
        ranking.epochs_for(12, (10,), 5)


def test_quick_mode_runs_every_method(ranking, tmp_path):
    truth = tmp_path / "gt.csv"
    local.generate(10, [0, 1], out=truth, schedule=local.Schedule(C=2, N=1, epochs=1, batch_size=16),
                   dataset="synthetic", progress=False)
    out = tmp_path / "ranking.md"
    result = ranking.main(["--quick", "--groundtruth", str(truth), "--out", str(out),
                           "--estimates", str(tmp_path / "estimates.csv")])
    text = out.read_text()
    for m in ranking.METHODS:
        assert f"| {m.name} | 11 |" in text
    assert "ceiling: 1 seed vs 1 seed" in text and "zero-cost synflow" in text
    runs = [r for r in result["runs"] if "epochs" in r]
    assert len(runs) == len(ranking.METHODS) and {r["budget"] for r in runs} == {11}
    assert {r["leaves"] for r in runs} == {1, 5, 4}
    assert all(len(r["estimates"]) == 10 and all(0 <= e <= 1 for e in r["estimates"]) for r in runs)
    lines = (tmp_path / "estimates.csv").read_text().splitlines()
    assert lines[0] == "method,seed,arch,estimate,truth" and len(lines) == 1 + 10 * (len(ranking.METHODS) + 2)
