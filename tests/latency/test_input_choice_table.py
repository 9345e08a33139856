"""Latency tables of spaces with InputChoice (issue 31): exact on an additive runtime for every arch, what an
unpicked input needed costs nothing, and a latency-limited and a Pareto search on such a space run end to end."""

from __future__ import annotations

import inspect
import itertools
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import gmgraph
import gmgraph.search_job as search_job
from gmgraph.choice import Choice
from gmgraph.errors import SpaceError
from gmgraph.input_choice import InputChoice
from gmgraph.latency import LatencyTable, expected_latency
from gmgraph.latency import measure as measure_latency
from gmgraph.latency.input_choices import conditional_nodes
from gmgraph.passes.derive import derive
from tests.conftest import tiny_search, users_module
from tests.latency.fake_runtime import model_cost, module_cost
from tests.test_input_choice import Cell, conv

SHAPE = (1, 8, 8)
QUICK = {"runtime": "fake", "runs": 2, "warmup": 0, "calibration": 3, "quiet": True}


class ConcatCell(nn.Module):
    """Concatenates two of three states (one of them a block only it reads), then a 1x1 conv and a head."""

    def __init__(self, c=4, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.a = Choice({"conv": conv(c), "pool": nn.AvgPool2d(3, 1, 1)}, "a")
        self.b = nn.Sequential(conv(c), nn.Conv2d(c, c, 1))
        self.pick = InputChoice(3, k=2, label="inputs", reduction="concat")
        self.mix = nn.Conv2d(2 * c, c, 1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes))

    def forward(self, x):
        s0 = self.stem(x)
        s1 = self.a(s0)
        return self.head(self.mix(self.pick([s0, s1, self.b(s0)])))


def traced(build, **kwargs):
    torch.manual_seed(0)
    return gmgraph.trace(build(**kwargs)).eval()


def every_arch(gm):
    space = gmgraph.space(gm)
    return [dict(zip(space, ops)) for ops in itertools.product(*space.values())]


@pytest.mark.parametrize("build", [Cell, ConcatCell])
def test_an_additive_runtime_is_predicted_exactly_for_every_arch(fake, tmp_path, build):
    gm = traced(build)
    table = LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, batch=2, **QUICK)
    archs = every_arch(gm)
    for arch in archs:
        assert table.predict(arch) == pytest.approx(model_cost(derive(gm, arch)) * 1e3, rel=1e-7), arch
    assert table.unstable == [] and table.correction["scale"] == pytest.approx(1.0, rel=1e-6)
    assert len({round(table.predict(arch), 9) for arch in archs}) > 3  # the decisions change the latency


def test_an_input_choice_op_costs_its_combination_and_what_only_its_picks_need(fake, tmp_path):
    gm = traced(Cell)
    table = LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, **QUICK)
    assert conditional_nodes(table.flow) == ["b_0", "b_1", "b_2"]  # the block only input 2 reads; the stem stays
    block = sum(e["ms"] for e in table.nodes)
    assert block == pytest.approx(sum(module_cost(gm.get_submodule(f"b.{i}")) for i in range(3)) * 1e3, rel=1e-6)
    base = {"a": "conv", "depth": "d1"}
    parts = {op: table.breakdown({**base, "inputs": op}) for op in ("0+1", "0+2", "1+2")}
    assert parts["0+2"]["ops_ms"] - parts["0+1"]["ops_ms"] == pytest.approx(block)
    assert parts["1+2"]["ops_ms"] == pytest.approx(parts["0+2"]["ops_ms"])
    assert table.entry("inputs", "0+1", (1, 4, 8, 8)) == pytest.approx(module_cost(gm.pick.ops["0+1"]) * 1e3, rel=1e-6)
    assert {e["ms"] for e in table.entries if e["label"] == "inputs"} == {table.entry("inputs", "0+1", (1, 4, 8, 8))}


def test_one_picked_input_is_the_input_itself_and_costs_nothing(fake, tmp_path):
    torch.manual_seed(0)
    cell = Cell()
    cell.pick = InputChoice(3, k=1, label="inputs")
    gm = gmgraph.trace(cell).eval()
    table = LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, **QUICK)
    for arch in every_arch(gm):
        assert table.predict(arch) == pytest.approx(model_cost(derive(gm, arch)) * 1e3, rel=1e-7), arch
    assert table.entry("inputs", "2", (1, 4, 8, 8)) == 0.0
    # input 0 (the stem) leaves `a` and the block unread: neither costs anything
    assert table.breakdown({"a": "conv", "inputs": "0", "depth": "d1"})["ops_ms"] == pytest.approx(
        table.entry("depth", "d1", (1, 4, 8, 8)))


