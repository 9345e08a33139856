"""``elastic_stage_widths``: each torchvision ResNet stage chooses its output width (OFA-ResNet's width multiplier).

One label per stage sets every module its width reaches: the blocks' last convs and BNs, the first
block's shortcut, the other blocks' ``conv1`` inputs, and what reads the stage (the next stage's first
``conv1`` and shortcut conv, or ``fc``). The supernet is the model itself; a derived subnet is plain.
"""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

import gmgraph
from gmgraph.commands.show import param_range, space_table
from gmgraph.elastic import is_view
from gmgraph.errors import SpaceError
from gmgraph.graph import choices
from gmgraph.label_sizes import label_kind, largest, smallest
from gmgraph.passes import derive, split
from gmgraph.scores import gradient_matching
from gmgraph.search.cost_bounds import smallest_costs
from gmgraph.search.measures import arch_measures
from gmgraph.spaces import (
    conv_kernels,
    elastic_depth,
    elastic_kernels,
    elastic_stage_widths,
    elastic_widths,
    get,
    original_arch,
    supernetify,
)
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm

WIDTHS = ("w1", "w0p75", "w0p5")
FRACTION = {"w1": 1.0, "w0p75": 0.75, "w0p5": 0.5}
STAGES = ("layer2/width", "layer3/width", "layer4/width")  # resnet18's layer1 adds the stem's 64 channels: kept


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def model(build=resnet18):
    torch.manual_seed(0)
    net = build(num_classes=10).eval()
    randomize_batchnorm(net, torch.Generator().manual_seed(0))
    return net


def small_bottleneck_resnet(num_classes: int = 10) -> ResNet:
    """A Bottleneck ResNet with one block per stage (layer1 has a projection shortcut: it is elastic too)."""
    return ResNet(Bottleneck, [1, 1, 2, 1], num_classes=num_classes)


