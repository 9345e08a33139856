"""torchvision models as users bring them: freshly built (train mode), traced, searched.

Each model is built once per module and deep-copied by the tests that change it.
"""

import copy

import pytest
import torch
from torch import nn
from torchvision.models import (
    convnext_tiny,
    efficientnet_v2_s,
    mnasnet0_5,
    mobilenet_v3_large,
    mobilenet_v3_small,
)
from torchvision.models.efficientnet import FusedMBConv, MBConv
from torchvision.ops import StochasticDepth
from torchvision.ops.stochastic_depth import stochastic_depth

import gmgraph
from gmgraph.passes import derive
from gmgraph.spaces import depthwise_kernels, inverted_residual_expansions, original_arch, supernetify
from tests.conftest import assert_derived_matches, randomize_batchnorm

BUILDS = {
    "efficientnet_v2_s": efficientnet_v2_s,
    "convnext_tiny": convnext_tiny,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mnasnet0_5": mnasnet0_5,
}


@pytest.fixture(scope="module")
def pristine():
    """name -> the model as torchvision builds it (train mode), BNs with random statistics; built once."""
    built = {}

    def get(name: str) -> nn.Module:
        if name not in built:
            torch.manual_seed(0)
            built[name] = BUILDS[name](weights=None, num_classes=10)
            randomize_batchnorm(built[name], torch.Generator().manual_seed(1))
        assert built[name].training
        return built[name]

    return get


def batch(seed: int) -> torch.Tensor:
    # 64x64: EfficientNet's last feature map is 2x2, so train-mode BN has more than one value per channel.
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def stochastic_depth_nodes(gm):
    return [n for n in gm.graph.nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), StochasticDepth)]


# ---- train/eval mode is not frozen into the graph (StochasticDepth's fx-wrapped stochastic_depth) ----

STOCHASTIC = ["efficientnet_v2_s", "convnext_tiny"]


@pytest.mark.parametrize("name", STOCHASTIC)
def test_traced_in_train_mode_then_eval_is_the_models_eval(pristine, name):
    model = copy.deepcopy(pristine(name))
    gm = gmgraph.trace(model)  # train mode, as built
    assert stochastic_depth_nodes(gm), "StochasticDepth should stay a module that reads its own flag"
    # No call of the fx-wrapped function with a frozen `training` argument is left.
    assert not any(n.op == "call_function" and n.target is stochastic_depth for n in gm.graph.nodes)
    x = batch(0)
    with torch.no_grad():
        expected = model.eval()(x)
        gm.eval()
        first, second = gm(x), gm(x)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_train_mode_graph_drops_paths_as_the_model_does(pristine, name):
    model = copy.deepcopy(pristine(name))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0  # the classifier's dropout would hide whether stochastic depth runs
    gm = gmgraph.trace(model.eval()).train()  # traced in eval mode, run in train mode
    seen = []
    for node in stochastic_depth_nodes(gm):
        module = gm.get_submodule(node.target)
        module.register_forward_hook(lambda m, args, out: seen.append((m.training, m.p, torch.equal(out, args[0]))))
    x = batch(1)
    with torch.no_grad():
        torch.manual_seed(5)
        a = gm(x)
        torch.manual_seed(5)
        expected = model(x)  # shares gm's (train-mode) modules and draws the same random numbers
        torch.manual_seed(6)
        b = gm(x)
    torch.testing.assert_close(a, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(a, b)  # different drops under different seeds
    assert seen and all(training for training, _, _ in seen)
    assert all(not unchanged for _, p, unchanged in seen if p > 0)  # dropped or rescaled rows
    for node in stochastic_depth_nodes(gm):
        gm.get_submodule(node.target).p = 0.0
    with torch.no_grad():
        torch.manual_seed(5)
        c = gm(x)
        torch.manual_seed(6)
        d = gm(x)
    assert torch.equal(c, d)  # without stochastic depth, train mode is deterministic


# ---- the blocks users bring: rules for each, with original-arch parity ----

# name -> (rule, number of decisions, labels and their ops)
SPACES = {
    "mobilenet_v3_small": (inverted_residual_expansions(), 11, {
        "features/1": ("e1", "e3", "e6"),  # stride 2: no skip
        "features/3": ("e3p67", "e3", "e6", "skip"),  # 88 / 24
    }),
    "mobilenet_v3_large": (inverted_residual_expansions(), 15, {"features/1": ("e1", "e3", "e6", "skip")}),
    "mnasnet0_5": (inverted_residual_expansions(), 16, {
        "layers/8/0": ("e3", "e6"), "layers/8/1": ("e3", "e6", "skip"),
    }),
    # 10 FusedMBConv blocks (ratios 1 and 4) and 30 MBConv blocks.
    "efficientnet_v2_s": (inverted_residual_expansions(ratios=(1, 4, 6)), 40, {
        "features/1/0": ("e1", "e4", "e6", "skip"), "features/2/0": ("e4", "e1", "e6"),
        "features/4/0": ("e4", "e1", "e6"),
    }),
    "convnext_tiny": (depthwise_kernels(), 18, {"features/1/0/block/0": ("7x7", "3x3", "5x5")}),
}


@pytest.fixture(scope="module", params=list(SPACES))
def searched(request, pristine):
    """(name, model in eval mode, supernet traced in train mode and then put in eval mode)."""
    model = pristine(request.param)
    gm = gmgraph.trace(supernetify(model, SPACES[request.param][0]))  # both in train mode
    return request.param, copy.deepcopy(model).eval(), gm.eval()


def test_every_block_is_a_decision(searched):
    name, _, gm = searched
    _, count, ops = SPACES[name]
    current = gmgraph.space(gm)
    assert len(current) == count
    assert {label: current[label] for label in ops} == ops
    if name == "efficientnet_v2_s":
        fused = gmgraph.choices(gm)["features/1/0"][0]
        assert all(isinstance(op, FusedMBConv) for op in list(fused.ops.values())[:3])
        assert all(isinstance(op, MBConv) for op in gmgraph.choices(gm)["features/4/0"][0].ops.values())
    if name == "convnext_tiny":  # CNBlocks are traced through: their stochastic depth must stay a module
        assert len(stochastic_depth_nodes(gm)) == 18


def test_original_arch_derives_to_the_model(searched):
    _, model, gm = searched
    x = batch(2)
    arch = original_arch(gm)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(derive(gm, arch)(x), expected, rtol=0, atol=1e-5)
        with gmgraph.use(gm, arch):
            first, second = gm(x), gm(x)
    torch.testing.assert_close(first, expected, rtol=0, atol=1e-5)
    assert torch.equal(first, second)


def test_a_sampled_arch_derives_and_runs(searched):
    _, _, gm = searched
    generator = torch.Generator().manual_seed(3)
    arch = gmgraph.sample(gm, generator)
    assert arch != original_arch(gm)
    plain = assert_derived_matches(gm, arch, batch(4), atol=1e-5)
    with torch.no_grad():
        assert plain(batch(5)).shape == (2, 10)