def test_a_saved_table_predicts_the_same_and_the_expected_latency_counts_every_op(fake, tmp_path):
    gm = traced(Cell)
    table = LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, **QUICK)
    loaded = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert all(loaded.predict(arch) == table.predict(arch) for arch in every_arch(gm))
    again = LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, **QUICK)  # from the cache, nothing timed
    assert again.nodes == table.nodes
    alphas = {label: torch.zeros(len(ops), requires_grad=True) for label, ops in gmgraph.space(gm).items()}
    e = expected_latency(table, alphas, corrected=False)
    # uniform alphas: the mean of each label's op times, the block unread by some picks counted as live
    mean = {label: sum(table.entry(label, op, (1, 4, 8, 8)) for op in ops) / len(ops)
            for label, ops in gmgraph.space(gm).items()}
    block = sum(n["ms"] for n in table.nodes)
    assert e.item() == pytest.approx(table.fixed_ms + sum(mean.values()) + block, rel=1e-5)
    e.backward()
    assert alphas["depth"].grad.abs().sum() > 0


def test_an_input_choice_inside_another_choice_is_refused_in_one_line(fake, tmp_path):
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.pick = InputChoice(2, k=1, label="inputs")

        def forward(self, x):
            return self.pick([x, -x])

    gm = gmgraph.trace(nn.Sequential(nn.Linear(4, 4), Choice({"inner": Inner(), "skip": nn.Identity()}, "outer")))
    with pytest.raises(SpaceError, match="InputChoice 'inputs' sits in an op of Choice 'outer'"):
        LatencyTable.build(gm, (4,), cache_dir=tmp_path, **QUICK)


# The user's module for the CLI runs: test_input_choice's cell, written out as a file of their own.
MODEL = "\n\n".join([
    "import torch\nfrom torch import nn\n\nfrom gmgraph.choice import Choice\nfrom gmgraph.input_choice import "
    "InputChoice, Repeat", inspect.getsource(conv), inspect.getsource(Cell),
    "def cell(num_classes):\n    return Cell(4, num_classes)\n"])


@pytest.fixture
def on_fake_runtime(fake, monkeypatch, tmp_path):
    """The search's latency table and its end-to-end check on the fake runtime (the real table code, exact)."""
    built = []

    def build(root, shape, quiet):
        built.append(LatencyTable.build(root, shape, cache_dir=tmp_path / "cache", **QUICK))
        return built[-1]

    monkeypatch.setattr(search_job, "LatencyTable", SimpleNamespace(build=build))
    monkeypatch.setattr(search_job, "measure", lambda net, shape, **kw: measure_latency(
        net, shape, **{**kw, "runtime": "fake", "warmup": 0, "runs": 2}))
    with users_module(tmp_path, monkeypatch, "ic_cell", MODEL):
        yield
    assert len(built) == 1


def test_a_latency_limited_search_on_an_input_choice_space_keeps_its_limit(on_fake_runtime, tmp_path):
    # every arch on the fake runtime takes 0.0143-0.0269 ms: 0.02 rules out more than half of the 18
    tiny_search(tmp_path / "run", "digits", model="ic_cell:cell", max_latency_ms=0.02, evaluations=8,
                export="false")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    final = report["final"]
    assert set(report["arch"]) == {"a", "inputs", "depth"}
    assert report["search"]["rejected"] > 0
    assert final["latency_estimate"] <= 0.02 and final["latency_limit_met_when_measured"] is True
    assert final["latency_ms_measured"] == pytest.approx(final["latency_estimate"], rel=1e-6)


def test_a_pareto_search_on_latency_runs_on_an_input_choice_space(on_fake_runtime, tmp_path):
    tiny_search(tmp_path / "run", "digits", model="ic_cell:cell", search="pareto", objectives="accuracy,latency",
                evaluations=8, export="false")
    pareto = json.loads((tmp_path / "run" / "report.json").read_text())["pareto"]
    latencies = [p["values"]["latency"] for p in pareto["front"]]
    assert latencies and all(0.014 < ms < 0.027 for ms in latencies)
