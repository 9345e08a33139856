"""Latency tables on elastic views and nested Choices, on the fake additive runtime."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.graph import active_choices
from gmgraph.latency import LatencyTable
from gmgraph.passes.derive import derive
from tests.latency.fake_runtime import leaf_cost, model_cost
from tests.test_elastic_costs import SHAPE, nested_graph

QUICK = {"runtime": "fake", "runs": 2, "warmup": 0, "calibration": 4, "quiet": True}
BATCH = 2
INNER = (BATCH, 4, 8, 8)  # the input of every Choice of the nested graph


@pytest.fixture(scope="module")
def gm():
    return nested_graph()


@pytest.fixture
def table(fake, gm, tmp_path):
    return LatencyTable.build(gm, SHAPE, cache_dir=tmp_path, batch=BATCH, **QUICK)


def archs(gm, n=24):
    generator = torch.Generator().manual_seed(5)
    out = [gmgraph.sample(gm, generator) for _ in range(n)]
    for depth in ("d1", "d2", "d3"):  # every depth, the rest at their first and last ops
        for pick in (0, -1):
            out.append({label: ops[pick] for label, ops in gmgraph.space(gm).items()} | {"depth": depth})
    return out


def test_an_additive_runtime_is_predicted_exactly_on_a_nested_elastic_graph(table, gm):
    for arch in archs(gm):
        assert table.predict(arch, corrected=False) == pytest.approx(
            model_cost(derive(gm, arch)) * 1e3, rel=1e-9), arch
    assert table.unstable == []


def test_the_prediction_sums_the_entries_of_exactly_the_choices_that_run(table, gm):
    for arch in archs(gm):
        running = active_choices(gm, arch)
        expected = table.fixed_ms + sum(table.entry(c.label, arch[c.label], INNER) for _, c in running)
        assert table.predict(arch, corrected=False) == pytest.approx(expected, rel=1e-12), arch
    # a block's Choices count only under a depth that runs the block
    shallow = {label: ops[0] for label, ops in gmgraph.space(gm).items()} | {"depth": "d1"}
    assert [c.label for _, c in active_choices(gm, shallow)] == ["depth", "b1.kernel", "b1.mix", "act"]
    slower = dict(shallow, **{"b3.kernel": "k5", "b2.width": "w6"})
    assert table.predict(slower, corrected=False) == table.predict(shallow, corrected=False)


def test_a_view_costs_the_conv_it_materialises_to(table, gm):
    block = gm.depth.ops["d3"][0]
    for k in ("k3", "k5"):
        plain = block.kernel.ops[k].materialize()
        assert table.entry("b1.kernel", k, INNER) == pytest.approx(leaf_cost(plain) * 1e3, rel=1e-9)
    assert table.entry("b1.kernel", "k3", INNER) < table.entry("b1.kernel", "k5", INNER)
    # a width's views: an expand conv, a BN and a project conv of c channels, and the ReLU
    width = gm.depth.ops["d3"][1].mix.ops["w2"]
    assert table.entry("b2.width", "w2", INNER) == pytest.approx(
        sum(leaf_cost(m.materialize() if hasattr(m, "materialize") else m) for m in width) * 1e3, rel=1e-9)


def test_a_depth_candidate_counts_its_blocks_own_parts_once(table, gm):
    # Outside its Choices a block runs one BatchNorm: the depth entries are 1, 2 and 3 of them.
    norm = leaf_cost(gm.depth.ops["d3"][0].norm) * 1e3
    assert [table.entry("depth", d, INNER) for d in ("d1", "d2", "d3")] == pytest.approx(
        [norm, 2 * norm, 3 * norm], rel=1e-9)


def test_the_table_keeps_where_each_nested_choice_runs(table):
    (depth,) = [n for n in table.flow if n["kind"] == "choice" and n["label"] == "depth"]
    where = {m["path"]: (m["label"], m["parents"], tuple(m["shape"])) for m in depth["nested"]}
    # a block's Choices hang off the depth Choice, under the depths that run the block (first path kept)
    assert where == {
        "ops.d3.0.kernel": ("b1.kernel", {"": ["d3", "d2", "d1"]}, INNER),
        "ops.d3.0.mix": ("b1.mix", {"": ["d3", "d2", "d1"]}, INNER),
        "ops.d3.1.kernel": ("b2.kernel", {"": ["d3", "d2"]}, INNER),
        "ops.d3.1.mix": ("b2.width", {"": ["d3", "d2"]}, INNER),
        "ops.d3.2.kernel": ("b3.kernel", {"": ["d3"]}, INNER),
        "ops.d3.2.mix": ("b3.mix", {"": ["d3"]}, INNER),
    }


def test_a_saved_nested_table_predicts_the_same(table, gm, tmp_path):
    loaded = LatencyTable.from_dict(table.to_dict())
    for arch in archs(gm, 6):
        assert loaded.predict(arch) == table.predict(arch)


def test_a_plain_graph_of_views_is_timed_as_its_materialised_convs(fake, tmp_path):
    from gmgraph.choice import Choice
    from gmgraph.elastic import ConvView

    shared = nn.Conv2d(3, 3, 7, padding=3)
    gm = gmgraph.trace(nn.Sequential(Choice({f"k{k}": ConvView(shared, kernel=k) for k in (3, 5, 7)}, "k")))
    table = LatencyTable.build(gm, (3, 8, 8), cache_dir=tmp_path, **QUICK)
    for k in (3, 5, 7):
        assert table.predict({"k": f"k{k}"}, corrected=False) == pytest.approx(
            model_cost(derive(gm, {"k": f"k{k}"})) * 1e3, rel=1e-9)


def test_choices_nested_three_deep_count_only_under_the_ops_that_hold_them(fake, tmp_path):
    from gmgraph.choice import Choice

    torch.manual_seed(0)
    inner = Choice({"relu": nn.ReLU(), "fc": nn.Linear(4, 4)}, "inner")
    middle = Choice({"wrap": nn.Sequential(nn.Linear(4, 4), inner), "fc": nn.Linear(4, 4, bias=False)}, "middle")
    gm = gmgraph.trace(nn.Sequential(nn.Linear(4, 4), Choice({"deep": nn.Sequential(nn.Tanh(), middle),
                                                              "skip": nn.Identity()}, "outer")))
    table = LatencyTable.build(gm, (4,), cache_dir=tmp_path, **QUICK)
    (outer,) = [n for n in table.flow if n["kind"] == "choice"]
    assert [(m["path"], m["parents"]) for m in outer["nested"]] == [
        ("ops.deep.1", {"": ["deep"]}), ("ops.deep.1.ops.wrap.1", {"ops.deep.1": ["wrap"]})]
    for values in [(o, m, i) for o in ("deep", "skip") for m in ("wrap", "fc") for i in ("relu", "fc")]:
        arch = dict(zip(("outer", "middle", "inner"), values))
        running = [c.label for _, c in active_choices(gm, arch) if not (c.label == "outer" and values[0] == "skip")]
        expected = table.fixed_ms + sum(table.entry(label, arch[label], (1, 4)) for label in running)
        assert table.predict(arch, corrected=False) == pytest.approx(expected, rel=1e-12)
        assert table.predict(arch, corrected=False) == pytest.approx(model_cost(derive(gm, arch)) * 1e3, rel=1e-9)


def test_expected_latency_is_the_mean_prediction_over_the_drawn_archs(table, gm):
    import itertools

    from gmgraph.latency import expected_latency

    space = gmgraph.space(gm)
    generator = torch.Generator().manual_seed(0)
    alphas = {label: torch.randn(len(ops), generator=generator, dtype=torch.float64, requires_grad=True)
              for label, ops in space.items()}
    probs = {label: dict(zip(space[label], a.softmax(0).tolist())) for label, a in alphas.items()}
    mean = 0.0
    for values in itertools.product(*space.values()):
        arch = dict(zip(space, values))
        weight = 1.0
        for label, op in arch.items():
            weight *= probs[label][op]
        mean += weight * table.predict(arch, corrected=False)
    expected = expected_latency(table, alphas, corrected=False)
    assert expected.item() == pytest.approx(mean, rel=1e-9)
    expected.backward()
    assert alphas["b3.kernel"].grad.abs().sum() > 0  # a nested label's logits get gradient
