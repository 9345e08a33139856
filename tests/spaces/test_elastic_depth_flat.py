"""``elastic_depth`` on a flat list of blocks: torchvision MobileNetV2's and MobileNetV3's ``features``.

Each stage (a block, then the blocks after it that keep their shape) is one depth label at its first
block's key; the other layers stay where they were.
"""

import copy

import pytest
import torch
from torch import nn
from torchvision.models import convnext_tiny, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, resnet18
from torchvision.models.mobilenetv2 import InvertedResidual as InvertedResidualV2
from torchvision.models.mobilenetv3 import InvertedResidual as InvertedResidualV3

import gmgraph
from gmgraph.commands.show import param_range
from gmgraph.elastic import is_view
from gmgraph.errors import SpaceError
from gmgraph.label_sizes import label_kind, largest_first
from gmgraph.latency import LatencyTable, runtimes
from gmgraph.passes import derive, split
from gmgraph.search.cost_bounds import smallest_costs
from gmgraph.search.measures import arch_measures
from gmgraph.shrinking import ShrinkSchedule
from gmgraph.spaces import elastic_depth, elastic_kernels, original_arch, supernetify
from gmgraph.spaces.from_model import SequentialChoices
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm
from tests.latency.fake_runtime import FakeRuntime, model_cost

BUILDS = {"mobilenet_v2": mobilenet_v2, "mobilenet_v3_small": mobilenet_v3_small,
          "mobilenet_v3_large": mobilenet_v3_large}

# The stages, read off torchvision's block tables (first block index: number of blocks); a stage of one
# block (MobileNetV2's features.1 and .17, MobileNetV3's features.1) has nothing to leave off.
STAGES = {
    "mobilenet_v2": {2: 2, 4: 3, 7: 4, 11: 3, 14: 3},
    "mobilenet_v3_small": {2: 2, 4: 3, 7: 2, 9: 3},
    "mobilenet_v3_large": {2: 2, 4: 3, 7: 4, 11: 2, 13: 3},
}


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def built(name: str):
    torch.manual_seed(0)
    model = BUILDS[name](weights=None, num_classes=10)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()
    return model, gmgraph.trace(supernetify(model, elastic_depth())).eval()


@pytest.fixture(scope="module", params=list(BUILDS))
def flat(request):
    return (request.param, *built(request.param))


def shallowest(gm) -> dict[str, str]:
    return {label: ops[-1] for label, ops in gmgraph.space(gm).items()}


def blocks(net: nn.Module) -> int:
    """Blocks held whole: those of the stages (a traced graph runs the other blocks' layers one by one)."""
    return sum(isinstance(m, (InvertedResidualV2, InvertedResidualV3)) for m in net.modules())


def test_each_stage_of_the_flat_features_is_one_depth_label(flat):
    name, model, gm = flat
    expected = {f"features/{first}": tuple(f"d{d}" for d in range(n, 0, -1)) for first, n in STAGES[name].items()}
    assert gmgraph.space(gm) == expected
    assert original_arch(gm) == {label: ops[0] for label, ops in expected.items()}
    for first, n in STAGES[name].items():
        (choice,) = gmgraph.choices(gm)[f"features/{first}"]
        full = choice.ops[f"d{n}"]
        # the same block objects under every depth, under the blocks' own keys
        assert list(full._modules) == [str(first + i) for i in range(n)]
        assert all(choice.ops[f"d{d}"][i] is full[i] for d in range(1, n) for i in range(d))
    # the layers outside a stage keep their keys and their module types; each stage sits at its first key
    inside = {first + i for first, n in STAGES[name].items() for i in range(1, n)}
    features = supernetify(model, elastic_depth()).features
    assert list(features._modules) == [key for key in model.features._modules if int(key) not in inside]
    assert all(type(features.get_submodule(key)) is type(model.features[int(key)])
               for key in features._modules if int(key) not in STAGES[name])


def test_original_arch_is_exactly_the_torchvision_model(flat):
    _, model, gm = flat
    x = image(2)
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(x), model(x))
    plain = derive(gm, original_arch(gm))
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))


def test_the_derived_original_has_exactly_the_models_keys_and_tensors_and_loads_its_checkpoint(flat):
    _, model, gm = flat
    plain = derive(gm, original_arch(gm))
    ours, theirs = plain.state_dict(), model.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[key], value) for key, value in theirs.items())
    # the model's checkpoint loads into the derived network (strictly), and the derived one's into the model
    fresh = derive(gm, original_arch(gm), inherit=False)
    assert not all(torch.equal(fresh.state_dict()[key], value) for key, value in theirs.items())
    fresh.load_state_dict(theirs)
    twin = copy.deepcopy(model)
    for value in twin.state_dict().values():
        value.zero_()
    twin.load_state_dict(ours)
    x = image(10)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x)) and torch.equal(twin(x), model(x))


