"""LatencyTable: exact on an additive runtime, pruned ops free, the cache key and a corrupt cache."""

from __future__ import annotations

import importlib
import json
import shutil

import pytest
import torch

import gmgraph
from gmgraph.errors import ArchError, ConfigError
from gmgraph.latency import LatencyTable, cache, runtimes
from gmgraph.liveness import live_nodes
from gmgraph.passes.derive import derive
from gmgraph.spaces import nb201
from tests.latency.fake_runtime import SUM, FakeRuntime, model_cost

SHAPE = (1, 8, 8)
QUICK = {"runtime": "fake", "runs": 2, "warmup": 0, "calibration": 3, "quiet": True}


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=2, N=1, num_classes=3, in_channels=1, affine=True))


def build(supernet, tmp_path, **options):
    return LatencyTable.build(supernet, SHAPE, cache_dir=tmp_path, **{**QUICK, **options})


@pytest.fixture(scope="module")
def built(supernet, tmp_path_factory):
    """``build(supernet, folder)`` on its own fake runtime, once for the module, for the tests that only read
    the table or need its cache file (``cached_in``): (table, its cache file). Building costs about 0.2 s."""
    measure = importlib.import_module("gmgraph.latency.measure")
    runtime, folder = FakeRuntime(), tmp_path_factory.mktemp("latency")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(runtimes.RUNTIMES, "fake", runtime.runner)
        patch.setitem(measure.CLOCKS, "cpu", runtime.clock)
        patch.setitem(measure.CLOCKS, "wall", runtime.clock)
        table = build(supernet, folder)
    assert runtime.calls > 0
    return table, cache.table_path(folder, table.key)


def cached_in(built, folder):
    """The shared table, its cache file copied into ``folder`` as ``build(supernet, folder)`` would leave it."""
    table, path = built
    shutil.copyfile(path, cache.table_path(folder, table.key))
    return table


def test_an_additive_runtime_is_predicted_exactly(fake, supernet, tmp_path):
    table = build(supernet, tmp_path, batch=2)
    generator = torch.Generator().manual_seed(3)
    archs = [gmgraph.sample(supernet, generator) for _ in range(6)]
    archs += [{label: "none" for label in nb201.LABELS}, {label: "skip_connect" for label in nb201.LABELS}]
    for arch in archs:
        assert table.predict(arch) == pytest.approx(model_cost(derive(supernet, arch)) * 1e3, rel=1e-7), arch
    assert table.unstable == [] and table.correction["scale"] == pytest.approx(1.0, rel=1e-6)
    assert table.predict(archs[0], corrected=True) == pytest.approx(table.predict(archs[0]), rel=1e-6)


def test_prediction_is_fixed_plus_the_entries_of_the_live_ops_and_sums(built):
    table, _ = built
    # node 1 = conv3x3(node 0); node 2 = zeros (dead); node 3 = node 0 + conv1x1(node 1): per cell two ops, one sum
    arch = nb201.parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    shapes = [(1, 2, 8, 8), (1, 4, 4, 4), (1, 8, 2, 2)]  # a cell's input in each of the three stages
    sums = {tuple(tuple(s) for s in e["shapes"]): e["ms"] for e in table.sums}
    expected = table.fixed_ms + sum(
        table.entry("1<-0", "nor_conv_3x3", s) + table.entry("3<-1", "nor_conv_1x1", s) + sums[(s, s)] for s in shapes)
    expected += sums[((1, 4, 4, 4), (1, 4, 4, 4))] + sums[((1, 8, 2, 2), (1, 8, 2, 2))]  # the two residual blocks
    assert table.predict(arch, corrected=False) == pytest.approx(expected, rel=1e-12)
    line = table.correction
    assert table.predict(arch) == pytest.approx(line["offset_ms"] + line["scale"] * (expected - table.fixed_ms))
    assert sums[(shapes[0], shapes[0])] == pytest.approx(SUM * 1e3, rel=1e-6)


def test_pruned_ops_cost_nothing(built):
    table, _ = built
    # node 1 feeds only none edges: whatever 1<-0 is, it is pruned, as is everything into node 2
    base = nb201.parse("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    predictions = {table.predict({**base, "1<-0": op, "2<-0": op2}, corrected=False)
                   for op in nb201.OPS for op2 in nb201.OPS}
    assert len(predictions) == 1
    assert predictions.pop() == pytest.approx(table.breakdown(base)["fixed_ms"] + table.breakdown(base)["sums_ms"])
    assert table.breakdown(base)["ops_ms"] == 0.0
    assert table.entry("1<-0", "skip_connect", (1, 2, 8, 8)) == 0.0  # identities are folded: free everywhere


