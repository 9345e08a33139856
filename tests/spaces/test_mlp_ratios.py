"""mlp_ratios: the hidden width of transformer MLPs (torchvision's ViT MLPBlock, Swin's MLP) as a Choice."""

import pytest
import torch
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import MLPBlock
from torchvision.ops import MLP

import gmgraph
from gmgraph.errors import SpaceError
from gmgraph.passes import derive
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import mlp_ratios, original_arch, supernetify
from tests.conftest import assert_derived_matches


def tiny_vit() -> nn.Module:
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                             num_classes=10)


def narrow_swin_t() -> nn.Module:
    """torchvision's swin_t layout (4 stages of 2, 2, 6, 2 blocks, 7x7 windows, MLP ratio 4) at a third of its
    width (embed_dim 32, 32 channels per head): the same 12 MLPs, 9x fewer parameters to run and differentiate."""
    return SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2, 6, 2], num_heads=[1, 2, 4, 8],
                           window_size=[7, 7], stochastic_depth_prob=0.2, num_classes=10)


# name -> (model, rule, number of decisions, one label and its ops, a wider op)
MODELS = {
    "vit": (tiny_vit, mlp_ratios((1, 4)), 2, ("encoder/layers/encoder_layer_1/mlp", ("e2", "e1", "e4")), "e4"),
    "swin_t": (narrow_swin_t, mlp_ratios((2, 4, 5)), 12,
               ("features/5/3/mlp", ("e4", "e2", "e5")), "e5"),
}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    build, rule, _, _, _ = MODELS[request.param]
    torch.manual_seed(0)
    model = build().eval()
    for m in model.modules():  # ViT's MLPBlock starts with biases ~1e-6: make them matter
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.normal_(m.bias, std=0.1)
    gm = gmgraph.trace(supernetify(model, rule)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    return request.param, gm, x, expected


def test_one_decision_per_mlp_labelled_by_its_name(case):
    name, gm, _, _ = case
    _, _, count, (label, ops), _ = MODELS[name]
    current = gmgraph.space(gm)
    assert len(current) == count and current[label] == ops


def test_original_and_wider_mlps_derive_to_the_model(case):
    name, gm, x, expected = case
    arch = original_arch(gm)
    wider = {label: MODELS[name][4] for label in arch}
    sizes = []
    for chosen in (arch, wider):
        net = derive(gm, chosen).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-5)  # zero columns: exact
        sizes.append(sum(p.numel() for p in net.parameters()))
    assert sizes[1] > sizes[0]


def test_sampled_archs_derive_to_the_supernet_path(case):
    _, gm, x, _ = case
    generator = torch.Generator().manual_seed(2)
    for _ in range(2):
        net = assert_derived_matches(gm, gmgraph.sample(gm, generator), x, atol=1e-5)
        assert net(x).shape == (2, 10)


def test_gradient_matching_scores_an_mlp_decision(case):
    name, gm, _, _ = case
    label = MODELS[name][3][0]
    generator = torch.Generator().manual_seed(3)
    batches = [(torch.randn(2, 3, 32, 32, generator=generator), torch.randint(10, (2,), generator=generator))]
    distances = gradient_matching(gm, label, batches, rounds=1)
    assert distances.shape == (3, 3) and torch.isfinite(distances).all()


def test_wider_copies_the_weights_and_its_new_units_train():
    torch.manual_seed(0)
    mlp = MLPBlock(8, 16, 0.1)
    ops = mlp_ratios((1, 3))("mlp", mlp)
    assert list(ops) == ["e2", "e1", "e3"] and ops["e2"] is mlp
    wide, narrow = ops["e3"], ops["e1"]
    assert type(wide) is MLPBlock and wide[2].p == 0.1 and isinstance(wide[1], nn.GELU)
    assert [wide[0].out_features, wide[3].in_features, narrow[0].out_features] == [24, 24, 8]
    assert torch.equal(wide[0].weight[:16], mlp[0].weight) and torch.equal(wide[3].weight[:, :16], mlp[3].weight)
    assert not wide[3].weight[:, 16:].any() and wide[0].weight[16:].abs().sum() > 0  # fresh rows, zero columns
    assert torch.equal(narrow[0].weight, mlp[0].weight[:8]) and torch.equal(narrow[3].weight, mlp[3].weight[:, :8])
    assert torch.equal(narrow[3].bias, mlp[3].bias) and narrow[0].weight is not mlp[0].weight
    x = torch.randn(4, 5, 8)
    torch.testing.assert_close(wide.eval()(x), mlp.eval()(x), rtol=0, atol=1e-6)
    wide(x).square().sum().backward()
    assert wide[3].weight.grad[:, 16:].abs().sum() > 0  # not a dead saddle: the new units can start to learn
    assert mlp[0].weight.grad is None  # the original is not shared with its candidates


def test_what_mlp_ratios_matches_and_refuses():
    rule = mlp_ratios((2, 4))
    swin_mlp = MLP(6, [24, 6], activation_layer=nn.GELU, inplace=None)
    assert list(rule("mlp", swin_mlp)) == ["e4", "e2"]
    assert rule("mlp", MLP(6, [12], activation_layer=nn.GELU)) is None  # one Linear: no hidden width
    assert rule("mlp", MLP(6, [12, 12, 6])) is None  # two hidden layers
    assert rule("mlp", MLP(6, [12, 6], norm_layer=nn.LayerNorm)) is None  # a norm over the hidden units
    assert rule("seq", nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 6))) is None
    assert mlp_ratios((2,))("mlp", MLP(6, [12, 6])) is None  # nothing besides the original
    assert list(mlp_ratios((2.1, 3))("mlp", MLP(5, [10, 5]))) == ["e2", "e3"]  # 2.1 * 5 rounds to the original
    for ratios in ((), (0,), (-1, 2), ("4",)):
        with pytest.raises(SpaceError, match="positive ratios"):
            mlp_ratios(ratios)
