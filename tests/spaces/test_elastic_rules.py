"""``elastic_kernels``: one shared weight per conv at the largest kernel, on torchvision models."""

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2

import gmgraph
from gmgraph.elastic import ConvView, NormView
from gmgraph.errors import SpaceError
from gmgraph.passes import derive, split
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import (
    conv_kernels,
    elastic_depth,
    elastic_expansions,
    elastic_kernels,
    original_arch,
    supernetify,
)
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm


def parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def largest(gm) -> dict[str, str]:
    """The arch with every kernel at its largest size (ops are named ``kxk``)."""
    return {label: max(ops, key=lambda op: int(op.split("x")[0])) for label, ops in gmgraph.space(gm).items()}


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = mobilenet_v2(weights=None, num_classes=10)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()
    return model, gmgraph.trace(supernetify(model, elastic_kernels((3, 5, 7)))).eval()


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_every_kxk_conv_gets_one_shared_weight_at_the_largest_kernel(mobilenet):
    _, gm = mobilenet
    groups = gmgraph.graph.choices(gm)
    assert len(groups) == 18 and gmgraph.space(gm)["features/0/0"] == ("3x3", "5x5", "7x7")
    for (choice,) in groups.values():
        shared = {id(view.conv) for view in choice.ops.values()}
        assert len(shared) == 1 and all(isinstance(view, ConvView) for view in choice.ops.values())
        assert next(iter(choice.ops.values())).conv.kernel_size == (7, 7)


def test_original_arch_is_exactly_the_torchvision_model(mobilenet):
    model, gm = mobilenet
    x = image(2)
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(x), model(x))
    torch.testing.assert_close(derive(gm, original_arch(gm))(x), model(x), rtol=0, atol=1e-6)


def test_sampled_archs_derive_to_the_supernet_path(mobilenet):
    _, gm = mobilenet
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        assert_derived_matches(gm, gmgraph.sample(gm, generator), image(4), atol=1e-5)


def test_onnx_export_of_a_derived_subnet_matches_torch(tmp_path):
    torch.manual_seed(0)  # a small CNN: exporting all of MobileNetV2 takes seconds
    cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    gm = gmgraph.trace(supernetify(cnn, elastic_kernels((3, 5, 7)))).eval()
    plain = derive(gm, {"0": "7x7", "3": "5x5"})
    assert [m.kernel_size for m in plain.modules() if isinstance(m, nn.Conv2d)] == [(7, 7), (5, 5)]
    assert_onnx_parity(plain, image(6), tmp_path / "elastic_cnn.onnx")


def test_the_supernet_holds_the_largest_subnets_parameters_not_one_copy_per_kernel(mobilenet):
    model, gm = mobilenet
    assert parameters(gm) <= 1.05 * parameters(derive(gm, largest(gm)))
    copies = gmgraph.trace(supernetify(model, conv_kernels((3, 5, 7))))
    assert parameters(copies) > 1.09 * parameters(derive(copies, largest(copies)))  # 1.097x measured


def test_split_on_a_kernel_label_keeps_the_original_in_its_group(mobilenet):
    model, gm = mobilenet
    label = "features/2/conv/1/0"
    with_original, without = split(gm, label, [["3x3"], ["5x5", "7x7"]])
    with torch.no_grad(), gmgraph.use(with_original, original_arch(with_original)):
        assert torch.equal(with_original(image(7)), model(image(7)))
    with pytest.raises(SpaceError, match="no longer holds its original op"):
        original_arch(without)


def test_gradient_matching_scores_an_elastic_kernel_label(mobilenet):
    _, gm = mobilenet
    generator = torch.Generator().manual_seed(8)
    batches = [(image(9), torch.randint(10, (2,), generator=generator))]
    distances = gradient_matching(gm, "features/2/conv/1/0", batches, rounds=1)
    assert distances.shape == (3, 3) and torch.isfinite(distances).all() and distances[0, 2] > 0


def test_a_larger_original_kernel_offers_smaller_sizes_from_its_centre():
    conv = nn.Conv2d(2, 4, 7, padding=3)
    ops = elastic_kernels((3, 5))("stem", conv)
    assert list(ops) == ["3x3", "5x5", "7x7"] and ops.original == "7x7"
    assert torch.equal(ops["7x7"].conv.weight, conv.weight) and ops["7x7"].conv is not conv
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(ops["7x7"](x), conv(x), rtol=0, atol=1e-6)


def test_sizes_the_padding_cannot_give_are_not_offered_and_pointwise_convs_not_matched():
    rule = elastic_kernels((3, 5, 7))
    assert list(rule("valid", nn.Conv2d(2, 2, 5, padding=1))) == ["3x3", "5x5", "7x7"]
    assert list(rule("unpadded", nn.Conv2d(2, 2, 5, padding=0))) == ["5x5", "7x7"]
    assert rule("pointwise", nn.Conv2d(2, 2, 1)) is None
    assert rule("linear", nn.Linear(2, 2)) is None