def test_onnxruntime_tables_count_equal_parameter_free_ops_on_one_input_once(built):
    import dataclasses

    table = dataclasses.replace(built[0], shares_pure_ops=True)
    one = nb201.parse("|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    two = nb201.parse("|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|")
    # `two` adds a second pool of node 0 and a sum per cell; the pool is computed once
    assert len(live_nodes(table.flow, two).choices) == 2 * len(live_nodes(table.flow, one).choices)
    assert table.breakdown(two)["ops_ms"] == pytest.approx(table.breakdown(one)["ops_ms"])


def test_identical_settings_hit_the_cache_without_measuring(fake, supernet, tmp_path):
    first = build(supernet, tmp_path)
    calls = fake.calls
    assert calls > 0 and len(list(tmp_path.glob("latency-*.json"))) == 1
    again = build(supernet, tmp_path)
    assert fake.calls == calls
    assert again == first


@pytest.mark.parametrize("change", ["threads", "batch", "input_shape", "runtime_version", "machine", "platform",
                                    "supernet"])
def test_each_key_field_changes_the_key_and_remeasures(fake, supernet, built, tmp_path, monkeypatch, change):
    cached_in(built, tmp_path)  # as build(supernet, tmp_path) leaves it
    assert build(supernet, tmp_path) == built[0] and fake.calls == 0  # the unchanged settings hit it
    calls = fake.calls
    options, shape, net = {}, SHAPE, supernet
    if change == "threads":
        options["threads"] = 2
    elif change == "batch":
        options["batch"] = 3
    elif change == "input_shape":
        shape = (1, 16, 16)
    elif change == "runtime_version":
        monkeypatch.setattr("gmgraph.latency.build.runtime_version", lambda name: "fake 2.0")
    elif change == "machine":
        monkeypatch.setattr(cache, "machine", lambda: "another CPU")
    elif change == "platform":
        monkeypatch.setattr(cache.platform, "platform", lambda: "another OS")
    else:
        net = gmgraph.trace(nb201.supernet(C=3, N=1, num_classes=3, in_channels=1, affine=True))
    table = LatencyTable.build(net, shape, cache_dir=tmp_path, **{**QUICK, **options})
    assert fake.calls > calls
    assert len(list(tmp_path.glob("latency-*.json"))) == 2
    stored = json.loads(cache.table_path(tmp_path, table.key).read_text())
    assert stored["key"] == table.key and cache.key_hash(table.key) in cache.table_path(tmp_path, table.key).name


def test_the_key_holds_every_field_of_the_target(fake, supernet, tmp_path):
    key = build(supernet, tmp_path, threads=1, batch=2).key
    assert {k: key[k] for k in ("input_shape", "batch", "runtime", "runtime_version", "threads")} == {
        "input_shape": [1, 8, 8], "batch": 2, "runtime": "fake", "runtime_version": "fake", "threads": 1}
    assert key["machine"] == cache.machine() and key["platform"] and len(key["supernet"]) == 16
    assert key["method"] == {"calibration": 3, "seed": 0, "clock": "cpu"}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key", "missing field"])
def test_a_corrupt_cache_file_is_rebuilt(fake, supernet, built, tmp_path, damage):
    table = cached_in(built, tmp_path)  # as build(supernet, tmp_path) leaves it
    path = cache.table_path(tmp_path, table.key)
    text = path.read_text()
    data = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "other key":
        path.write_text(json.dumps({**data, "key": {**data["key"], "threads": 8}}))
    else:
        del data["entries"]
        path.write_text(json.dumps(data))
    calls = fake.calls
    rebuilt = build(supernet, tmp_path)
    assert fake.calls > calls
    assert (rebuilt.key, rebuilt.flow, rebuilt.space) == (table.key, table.flow, table.space)
    assert [e["ms"] for e in rebuilt.entries] == pytest.approx([e["ms"] for e in table.entries], rel=1e-9)
    assert rebuilt.fixed_ms == pytest.approx(table.fixed_ms, rel=1e-9)
    assert json.loads(path.read_text())["key"] == table.key


def test_the_cache_folder_comes_from_the_argument_then_gmgraph_cache(fake, supernet, tmp_path, monkeypatch):
    monkeypatch.setenv("GMGRAPH_CACHE", str(tmp_path / "env"))
    table = LatencyTable.build(supernet, SHAPE, **QUICK)
    assert cache.table_path(tmp_path / "env" / "latency", table.key).is_file()
    assert cache.cache_dir("~/x") == cache.Path.home() / "x"
    monkeypatch.delenv("GMGRAPH_CACHE")
    assert cache.cache_dir() == cache.Path.home() / ".cache" / "gmgraph" / "latency"


def test_unstable_timings_are_listed_and_reported(fake, supernet, tmp_path, capsys):
    fake.noise = [0.0, 1e-2]
    table = LatencyTable.build(supernet, SHAPE, cache_dir=tmp_path, **{**QUICK, "quiet": False, "attempts": 2})
    assert table.unstable and any("nor_conv_3x3" in item for item in table.unstable)
    err = capsys.readouterr().err
    assert "stayed unstable (spread > 0.1)" in err and "latency table (fake, 1 thread(s), batch 1)" in err
    assert "not cached" in err and not list(tmp_path.glob("latency-*.json"))


def test_quiet_builds_write_nothing(fake, supernet, tmp_path, capsys):
    build(supernet, tmp_path)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("options, message", [
    ({"threads": 0}, "threads must be a positive integer, got 0"),
    ({"runs": -3}, "runs must be a positive integer, got -3"),
    ({"batch": -1}, "batch must be a positive integer, got -1"),
    ({"calibration": 0}, "calibration must be a positive integer, got 0"),
    ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'"),
])
def test_bad_build_arguments_are_named(supernet, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        LatencyTable.build(supernet, SHAPE, cache_dir=tmp_path, quiet=True, **options)


def test_bad_archs_and_missing_corrections_are_clear(built, supernet, tmp_path):
    table, _ = built
    with pytest.raises(ArchError, match="missing label"):
        table.predict({"1<-0": "none"})
    with pytest.raises(ConfigError, match="no correction"):
        type(table)(**{**table.to_dict(), "correction": None}).predict(
            {label: "none" for label in nb201.LABELS}, corrected=True)
    with pytest.raises(ConfigError, match="from a traced supernet"):
        LatencyTable.build(nb201.supernet(C=2, N=1), SHAPE, cache_dir=tmp_path, quiet=True)
