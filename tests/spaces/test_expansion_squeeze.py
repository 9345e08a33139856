"""``elastic_expansions`` squeezes its SE as the model's own block of each ratio does."""

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.elastic import ConvView
from gmgraph.passes import derive
from gmgraph.spaces import elastic_expansions, original_arch, supernetify
from gmgraph.spaces.from_model import _like, _Shape, _squeeze_convs
from tests.conftest import assert_derived_matches, randomize_batchnorm


def torchvision_model(name: str) -> nn.Module:
    from torchvision import models

    return getattr(models, name)(weights=None, num_classes=10)


def timm_model(name: str) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=10)


# model -> (builder, whether its squeeze follows the hidden width, labels to check: None for all)
MODELS = {
    "tv_mobilenet_v3_small": (lambda: torchvision_model("mobilenet_v3_small"), True, None),
    "tv_efficientnet_b0": (lambda: torchvision_model("efficientnet_b0"), False, ("features/2/0", "features/4/1")),
    "timm_mobilenetv3_small_050": (lambda: timm_model("mobilenetv3_small_050"), True, None),
    "timm_efficientnet_b0": (lambda: timm_model("efficientnet_b0"), False, ("blocks/1/0", "blocks/3/1")),
}


@pytest.fixture(scope="module", params=list(MODELS))
def built(request):
    build, follows, labels = MODELS[request.param]
    torch.manual_seed(0)
    model = build()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()
    return model, gmgraph.trace(supernetify(model, elastic_expansions((3, 4, 6)))).eval(), follows, labels


def shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def ratio(op: str) -> float:
    return float(op[1:].replace("p", "."))


def squeezes(gm, label: str) -> dict[str, int]:
    (choice,) = gmgraph.graph.choices(gm)[label]
    return {op: _squeeze_convs(body)[0].out_channels for op, body in choice.ops.items()}


def test_derive_gives_the_shapes_of_the_models_own_block_of_that_ratio(built):
    model, gm, _, labels = built
    original = original_arch(gm)
    for label in labels or gmgraph.space(gm):
        name = label.replace("/", ".")
        block = model.get_submodule(name)
        for op in gmgraph.space(gm)[label][1:]:
            plain = derive(gm, {**original, label: op}).get_submodule(name)
            assert shapes(plain) == shapes(_like(name, block, _Shape(block), ratio(op))), (label, op)


def test_the_squeeze_is_elastic_only_where_the_model_derives_it_from_the_hidden_width(built):
    _, gm, follows, _ = built
    with_se = [label for label in gmgraph.space(gm)
               if _squeeze_convs(next(iter(gmgraph.graph.choices(gm)[label][0].ops.values()))) is not None]
    assert with_se
    varying = [label for label in with_se if len(set(squeezes(gm, label).values())) > 1]
    assert bool(varying) == follows
    for label in with_se:
        (choice,) = gmgraph.graph.choices(gm)[label]
        reduce = _squeeze_convs(next(iter(choice.ops.values())))[0]
        if label in varying:
            widths = squeezes(gm, label)
            assert isinstance(reduce, ConvView) and reduce.conv.out_channels == max(widths.values())
            assert widths[max(widths, key=ratio)] == max(widths.values())  # the widest block squeezes to the most channels
        else:
            assert isinstance(reduce, ConvView) and reduce.out_channels == reduce.conv.out_channels  # not sliced


def test_the_original_is_still_exactly_the_model_and_other_archs_derive_to_the_supernet_path(built):
    model, gm, _, _ = built
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(x), model(x))
    smallest = {label: min(ops, key=ratio) for label, ops in gmgraph.space(gm).items()}
    assert_derived_matches(gm, smallest, x, atol=1e-5)


def test_a_timm_block_of_another_ratio_squeezes_as_timms_mobilenetv3_does():
    pytest.importorskip("timm")
    from timm.layers import make_divisible
    from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite

    from gmgraph.spaces.timm_blocks import block_of_ratio, squeeze_width

    from_hidden = InvertedResidual(24, 24, 3, exp_ratio=6, se_layer=lambda c, **kw: SqueezeExcite(
        c, rd_round_fn=make_divisible, **kw))  # MobileNetV3: a quarter of the hidden width, to 8 -> 40
    from_input = InvertedResidual(24, 24, 3, exp_ratio=6, se_layer=lambda c, **kw: SqueezeExcite(
        c, rd_ratio=0.25 / 6, **kw))  # EfficientNet: a quarter of the input width -> 6
    assert [from_hidden.se.conv_reduce.out_channels, from_input.se.conv_reduce.out_channels] == [40, 6]
    assert [squeeze_width(from_hidden, 72), squeeze_width(from_input, 72)] == [24, 6]
    assert block_of_ratio(from_hidden, 3).se.conv_expand.in_channels == 24
    assert block_of_ratio(from_input, 3).se.conv_reduce.out_channels == 6