@pytest.mark.parametrize("sizes", [(4,), (1, 3), (), ("3",)])
def test_bad_sizes_are_refused(sizes):
    with pytest.raises(SpaceError, match="odd kernel sizes"):
        elastic_kernels(sizes)


# --- elastic_expansions: one shared block per inverted-residual block, widened to the largest ratio


@pytest.fixture(scope="module", params=["mobilenet_v3_small", "efficientnet_b0"])
def expansions(request):
    from torchvision import models

    torch.manual_seed(0)
    model = getattr(models, request.param)(weights=None, num_classes=10)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()
    return model, gmgraph.trace(supernetify(model, elastic_expansions((3, 4, 6)))).eval()


def widest(gm) -> dict[str, str]:
    """Every block at its largest ratio (ops are named ``e<ratio>``, ``p`` for the point)."""
    return {label: max(ops, key=lambda op: float(op[1:].replace("p", ".")))
            for label, ops in gmgraph.space(gm).items()}


def test_elastic_expansions_original_arch_is_exactly_the_model(expansions):
    model, gm = expansions
    assert len(gmgraph.space(gm)) >= 10
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(image(10)), model(image(10)))


def test_elastic_expansions_derive_to_the_supernet_path_with_plain_modules(expansions):
    _, gm = expansions
    generator = torch.Generator().manual_seed(11)
    for arch in (gmgraph.sample(gm, generator), widest(gm)):
        plain = assert_derived_matches(gm, arch, image(12))
        assert not any(isinstance(m, (ConvView, NormView)) for m in plain.modules())


def test_elastic_expansions_hold_the_widest_subnets_parameters(expansions):
    _, gm = expansions
    assert parameters(gm) == parameters(derive(gm, widest(gm)))


def test_a_narrower_expansion_runs_the_first_hidden_channels_of_the_shared_block():
    from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig

    block = InvertedResidual(InvertedResidualConfig(8, 3, 32, 8, True, "HS", 1, 1, 1.0), nn.BatchNorm2d)
    ops = elastic_expansions((2, 6))("block", block)
    assert ops.original == "e4" and list(ops) == ["e4", "e2", "e6"]
    expand = {op: view.block[0][0] for op, view in ops.items()}
    assert [v.out_channels for v in expand.values()] == [32, 16, 48]
    assert len({id(v.conv) for v in expand.values()}) == 1 and expand["e2"].conv.out_channels == 48
    assert ops["e2"].block[2].fc1.in_channels == 16 and ops["e6"].block[2].fc2.out_channels == 48


def test_blocks_without_a_hidden_layer_and_bad_ratios_are_left_alone():
    from torchvision.models.mobilenetv2 import InvertedResidual

    assert elastic_expansions()("first", InvertedResidual(8, 8, 1, 1)) is None  # ratio 1: no hidden layer
    with pytest.raises(SpaceError, match="positive ratios"):
        elastic_expansions((0,))


# --- elastic_depth: a stage runs its first d blocks, every depth holding the same block objects


@pytest.fixture(scope="module")
def deep():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=10)
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.eval()
    return model, gmgraph.trace(supernetify(model, elastic_depth())).eval()


def test_elastic_depth_original_is_the_model_and_every_depth_derives_to_the_supernet_path(deep):
    model, gm = deep
    assert gmgraph.space(gm) == {f"layer{i}": ("d2", "d1") for i in range(1, 5)}
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(image(13)), model(image(13)))
    shallow = dict.fromkeys(gmgraph.space(gm), "d1")
    plain = assert_derived_matches(gm, shallow, image(13))
    assert parameters(gm) == parameters(model) > parameters(plain)  # each block counted once


def test_split_on_depth_gives_each_child_its_own_blocks(deep):
    _, gm = deep
    full, shallow = split(gm, "layer2", [["d2"], ["d1"]])
    first_block = [child.get_submodule("layer2").ops[op][0] for child, op in ((full, "d2"), (shallow, "d1"))]
    original = gm.get_submodule("layer2").ops["d1"][0]
    assert first_block[0] is not first_block[1] and original not in first_block
    assert all(torch.equal(b.conv1.weight, original.conv1.weight) for b in first_block)
    assert gmgraph.space(shallow)["layer2"] == ("d1",)


def test_only_blocks_that_keep_their_shape_are_left_off():
    from torchvision.models import resnet18

    stage = resnet18().layer2  # block 0 downsamples
    assert list(elastic_depth()("layer2", stage)) == ["d2", "d1"]
    assert elastic_depth(min_depth=2)("layer2", stage) is None
    assert elastic_depth()("seq", nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU())) is None
    with pytest.raises(SpaceError, match="min_depth"):
        elastic_depth(0)
