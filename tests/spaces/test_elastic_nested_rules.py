"""Depth with kernels or expansions in one stage, from ``supernetify`` rules: decisions nested in the depth.

A depth Choice's candidates hold the stage's own blocks, so the rules after it reach those blocks and
their convs; each nested Choice is one module shared by every depth that runs it, as in the OFA space.
"""

import pytest
import torch
from torchvision.models import mobilenet_v2, resnet18

import gmgraph
from gmgraph.passes import derive, split
from gmgraph.spaces import elastic_depth, elastic_expansions, elastic_kernels, original_arch, supernetify
from tests.conftest import assert_derived_matches, randomize_batchnorm


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = resnet18(num_classes=10).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    return model, gmgraph.trace(supernetify(model, [elastic_depth(), elastic_kernels((3, 5, 7))])).eval()


def test_every_block_conv_of_a_depth_stage_gets_elastic_kernels_nested_in_the_depth(resnet):
    _, gm = resnet
    space = gmgraph.space(gm)
    blocks = [f"layer{s}/{b}/conv{c}" for s in range(1, 5) for b in range(2) for c in (1, 2)]
    assert list(space) == ["conv1", *(label for s in range(1, 5) for label in
                                      (f"layer{s}", *(b for b in blocks if b.startswith(f"layer{s}/"))))]
    assert all(space[label] == ("3x3", "5x5", "7x7") for label in blocks)
    assert all(space[f"layer{s}"] == ("d2", "d1") for s in range(1, 5))
    # block 0 runs at both depths: its kernel Choice is one module in both candidates
    stage = gm.get_submodule("layer1")
    assert stage.ops["d2"][0].conv1 is stage.ops["d1"][0].conv1
    assert isinstance(stage.ops["d1"][0].conv1, gmgraph.Choice) and stage.ops["d1"][0].conv1.label == "layer1/0/conv1"


def test_the_original_arch_derives_the_model_itself(resnet):
    model, gm = resnet
    plain = derive(gm, original_arch(gm)).eval()
    rebuilt = resnet18(num_classes=10).eval()
    rebuilt.load_state_dict(plain.state_dict(), strict=True)  # exactly the model's keys and shapes
    with torch.no_grad():
        assert torch.equal(rebuilt(image(1)), model(image(1))) and torch.equal(plain(image(1)), model(image(1)))


def test_sampled_paths_derive_to_what_the_supernet_runs(resnet):
    _, gm = resnet
    generator = torch.Generator().manual_seed(3)
    archs = [gmgraph.sample(gm, generator) for _ in range(3)]
    assert {arch["layer2"] for arch in archs} == {"d1", "d2"}  # both depths, with their nested kernels
    for arch in archs:
        plain = assert_derived_matches(gm, arch, image(2), atol=1e-5)
        convs = {name: m.kernel_size for name, m in plain.named_modules() if name.endswith(("conv1", "conv2"))}
        assert convs["layer1.0.conv1"] == (int(arch["layer1/0/conv1"][0]),) * 2
        assert ("layer2.1.conv1" in convs) == (arch["layer2"] == "d2")  # a block left off keeps no conv


def test_split_on_a_nested_kernel_label_gives_each_child_its_own_shared_tensor(resnet):
    _, gm = resnet
    small, large = split(gm, "layer1/1/conv1", [["3x3"], ["5x5", "7x7"]])
    assert gmgraph.space(small)["layer1/1/conv1"] == ("3x3",) and gmgraph.space(large)["layer1"] == ("d2", "d1")
    assert not set(map(id, small.parameters())) & set(map(id, large.parameters()))
    arch = {**original_arch(gm), "layer1/1/conv1": "5x5"}
    with torch.no_grad(), gmgraph.use(gm, arch), gmgraph.use(large, arch):
        assert torch.equal(large(image(4)), gm(image(4)))  # the child inherits the parent's weights


def test_expansions_nest_in_a_flat_stage_and_the_first_block_names_its_rule():
    torch.manual_seed(0)
    model = mobilenet_v2(num_classes=10).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    gm = gmgraph.trace(supernetify(model, [elastic_depth(), elastic_expansions((3, 4, 6))])).eval()
    space = gmgraph.space(gm)
    # features.2 is both stage 2's depth (named after its first block) and that block's expansion
    assert space["features/2"] == ("d2", "d1") and space["features/2/elastic_expansions"][0] == "e6"
    assert space["features/3"][0] == "e6" and space["features/4"] == ("d3", "d2", "d1")
    stage = gm.get_submodule("features.2")
    assert stage.ops["d2"][0] is stage.ops["d1"][0]  # one expansion Choice in both depths
    with torch.no_grad():
        assert torch.equal(derive(gm, original_arch(gm)).eval()(image(5)), model(image(5)))
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(1))
    assert_derived_matches(gm, arch, image(6), atol=1e-5)
