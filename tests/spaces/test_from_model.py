
import functools

import onnxruntime as ort
import pytest
import torch
from torch import nn
from torchvision.models import efficientnet_b0, mobilenet_v2, resnet18
from torchvision.models.efficientnet import FusedMBConv, FusedMBConvConfig, MBConv
from torchvision.models.mnasnet import _InvertedResidual as MNASNetBlock
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.mobilenetv3 import InvertedResidual as V3Block
from torchvision.models.mobilenetv3 import InvertedResidualConfig

import gmgraph
from gmgraph.choice import Choice
from gmgraph.errors import SpaceError
from gmgraph.onnx_export import export_onnx
from gmgraph.passes import derive, restrict
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import (
    conv_kernels,
    depthwise_kernels,
    inverted_residual_expansions,
    original_arch,
    supernetify,
)
from tests.conftest import assert_derived_matches, randomize_batchnorm
from tests.test_onnx_export import SideBySide


def user_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def seeded(build) -> nn.Module:
    torch.manual_seed(0)
    model = build()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    return model.eval()


# name -> (model, rule, number of decisions, one label and its ops)
MODELS = {
    "user_cnn": (user_cnn, conv_kernels(), 2, ("3", ("3x3", "5x5", "7x7"))),
    "mobilenet_v2": (lambda: mobilenet_v2(weights=None, num_classes=10), inverted_residual_expansions(),
                     17, ("features/1", ("e1", "e3", "e6"))),
    # 3x3 and 5x5 only: 7x7 versions of resnet18's 512-channel convs would add 60M parameters.
    "resnet18": (lambda: resnet18(weights=None, num_classes=10), conv_kernels((3, 5)),
                 16, ("layer1/0/conv1", ("3x3", "5x5"))),
    "efficientnet_b0": (lambda: efficientnet_b0(weights=None, num_classes=10), inverted_residual_expansions(),
                        16, ("features/2/1", ("e6", "e3", "skip"))),
}


@pytest.fixture(scope="module")
def supernets() -> dict:
    """name -> (model, supernet graph), each built once for the module, when first asked for (see ``built``)."""
    return {}


def built(supernets: dict, name: str):
    if name not in supernets:
        build, rule, _, _ = MODELS[name]
        model = seeded(build)
        supernets[name] = (model, gmgraph.trace(supernetify(model, rule)).eval())
    return supernets[name]


@pytest.fixture(scope="module", params=list(MODELS))
def case(request, supernets):
    return (request.param, *built(supernets, request.param))


def test_one_decision_per_matched_module_labelled_by_its_name(case):
    name, _, gm = case
    _, _, count, (label, ops) = MODELS[name]
    current = gmgraph.space(gm)
    assert len(current) == count and current[label] == ops


def single_path(gm, arch, x):
    with torch.no_grad(), gmgraph.use(gm, arch):
        return gm(x)


def test_original_arch_reproduces_the_model(case):
    _, model, gm = case
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
        arch = original_arch(gm)
        assert torch.equal(single_path(gm, arch, x), expected)
        torch.testing.assert_close(derive(gm, arch)(x), expected, rtol=0, atol=1e-6)
    assert all(gmgraph.space(gm)[label][0] == op for label, op in arch.items())  # the original comes first


def test_sampled_archs_derive_to_the_supernet_path(case):
    _, _, gm = case
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    for _ in range(2):
        assert_derived_matches(gm, gmgraph.sample(gm, generator), x, atol=1e-5)


def test_onnx_export_of_a_sampled_arch_of_each_model_matches_torch(supernets, tmp_path):
    """One export holds a sampled arch of every model side by side (an export costs seconds, most of it per
    export); export_onnx's own check and ours below compare each model's output on its own."""
    nets = {}
    for name in MODELS:
        _, gm = built(supernets, name)
        nets[name] = derive(gm, gmgraph.sample(gm, torch.Generator().manual_seed(4)))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    model = SideBySide(list(nets.values())).eval()
    path = export_onnx(model, x, tmp_path / "four.onnx", dynamic_batch=False)  # a fixed batch exports faster
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert len(got) == len(nets)
    with torch.no_grad():
        for name, have, net in zip(nets, got, nets.values()):
            torch.testing.assert_close(torch.from_numpy(have), net(x), rtol=1e-4, atol=1e-4,
                                       msg=lambda text, name=name: f"{name}: {text}")


def test_gradient_matching_scores_a_decision(case):
    _, _, gm = case
    label = list(gmgraph.space(gm))[1]
    generator = torch.Generator().manual_seed(6)
    batches = [(torch.randn(2, 3, 32, 32, generator=generator), torch.randint(10, (2,), generator=generator))]
    k = len(gmgraph.space(gm)[label])
    distances = gradient_matching(gm, label, batches, rounds=1)
    assert distances.shape == (k, k) and torch.isfinite(distances).all()