def resnet18_parameters(out: dict[int, int]) -> int:
    """ResNet-18's parameter count, counted by hand, when stage ``s`` outputs ``out[s]`` channels (inner widths full)."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # stem conv and BN
    c_in = 64
    for s, planes in enumerate((64, 128, 256, 512), start=1):
        c = out.get(s, planes)
        for j in range(2):
            a = c_in if j == 0 else c
            total += a * planes * 9 + 2 * planes + planes * c * 9 + 2 * c  # conv1, bn1, conv2, bn2
            if j == 0 and s > 1:
                total += a * c + 2 * c  # the projection shortcut
        c_in = c
    return total + c_in * 10 + 10


@pytest.fixture(scope="module")
def resnet():
    net = model()
    return net, gmgraph.trace(supernetify(net, elastic_stage_widths())).eval()


def test_one_label_per_stage_reaches_every_module_its_width_touches(resnet):
    net, gm = resnet
    assert gmgraph.space(gm) == dict.fromkeys(STAGES, WIDTHS)
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in net.parameters()) == 11_181_642
    labels = {name: m.label for name, m in gm.named_modules() if isinstance(m, gmgraph.Choice)}
    assert labels["fc"] == "layer4/width" and labels["layer2.1.conv1"] == "layer2/width"
    assert labels["layer3.0.conv1"] == "layer2/width" and labels["layer3.0.conv2"] == "layer3/width"
    assert not any(name.startswith(("layer1.", "layer2.0.conv1")) for name in labels)  # read from the stem's width
    shortcut = gm.get_submodule("layer3.0.downsample.0")  # reads layer2, writes layer3: one Choice in the other
    assert shortcut.label == "layer2/width" and {op.label for op in shortcut.ops.values()} == {"layer3/width"}
    view = shortcut.ops["w0p5"].ops["w0p75"]
    assert (view.out_channels, view.in_channels) == (192, 64) and view.conv is net_conv(gm, shortcut)
    assert len(choices(gm)["layer2/width"]) == 7 + 2  # its own 7 modules, layer3.0.conv1 and layer3.0's shortcut
    assert len(choices(gm)["layer3/width"]) == 6 + 3 + 2  # 6 of its own, 3 in layer3.0's shortcut, 2 in layer4.0


def net_conv(gm, choice):
    """The one conv every view of ``choice`` runs."""
    convs = {id(m.conv): m.conv for m in choice.modules() if is_view(m)}
    assert len(convs) == 1
    return next(iter(convs.values()))


def test_the_original_arch_derives_the_model_itself(resnet):
    net, gm = resnet
    plain = derive(gm, original_arch(gm)).eval()
    rebuilt = resnet18(num_classes=10).eval()
    rebuilt.load_state_dict(plain.state_dict(), strict=True)  # exactly the model's keys and shapes
    with torch.no_grad():
        assert torch.equal(plain(image(1)), net(image(1)))


def test_sampled_archs_derive_to_plain_subnets_of_exactly_their_widths(resnet):
    _, gm = resnet
    generator = torch.Generator().manual_seed(2)
    for i in range(10):
        arch = gmgraph.sample(gm, generator)
        plain = assert_derived_matches(gm, arch, image(10 + i))  # 1e-6; 0 measured here and with SSE kernels
        assert not any(is_view(m) for m in plain.modules())
        out = {s: int(planes * FRACTION[arch[f"layer{s}/width"]]) for s, planes in ((2, 128), (3, 256), (4, 512))}
        assert sum(p.numel() for p in plain.parameters()) == resnet18_parameters(out)
        assert plain.get_submodule("fc").in_features == out[4]
        assert plain.get_submodule("layer3.0.downsample.0").weight.shape[:2] == (out[3], out[2])


def test_the_smallest_subnet_exports_to_onnx(resnet, tmp_path):
    _, gm = resnet
    plain = derive(gm, dict.fromkeys(STAGES, "w0p5")).eval()
    assert_onnx_parity(plain, image(3), tmp_path / "stage_widths.onnx")


def test_with_inner_widths_in_either_order_each_block_nests_the_stage_width():
    net = model(small_bottleneck_resnet)
    first = gmgraph.trace(supernetify(net, [elastic_widths(), elastic_stage_widths()])).eval()
    second = gmgraph.trace(supernetify(net, [elastic_stage_widths(), elastic_widths()])).eval()
    space = gmgraph.space(first)
    assert space == gmgraph.space(second)
    assert [label for label in space if label.endswith("width")] == [f"layer{s}/width" for s in range(1, 5)]
    assert space["layer3/1"] == WIDTHS  # the inner width of a block
    for gm in (first, second):
        assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in net.parameters())
        plain = derive(gm, original_arch(gm)).eval()
        small_bottleneck_resnet().load_state_dict(plain.state_dict(), strict=True)
        with torch.no_grad():
            assert torch.equal(plain(image(4)), net(image(4)))
    arch = {**gmgraph.sample(first, torch.Generator().manual_seed(5)), "layer3/1": "w0p5", "layer3/width": "w0p75"}
    plain = assert_derived_matches(first, arch, image(5), atol=1e-5)
    block = plain.get_submodule("layer3.1")  # inner 128 of 256 (the Bottleneck's planes), output 768 of 1024
    assert (block.conv1.in_channels, block.conv1.out_channels, block.conv3.in_channels, block.conv3.out_channels) \
        == (768, 128, 128, 768)


def test_with_depth_and_inner_widths_every_decision_nests():
    net = model()
    gm = gmgraph.trace(supernetify(net, [elastic_depth(), elastic_stage_widths(), elastic_widths()])).eval()
    space = gmgraph.space(gm)
    assert space["layer3"] == ("d2", "d1") and space["layer3/1"] == WIDTHS and space["layer3/width"] == WIDTHS
    with torch.no_grad():
        assert torch.equal(derive(gm, original_arch(gm)).eval()(image(6)), net(image(6)))
    generator = torch.Generator().manual_seed(6)
    for i in range(3):
        assert_derived_matches(gm, gmgraph.sample(gm, generator), image(20 + i), atol=1e-5)
    # stage widths nested in inner-width candidates: the cost bounds are still the narrowest subnet's
    narrowest = {label: ops[-1] for label, ops in space.items()}
    measures = arch_measures(gm, (3, 32, 32))
    assert smallest_costs(gm, (3, 32, 32)) == {key: measures[key](narrowest) for key in ("params", "flops")}


@pytest.mark.parametrize("first", [elastic_kernels((3, 5)), conv_kernels((3, 5))], ids=["elastic_kernels", "conv_kernels"])
def test_a_rule_that_takes_its_convs_first_is_refused(first):
    with pytest.raises(SpaceError, match=r"must slice layer2\.0\.conv2, .*\(give elastic_stage_widths before"):
        supernetify(ResNet(BasicBlock, [2, 1, 1, 1]), [first, elastic_stage_widths()])


def test_after_it_elastic_kernels_keeps_the_convs_it_did_not_take():
    gm = gmgraph.trace(supernetify(resnet18(), [elastic_stage_widths(), elastic_kernels((3, 5))]))
    kernels = [label for label, ops in gmgraph.space(gm).items() if ops[0] == "3x3"]
    assert kernels == ["layer1/0/conv1", "layer1/0/conv2", "layer1/1/conv1", "layer1/1/conv2", "layer2/0/conv1"]


def test_a_split_gives_children_the_parents_values_in_weights_of_their_own(resnet):
    _, gm = resnet
    narrow, wide = split(gm, "layer3/width", [["w0p5"], ["w1", "w0p75"]])
    assert gmgraph.space(narrow)["layer3/width"] == ("w0p5",) and gmgraph.space(wide)["layer3/width"] == ("w1", "w0p75")
    assert all(c.names == ("w0p5",) for c in choices(narrow)["layer3/width"])  # the nested ones too
    assert not set(map(id, narrow.parameters())) & set(map(id, wide.parameters()))
    assert not set(map(id, narrow.parameters())) & set(map(id, gm.parameters()))
    arch = {**original_arch(gm), "layer3/width": "w0p5", "layer2/width": "w0p75"}
    with torch.no_grad(), gmgraph.use(gm, arch), gmgraph.use(narrow, arch):
        assert torch.equal(narrow(image(7)), gm(image(7)))


def test_samplers_see_a_width_and_gradient_matching_scores_it(resnet):
    _, gm = resnet
    group = choices(gm)["layer2/width"]
    assert label_kind(group) == "width" and (largest(group), smallest(group)) == ("w1", "w0p5")
    generator = torch.Generator().manual_seed(8)
    batches = [(torch.randn(4, 3, 16, 16, generator=generator), torch.randint(10, (4,), generator=generator))]
    distances = gradient_matching(gm.train(), "layer4/width", batches, rounds=1)
    gm.eval()
    assert distances.shape == (3, 3) and torch.all(distances.diagonal() == 0)
    assert torch.all(distances[~torch.eye(3, dtype=torch.bool)] > 0)  # each width sends its own gradient


def test_show_and_the_cost_bounds_count_the_subnets_exactly(resnet):
    _, gm = resnet
    table = space_table(gm)
    assert all(f"{label:<14}" in table for label in STAGES)
    smallest_params = resnet18_parameters({2: 64, 3: 128, 4: 256})
    assert param_range(gm) == (smallest_params, 11_181_642)
    # every op of the shortcut's nested Choice reads the input its enclosing op (the previous stage) gave
    narrowest = arch_measures(gm, (3, 32, 32))["flops"](dict.fromkeys(STAGES, "w0p5"))
    assert smallest_costs(gm, (3, 32, 32)) == {"params": smallest_params / 1e6, "flops": narrowest}


def test_bad_fractions_and_models_without_a_resnet_are_refused():
    with pytest.raises(SpaceError, match="fractions between 0 and 1"):
        elastic_stage_widths((0.5, 1.0))
    with pytest.raises(SpaceError, match="elastic_stage_widths covers torchvision ResNets"):
        supernetify(nn.Sequential(nn.Conv2d(3, 8, 3)), elastic_stage_widths())
    basic = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)
    basic.fc = nn.Identity()  # a feature extractor: the last stage is the output and keeps its width
    gm = gmgraph.trace(supernetify(basic, elastic_stage_widths()))
    assert list(gmgraph.space(gm)) == ["layer2/width", "layer3/width"]


def test_the_cli_rule_name_builds_it():
    gm = gmgraph.trace(get("torchvision.models:resnet18", "elastic_stage_widths").make(16, 5, 10, 3))
    assert gmgraph.space(gm) == dict.fromkeys(STAGES, WIDTHS)


def test_a_latency_table_refuses_the_space_in_one_line(resnet):
    """Each op of a stage-width Choice reads the width its label chose upstream: a table holding one input shape
    per Choice cannot time them, and says so instead of failing inside torch."""
    from gmgraph.latency import LatencyTable

    with pytest.raises(SpaceError, match=r"'layer2/width': its ops give different shapes \(w1: \[1, 128, 4, 4\], "
                                         r"w0p75: \[1, 96, 4, 4\].*not supported by latency tables yet"):
        LatencyTable.build(resnet[1], (3, 32, 32), quiet=True, rebuild=True)
