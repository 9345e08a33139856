"""Fixtures of the latency tests: the fake additive runtime (tests/latency/fake_runtime.py), and
benchmarks/ on the import path for the benchmark's quick test."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from gmgraph.latency import runtimes
from tests.latency.fake_runtime import FakeRuntime

measure_module = importlib.import_module("gmgraph.latency.measure")  # the package re-exports a function of that name
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture
def fake(monkeypatch) -> FakeRuntime:
    runtime = FakeRuntime()
    monkeypatch.setitem(runtimes.RUNTIMES, "fake", runtime.runner)
    monkeypatch.setitem(measure_module.CLOCKS, "cpu", runtime.clock)
    monkeypatch.setitem(measure_module.CLOCKS, "wall", runtime.clock)
    return runtime