def test_the_model_is_copied_and_labels_follow_module_names():
    model = user_cnn()
    gm = gmgraph.trace(supernetify(model, conv_kernels()))
    assert gmgraph.space(gm) == {"0": ("3x3", "5x5", "7x7"), "3": ("3x3", "5x5", "7x7")}  # the 1x1 conv is left alone
    assert isinstance(model[0], nn.Conv2d)
    assert gm.get_submodule("0").ops["3x3"] is not model[0]
    assert torch.equal(gm.get_submodule("0").ops["3x3"].weight, model[0].weight)


def test_larger_kernels_start_as_the_original_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2)
    ops = conv_kernels((7, 5, 3))("conv", conv)
    assert list(ops) == ["3x3", "7x7", "5x5"] and ops["3x3"] is conv
    x = torch.randn(2, 4, 9, 9)
    for name in ("5x5", "7x7"):
        big = ops[name]
        assert (big.stride, big.dilation, big.groups) == (conv.stride, conv.dilation, conv.groups)
        torch.testing.assert_close(big(x), conv(x), rtol=0, atol=1e-5)
    depthwise = nn.Conv2d(4, 4, 3, padding="same", groups=4, bias=False)
    big = conv_kernels((5,))("dw", depthwise)["5x5"]
    torch.testing.assert_close(big(x), depthwise(x), rtol=0, atol=1e-5)
    assert conv_kernels()("k5", nn.Conv2d(2, 2, 5)) is None
    for sizes in ((3,), (4, 5), (1, 3)):
        with pytest.raises(SpaceError, match="odd kernel sizes"):
            conv_kernels(sizes)


def test_expansion_candidates_keep_shape_and_offer_skip_only_where_it_fits():
    rule = inverted_residual_expansions(ratios=(3, 6))
    first = rule("b", InvertedResidual(8, 16, 1, 1))
    assert list(first) == ["e1", "e3", "e6"]  # 8 -> 16 channels: no skip
    same = rule("b", InvertedResidual(8, 8, 1, 6))
    assert list(same) == ["e6", "e3", "skip"]
    assert same["e3"].conv[0][0].out_channels == 24
    assert list(rule("b", InvertedResidual(8, 8, 2, 6))) == ["e6", "e3"]
    assert "skip" not in inverted_residual_expansions(allow_skip=False)("b", InvertedResidual(8, 8, 1, 6))
    block = efficientnet_b0(weights=None).features[6][1]  # MBConv e6, kernel 5, 192 -> 192, stochastic depth
    ops = rule("block", block)
    assert list(ops) == ["e6", "e3", "skip"] and isinstance(ops["e3"], MBConv)
    assert ops["e3"].block[1][0].kernel_size == (5, 5) and ops["e3"].stochastic_depth.p == block.stochastic_depth.p
    x = torch.randn(1, 192, 4, 4)
    assert ops["e3"].eval()(x).shape == block.eval()(x).shape
    assert list(inverted_residual_expansions(ratios=(4.5,))("b", InvertedResidual(8, 8, 1, 6))) == ["e6", "e4p5", "skip"]


def test_rules_are_tried_in_order_and_choices_never_nest():
    gm = gmgraph.trace(supernetify(mobilenet_v2(weights=None), [inverted_residual_expansions(), conv_kernels()]))
    current = gmgraph.space(gm)
    assert current["features/0/0"] == ("3x3", "5x5", "7x7")  # the stem conv
    assert current["features/1"] == ("e1", "e3", "e6") and current["features/2"] == ("e6", "e3")
    assert len(current) == 18  # 17 blocks + the stem; the blocks' inner convs are not decisions
    for choice in gmgraph.choices(gm)["features/1"]:
        assert not any(isinstance(m, Choice) for m in choice.ops.modules())


def test_bad_rules_and_foreign_choices_are_refused():
    with pytest.raises(SpaceError, match="module itself"):
        supernetify(user_cnn(), lambda name, m: {"new": nn.Identity()} if isinstance(m, nn.ReLU) else None)
    with pytest.raises(SpaceError, match="matched"):
        supernetify(nn.Sequential(nn.Linear(2, 2)), conv_kernels())
    gm = gmgraph.trace(supernetify(user_cnn(), conv_kernels()))
    with pytest.raises(SpaceError, match="split removed"):
        original_arch(restrict(gm, {"0": ["5x5", "7x7"]}))
    assert original_arch(restrict(gm, {"0": ["3x3"]})) == {"0": "3x3", "3": "3x3"}
    plain = gmgraph.trace(nn.Sequential(Choice({"a": nn.ReLU(), "b": nn.Identity()}, "act")))
    with pytest.raises(SpaceError, match="not made by supernetify"):
        original_arch(plain)


def convs(block):
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)]


def same_shape(a, b, x):
    with torch.no_grad():
        return a.eval()(x).shape == b.eval()(x).shape