def test_a_shallower_arch_has_the_keys_of_the_blocks_it_runs(flat):
    name, model, gm = flat
    generator = torch.Generator().manual_seed(11)
    for arch in [gmgraph.sample(gm, generator) for _ in range(3)] + [shallowest(gm)]:
        runs = {int(label.split("/")[1]): int(op[1:]) for label, op in arch.items()}
        left_off = {str(first + i) for first, depth in runs.items() for i in range(depth, STAGES[name][first])}
        expected = {key for key in model.state_dict() if not (key.startswith("features.")
                                                                and key.split(".")[1] in left_off)}
        plain = derive(gm, arch)
        assert set(plain.state_dict()) == expected
        plain.load_state_dict({key: value for key, value in model.state_dict().items() if key in expected})


def test_sampled_archs_derive_to_the_supernet_path_with_no_choice_or_view_left(flat):
    name, _, gm = flat
    generator = torch.Generator().manual_seed(3)
    for arch in [gmgraph.sample(gm, generator) for _ in range(3)] + [shallowest(gm)]:
        plain = assert_derived_matches(gm, arch, image(4))
        assert not any(is_view(m) for m in plain.modules())
        dropped = sum(STAGES[name][int(label.split("/")[1])] - int(op[1:]) for label, op in arch.items())
        assert blocks(plain) == blocks(gm.features) - dropped


def test_parameters_count_each_shared_block_once(flat):
    name, model, gm = flat
    assert parameters(gm) == parameters(model)
    left_off = sum(parameters(model.features[first + i]) for first, n in STAGES[name].items() for i in range(1, n))
    assert parameters(derive(gm, shallowest(gm))) == parameters(model) - left_off


def test_min_depth_keeps_that_many_blocks_in_every_stage():
    model = mobilenet_v2(weights=None, num_classes=10)
    gm = supernetify(model, elastic_depth(min_depth=2))
    assert gmgraph.space(gm) == {"features/4": ("d3", "d2"), "features/7": ("d4", "d3", "d2"),
                                 "features/11": ("d3", "d2"), "features/14": ("d3", "d2")}
    assert isinstance(gm.features[2], InvertedResidualV2) and isinstance(gm.features[3], InvertedResidualV2)
    with pytest.raises(SpaceError, match=r"has 17 such block\(s\), but no stage has a block after its first 5"):
        supernetify(model, elastic_depth(min_depth=5))
    assert elastic_depth(min_depth=5)("layer1", resnet18().layer1) is None  # longer than the stage: no depth


def test_the_layers_outside_the_stages_and_the_blocks_inside_them_take_other_rules():
    torch.manual_seed(0)
    model = mobilenet_v2(weights=None, num_classes=10).eval()
    for rules in ([elastic_depth(), elastic_kernels()], [elastic_kernels(), elastic_depth()]):
        gm = gmgraph.trace(supernetify(model, rules)).eval()
        space = gmgraph.space(gm)
        # the stem conv and the depthwise conv of every block, inside a stage (nested in its depth) or not
        assert [label for label, ops in space.items() if ops[0] == "3x3"] == [
            "features/0/0", "features/1/conv/0/0", *(f"features/{i}/conv/1/0" for i in range(2, 18))]
        assert [label for label, ops in space.items() if ops[0].startswith("d")] == [
            f"features/{first}" for first in STAGES["mobilenet_v2"]]
        with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
            assert torch.equal(gm(image(5)), model(image(5)))


def test_split_on_a_flat_stage_gives_each_child_its_own_blocks():
    model, gm = built("mobilenet_v3_small")
    deep, shallow = split(gm, "features/4", [["d3"], ["d2", "d1"]])
    firsts = [child.get_submodule("features.4").ops[op][0] for child, op in ((deep, "d3"), (shallow, "d1"))]
    original = gm.get_submodule("features.4").ops["d1"][0]
    assert firsts[0] is not firsts[1] and original not in firsts
    assert all(torch.equal(block.block[0][0].weight, original.block[0][0].weight) for block in firsts)
    assert not set(map(id, deep.parameters())) & set(map(id, shallow.parameters()))
    assert not set(map(id, gm.parameters())) & set(map(id, shallow.parameters()))
    assert gmgraph.space(shallow)["features/4"] == ("d2", "d1")
    with torch.no_grad(), gmgraph.use(deep, original_arch(deep)):
        assert torch.equal(deep(image(6)), model(image(6)))
    # a step on one child leaves the other, and the parent, as they were
    before = firsts[1].block[0][0].weight.clone()
    with gmgraph.use(deep, original_arch(deep)):
        deep.train()(image(7)).sum().backward()
    torch.optim.SGD(deep.parameters(), lr=0.1).step()
    assert not torch.equal(firsts[0].block[0][0].weight, before)
    assert torch.equal(firsts[1].block[0][0].weight, before) and torch.equal(original.block[0][0].weight, before)


