"""The built-in supernetify rules on timm's models: MobileNetV3/EfficientNet blocks and stages, ViT's Mlp."""

import subprocess
import sys

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.elastic import ConvView, NormView
from gmgraph.passes import derive
from gmgraph.spaces import (
    elastic_depth,
    elastic_expansions,
    inverted_residual_expansions,
    mlp_ratios,
    original_arch,
    supernetify,
)
from gmgraph.spaces.timm_blocks import NormActView, block_of_ratio, norm_view
from tests.conftest import assert_derived_matches, randomize_batchnorm


@pytest.fixture(scope="module", autouse=True)
def _timm_installed():
    """Skips the file without timm; imported here, not at collection, so a test process that runs none of these
    tests never loads it (about half a second)."""
    pytest.importorskip("timm")


def tiny_vit() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
    for m in vit.modules():  # timm starts ViT's biases at zero: make them matter
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.normal_(m.bias, std=0.1)
    return vit


def timm_model(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=10)


MODELS = {
    "mobilenetv3_small_050": (lambda: timm_model("mobilenetv3_small_050"), 64),
    "efficientnet_b0": (lambda: timm_model("efficientnet_b0"), 64),
    "vit_tiny": (tiny_vit, 32),
}

# case -> (model, rule, number of decisions, one label and its ops); counts and ops measured on timm 1.0.31
CASES = {
    "mnv3_expansions": ("mobilenetv3_small_050", inverted_residual_expansions(), 10,
                        ("blocks/1/1", ("e3p5", "e3", "e6", "skip"))),
    "mnv3_elastic_expansions": ("mobilenetv3_small_050", elastic_expansions(), 10,
                                ("blocks/1/0", ("e5", "e3", "e4", "e6"))),  # 4.5 * 8 = 36 rounds to 40
    "mnv3_depth": ("mobilenetv3_small_050", elastic_depth(), 4, ("blocks/2", ("d3", "d2", "d1"))),
    "effnet_expansions": ("efficientnet_b0", inverted_residual_expansions(), 15, ("blocks/1/1", ("e6", "e3", "skip"))),
    "effnet_elastic_expansions": ("efficientnet_b0", elastic_expansions(), 15, ("blocks/1/0", ("e6", "e3", "e4"))),
    "effnet_depth": ("efficientnet_b0", elastic_depth(), 5, ("blocks/1", ("d2", "d1"))),
    "vit_mlp_ratios": ("vit_tiny", mlp_ratios((2, 3)), 2, ("blocks/1/mlp", ("e4", "e2", "e3"))),
}


@pytest.fixture(scope="module")
def models():
    built = {}
    for name, (build, size) in MODELS.items():
        torch.manual_seed(0)
        model = build()
        randomize_batchnorm(model, torch.Generator().manual_seed(1))
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
        built[name] = (model.eval(), x)
    return built


@pytest.fixture(scope="module", params=list(CASES))
def case(request, models):
    model_name, rule, _, _ = CASES[request.param]
    model, x = models[model_name]
    with torch.no_grad():
        expected = model(x)
    return request.param, gmgraph.trace(supernetify(model, rule)).eval(), x, expected


def test_the_rule_matches_timms_blocks(case):
    name, gm, _, _ = case
    _, _, count, (label, ops) = CASES[name]
    current = gmgraph.space(gm)
    assert len(current) == count and current[label] == ops