def test_mobilenet_v3_candidates_keep_se_activation_norm_and_dilation():
    norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    block = V3Block(InvertedResidualConfig(16, 5, 64, 16, True, "HS", 1, 1, 1.0), norm)
    ops = inverted_residual_expansions()("b", block)
    assert list(ops) == ["e4", "e3", "e6", "skip"] and isinstance(ops["e3"], V3Block)
    e3 = ops["e3"]
    assert [c.kernel_size for c in convs(e3) if c.groups > 1] == [(5, 5)] and convs(e3)[0].out_channels == 48
    assert any(isinstance(m, nn.Hardswish) for m in e3.modules())
    assert type(e3.block[2]) is type(block.block[2])  # squeeze-excitation
    assert all((bn.eps, bn.momentum) == (0.001, 0.01) for bn in e3.modules() if isinstance(bn, nn.BatchNorm2d))
    assert e3.use_res_connect and same_shape(e3, block, torch.randn(2, 16, 8, 8))
    # Dilated: configured with stride 2, runs its depthwise conv at stride 1 with dilation 2.
    dilated = V3Block(InvertedResidualConfig(16, 3, 48, 24, False, "RE", 2, 2, 1.0), norm)
    ops = inverted_residual_expansions()("d", dilated)
    assert list(ops) == ["e3", "e6"]  # 16 -> 24: no skip
    depthwise = [c for c in convs(ops["e6"]) if c.groups > 1][0]
    assert (depthwise.stride, depthwise.dilation) == ((1, 1), (2, 2)) and ops["e6"]._is_cn
    assert not any(isinstance(m, nn.Hardswish) for m in ops["e6"].modules())
    assert same_shape(ops["e6"], dilated, torch.randn(2, 16, 8, 8))


def test_fused_mbconv_candidates_expand_in_their_kxk_conv():
    one = FusedMBConv(FusedMBConvConfig(1, 3, 1, 24, 24, 1), 0.1, nn.BatchNorm2d)  # one 3x3 conv, 24 -> 24
    ops = inverted_residual_expansions(ratios=(4,))("f", one)
    assert list(ops) == ["e1", "e4", "skip"] and isinstance(ops["e4"], FusedMBConv)
    shapes = [(c.in_channels, c.out_channels, c.kernel_size) for c in convs(ops["e4"])]
    assert shapes == [(24, 96, (3, 3)), (96, 24, (1, 1))]
    assert ops["e4"].stochastic_depth.p == 0.1 and same_shape(ops["e4"], one, torch.randn(2, 24, 8, 8))
    four = FusedMBConv(FusedMBConvConfig(4, 3, 2, 24, 48, 1), 0.2, nn.BatchNorm2d)
    ops = inverted_residual_expansions(ratios=(1, 4))("f", four)
    assert list(ops) == ["e4", "e1"]  # stride 2: no skip
    assert [(c.out_channels, c.stride) for c in convs(ops["e1"])] == [(48, (2, 2))]
    assert same_shape(ops["e1"], four, torch.randn(2, 24, 8, 8))


def test_mnasnet_candidates_and_whole_ratios():
    block = MNASNetBlock(16, 16, 5, 1, 3, bn_momentum=0.0003)
    ops = inverted_residual_expansions()("b", block)
    assert list(ops) == ["e3", "e6", "skip"] and isinstance(ops["e6"], MNASNetBlock)
    assert convs(ops["e6"])[0].out_channels == 96 and convs(ops["e6"])[1].kernel_size == (5, 5)
    assert ops["e6"].layers[1].momentum == 0.0003 and same_shape(ops["e6"], block, torch.randn(2, 16, 8, 8))
    with pytest.raises(SpaceError, match="whole expansion ratios"):
        inverted_residual_expansions(ratios=(4.5,))("b", block)


def test_depthwise_kernels_grow_exactly_and_shrink_from_the_centre():
    torch.manual_seed(0)
    dw = nn.Conv2d(6, 6, 5, stride=2, padding=4, dilation=2, groups=6)
    ops = depthwise_kernels((3, 7))("dw", dw)
    assert list(ops) == ["5x5", "3x3", "7x7"] and ops["5x5"] is dw
    x = torch.randn(2, 6, 11, 11)
    small = ops["3x3"]
    with torch.no_grad():
        torch.testing.assert_close(ops["7x7"](x), dw(x), rtol=0, atol=1e-5)
        assert small.padding == (2, 2) and small(x).shape == dw(x).shape
    assert torch.equal(small.weight, dw.weight[:, :, 1:4, 1:4]) and torch.equal(small.bias, dw.bias)
    assert (small.stride, small.dilation, small.groups) == (dw.stride, dw.dilation, dw.groups)
    unpadded = nn.Conv2d(4, 4, 5, groups=4)
    assert list(depthwise_kernels()("u", unpadded)) == ["5x5", "7x7"]  # a 3x3 would change the output shape
    assert depthwise_kernels((3,))("u", unpadded) is None
    assert depthwise_kernels()("full", nn.Conv2d(4, 4, 3, padding=1)) is None
    assert depthwise_kernels()("rect", nn.Conv2d(4, 4, (1, 3), groups=4)) is None
    for sizes in ((), (4,), (1, 3)):
        with pytest.raises(SpaceError, match="odd kernel sizes"):
            depthwise_kernels(sizes)