def test_onnx_export_of_a_derived_arch_matches_torch(tmp_path):
    _, gm = built("mobilenet_v3_small")
    arch = {"features/2": "d1", "features/4": "d2", "features/7": "d2", "features/9": "d1"}
    plain = derive(gm, arch)
    assert blocks(plain) == sum(STAGES["mobilenet_v3_small"].values()) - 4  # the blocks that stay in a stage
    assert_onnx_parity(plain, image(8), tmp_path / "mnv3_depth.onnx")


def test_the_labels_are_depth_labels_for_sandwich_and_progressive_shrinking():
    _, gm = built("mobilenet_v2")
    groups = gmgraph.choices(gm)
    assert {label_kind(group) for group in groups.values()} == {"depth"}
    assert largest_first(groups["features/7"]) == ("d4", "d3", "d2", "d1")
    schedule = ShrinkSchedule("full:1,depth:1+1", groups)
    assert schedule.allowed(0)["features/7"] == ("d4",)
    assert schedule.allowed(1)["features/7"] == ("d4", "d3", "d2")  # ceil(3 * 1/2) smaller depths
    assert schedule.allowed(2)["features/7"] == ("d4", "d3", "d2", "d1")


def test_show_and_the_cost_bounds_count_what_derive_makes():
    model, gm = built("mobilenet_v3_small")
    low, high = param_range(gm)
    assert (low, high) == (parameters(derive(gm, shallowest(gm))), parameters(model))
    measures = arch_measures(gm, (3, 32, 32))
    bounds = smallest_costs(gm, (3, 32, 32))
    assert bounds["params"] == pytest.approx(low / 1e6) == pytest.approx(measures["params"](shallowest(gm)))
    assert bounds["flops"] == pytest.approx(measures["flops"](shallowest(gm)))
    assert measures["flops"](shallowest(gm)) < measures["flops"](original_arch(gm))


@pytest.fixture
def fake(monkeypatch) -> FakeRuntime:
    import importlib

    measure = importlib.import_module("gmgraph.latency.measure")
    runtime = FakeRuntime()
    monkeypatch.setitem(runtimes.RUNTIMES, "fake", runtime.runner)
    monkeypatch.setitem(measure.CLOCKS, "cpu", runtime.clock)
    monkeypatch.setitem(measure.CLOCKS, "wall", runtime.clock)
    return runtime


def test_a_latency_table_predicts_an_additive_runtime_exactly(fake, tmp_path):
    _, gm = built("mobilenet_v3_small")
    table = LatencyTable.build(gm, (3, 32, 32), cache_dir=tmp_path, batch=2, runtime="fake", runs=2, warmup=0,
                               calibration=4, quiet=True)
    generator = torch.Generator().manual_seed(9)
    for arch in [gmgraph.sample(gm, generator) for _ in range(4)] + [original_arch(gm), shallowest(gm)]:
        assert table.predict(arch, corrected=False) == pytest.approx(model_cost(derive(gm, arch)) * 1e3, rel=1e-9)


def test_a_model_with_no_stage_to_shorten_says_what_is_covered():
    with pytest.raises(SpaceError, match=r"elastic_depth covers stages of residual blocks .*MobileNetV2/V3 "
                                         r"InvertedResidual.*ConvNeXt has none of these blocks"):
        with torch.device("meta"):  # only its modules' types matter: no weights to initialise (about 1 s)
            convnext = convnext_tiny()
        supernetify(convnext, elastic_depth())
    # a flat list whose blocks all change the shape: nothing to leave off, so no match
    shape_changing = nn.Sequential(nn.Conv2d(3, 8, 3), InvertedResidualV2(8, 16, 1, 2), InvertedResidualV2(16, 8, 2, 2))
    assert elastic_depth()("features", shape_changing) is None


class Doubled(nn.Sequential):
    """A Sequential with a forward of its own: rebuilding it as a plain Sequential would change what it computes."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_a_sequential_with_its_own_forward_is_not_rebuilt():
    features = mobilenet_v2().features
    assert elastic_depth()("features", Doubled(*features)) is None
    with pytest.raises(SpaceError, match="rebuilt '0' as a Sequential, but it is a Doubled with a forward"):
        supernetify(nn.Sequential(Doubled(nn.ReLU())), lambda name, m: SequentialChoices({"0": m[0]})
                    if isinstance(m, Doubled) else None)


def test_a_flat_list_is_rebuilt_under_its_own_keys():
    features = copy.deepcopy(mobilenet_v2().features)
    children = elastic_depth()("features", features)
    assert isinstance(children, SequentialChoices)
    assert children["0"] is features[0] and children["1"] is features[1] and children["17"] is features[17]
    assert list(children["2"]) == ["d2", "d1"] and children["2"]["d1"][0] is features[2]