def test_original_arch_computes_exactly_what_the_timm_model_computes(case):
    _, gm, x, expected = case
    arch = original_arch(gm)
    with torch.no_grad(), gmgraph.use(gm, arch):
        torch.testing.assert_close(gm(x), expected, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(derive(gm, arch).eval()(x), expected, rtol=0, atol=1e-5)


def test_another_arch_derives_to_plain_modules_computing_the_supernet_path(case):
    _, gm, x, expected = case
    other = {label: ops[-1] for label, ops in gmgraph.space(gm).items()}  # never the original (first)
    plain = assert_derived_matches(gm, other, x, atol=1e-5)
    assert not any(isinstance(m, (ConvView, NormView)) for m in plain.modules())
    with torch.no_grad():
        got = plain(x)
    assert got.shape == expected.shape == (2, 10) and not torch.allclose(got, expected, atol=1e-3)


def test_a_new_ratio_is_a_fresh_block_rounded_as_timm_rounds_it():
    from timm.layers import BatchNormAct2d
    from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite

    torch.manual_seed(0)
    block = InvertedResidual(16, 16, 5, exp_ratio=6, act_layer=nn.Hardswish, se_layer=SqueezeExcite).eval()
    new = block_of_ratio(block, 4.5).eval()
    assert [new.conv_pw.out_channels, new.conv_dw.groups, new.se.conv_reduce.in_channels] == [72, 72, 72]
    assert new.se.conv_reduce.out_channels == block.se.conv_reduce.out_channels and new.conv_dw.kernel_size == (5, 5)
    assert isinstance(new.bn1, BatchNormAct2d) and isinstance(new.bn1.act, nn.Hardswish)
    assert isinstance(new.bn3.act, nn.Identity) and new.has_skip  # the projection's BN stays linear
    assert new(torch.randn(1, 16, 8, 8)).shape == (1, 16, 8, 8)
    assert not torch.equal(new.conv_pwl.weight[:, :16], block.conv_pwl.weight[:, :16])  # fresh, not copied


def test_a_view_of_a_timm_norm_keeps_its_activation_and_materialises_to_the_same_function():
    from timm.layers import BatchNormAct2d

    bn = BatchNormAct2d(8, act_layer=nn.Hardswish)
    randomize_batchnorm(bn, torch.Generator().manual_seed(4))
    bn.eval()
    view = norm_view(bn, 5)
    assert isinstance(view, NormActView) and type(norm_view(nn.BatchNorm2d(8), 5)) is NormView
    x = torch.randn(2, 5, 3, 3, generator=torch.Generator().manual_seed(5))
    plain = view.materialize()
    assert type(plain) is BatchNormAct2d and plain.num_features == 5 and isinstance(plain.act, nn.Hardswish)
    with torch.no_grad():
        reference = nn.functional.hardswish(nn.functional.batch_norm(
            x, bn.running_mean[:5], bn.running_var[:5], bn.weight[:5], bn.bias[:5], False, 0.0, bn.eps))
        torch.testing.assert_close(view(x), reference, rtol=0, atol=1e-6)
        torch.testing.assert_close(plain(x), reference, rtol=0, atol=1e-6)


def test_a_wider_timm_mlp_starts_as_the_original_and_mlps_with_a_hidden_norm_or_convs_are_left_alone():
    from timm.layers import Mlp

    torch.manual_seed(0)
    rule, mlp = mlp_ratios((2, 4)), Mlp(6, 18, act_layer=nn.SiLU).eval()
    ops = rule("mlp", mlp)
    assert list(ops) == ["e3", "e2", "e4"] and type(ops["e4"]) is Mlp and isinstance(ops["e4"].act, nn.SiLU)
    assert [ops["e4"].fc1.out_features, ops["e4"].fc2.in_features, ops["e2"].fc1.out_features] == [24, 24, 12]
    x = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(ops["e4"].eval()(x), mlp(x), rtol=0, atol=1e-6)
    assert rule("mlp", Mlp(6, 18, norm_layer=nn.LayerNorm)) is None
    assert rule("mlp", Mlp(6, 18, use_conv=True)) is None


def test_importing_the_rules_does_not_import_timm_and_they_work_without_it():
    # 10 classes: the rules never look at the classifier, and a 1000-class head costs a quarter second to build
    code = ("import sys\nfrom torchvision.models import mobilenet_v2, resnet18\n"
            "from gmgraph.spaces import from_model as f\n"
            "mbv2 = f.supernetify(mobilenet_v2(num_classes=10), [f.inverted_residual_expansions(), f.mlp_ratios()])\n"
            "resnet = f.supernetify(resnet18(num_classes=10), [f.elastic_depth(), f.elastic_expansions()])\n"
            "assert 'timm' not in sys.modules, 'timm was imported'\n"
            "print(len(f.original_arch(mbv2)), len(f.original_arch(resnet)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["17", "4"]  # MobileNetV2's blocks, ResNet-18's four stages
