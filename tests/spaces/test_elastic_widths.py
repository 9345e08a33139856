"""``elastic_widths``: each torchvision ResNet block chooses its inner width, on its own weights (OFA-ResNet)."""

import pytest
import torch
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

import gmgraph
from gmgraph.errors import SpaceError
from gmgraph.graph import choices
from gmgraph.label_sizes import label_kind, largest, smallest
from gmgraph.passes import derive, split
from gmgraph.spaces import (
    channel_sort,
    elastic_depth,
    elastic_kernels,
    elastic_widths,
    get,
    original_arch,
    supernetify,
)
from tests.conftest import assert_derived_matches, randomize_batchnorm

WIDTHS = ("w1", "w0p75", "w0p5")


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def model(build):
    torch.manual_seed(0)
    net = build(num_classes=10).eval()
    randomize_batchnorm(net, torch.Generator().manual_seed(0))
    return net


@pytest.fixture(scope="module")
def resnet():
    net = model(resnet18)
    return net, gmgraph.trace(supernetify(net, elastic_widths())).eval()


def test_each_block_chooses_its_width_and_the_supernet_is_the_model_itself(resnet):
    net, gm = resnet
    space = gmgraph.space(gm)
    assert list(space) == [f"layer{s}/{b}" for s in range(1, 5) for b in range(2)]
    assert all(ops == WIDTHS for ops in space.values())
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in net.parameters())
    block = gm.get_submodule("layer3.1")
    assert block.ops["w0p5"].conv1.conv is block.ops["w1"].conv1.conv  # one weight for every width


@pytest.mark.parametrize("build", [resnet18, resnet50], ids=["resnet18", "resnet50"])
def test_the_original_arch_derives_the_model_itself(resnet, build):
    net, gm = resnet if build is resnet18 else (model(build), None)
    gm = gm if gm is not None else gmgraph.trace(supernetify(net, elastic_widths())).eval()
    plain = derive(gm, original_arch(gm)).eval()
    rebuilt = build(num_classes=10).eval()
    rebuilt.load_state_dict(plain.state_dict(), strict=True)  # exactly the model's keys and shapes
    with torch.no_grad():
        assert torch.equal(plain(image(1)), net(image(1)))


def test_sampled_paths_derive_to_what_the_supernet_runs_at_their_widths(resnet):
    _, gm = resnet
    generator = torch.Generator().manual_seed(2)
    for width in WIDTHS:  # each width of one block, the others drawn
        arch = {**gmgraph.sample(gm, generator), "layer2/1": width}
        plain = assert_derived_matches(gm, arch, image(2), atol=1e-5)
        inner = {"w1": 128, "w0p75": 96, "w0p5": 64}[arch["layer2/1"]]  # multiples of 8 from 32 channels on
        block = plain.get_submodule("layer2.1")
        assert (block.conv1.out_channels, block.bn1.num_features, block.conv2.in_channels) == (inner,) * 3
        assert block.conv2.out_channels == block.bn2.num_features == 128  # the block's output keeps its width


def test_a_bottlenecks_two_inner_layers_take_one_width():
    net = model(resnet50)
    block = elastic_widths((0.25,))("layer1.0", net.layer1[0])
    assert list(block) == ["w1", "w0p25"]
    view = block["w0p25"]
    assert (view.conv1.out_channels, view.conv2.in_channels, view.conv2.out_channels, view.conv3.in_channels) == (16,) * 4
    shortcut = net.layer1[0].downsample
    assert view.bn3 is net.layer1[0].bn3 and view.downsample[0] is shortcut[0]  # outside: shared as is


def test_with_depth_and_kernels_each_block_nests_its_width_and_its_kernels():
    net = model(resnet18)
    gm = gmgraph.trace(supernetify(net, [elastic_depth(), elastic_widths(), elastic_kernels((3, 5))])).eval()
    space = gmgraph.space(gm)
    assert space["layer2"] == ("d2", "d1") and space["layer2/1"] == WIDTHS and space["layer2/1/conv2"] == ("3x3", "5x5")
    kernels = [op.conv2 for op in gm.get_submodule("layer2").ops["d2"][0].ops.values()]
    assert len({id(view.conv) for k in kernels for view in k.ops.values()}) == 1  # one 5x5 conv in every width
    with torch.no_grad():
        assert torch.equal(derive(gm, original_arch(gm)).eval()(image(3)), net(image(3)))
    assert_derived_matches(gm, gmgraph.sample(gm, torch.Generator().manual_seed(4)), image(4), atol=1e-5)


def test_a_split_on_a_width_gives_children_their_own_weights_with_the_parents_values(resnet):
    _, gm = resnet
    narrow, wide = split(gm, "layer1/1", [["w0p5"], ["w1", "w0p75"]])
    assert gmgraph.space(narrow)["layer1/1"] == ("w0p5",) and gmgraph.space(wide)["layer1/1"] == ("w1", "w0p75")
    assert not set(map(id, narrow.parameters())) & set(map(id, wide.parameters()))
    arch = {**original_arch(gm), "layer1/1": "w0p5"}
    with torch.no_grad(), gmgraph.use(gm, arch), gmgraph.use(narrow, arch):
        assert torch.equal(narrow(image(5)), gm(image(5)))


def test_the_sandwich_and_shrinking_see_a_width_from_the_channels(resnet):
    _, gm = resnet
    group = choices(gm)["layer4/0"]
    assert label_kind(group) == "width" and (largest(group), smallest(group)) == ("w1", "w0p5")


def test_bad_fractions_are_refused_and_grouped_convs_left_alone():
    with pytest.raises(SpaceError, match="fractions between 0 and 1"):
        elastic_widths((0.5, 1.0))
    grouped = Bottleneck(64, 16, groups=4, base_width=16)  # ResNeXt: a grouped 3x3 cannot be sliced
    assert elastic_widths()("layer1.0", grouped) is None


def test_the_cli_rule_name_builds_it():
    gm = gmgraph.trace(get("torchvision.models:resnet18", "elastic_widths").make(16, 5, 10, 3))
    assert gmgraph.space(gm)["layer1/0"] == WIDTHS


def _inner_layers_sorted(gm) -> list[bool]:
    """Per elastic-width block: whether each inner layer's channels fall in importance (the L1 norm of the weights
    reading them), as OFA-ResNet's re-sort leaves them."""
    out = []
    for choice in channel_sort.inner_width_choices(gm):
        block = choice.ops["w1"]
        readers = (block.conv2, block.conv3) if isinstance(block, Bottleneck) else (block.conv2,)
        for reader in readers:
            conv = reader.conv if hasattr(reader, "conv") else next(iter(reader.ops.values())).conv
            norms = conv.weight.abs().sum((0, 2, 3))
            out.append(bool((norms[:-1] >= norms[1:]).all()))
    return out


# A re-sort permutes the channels a reader sums over, so the widest network's outputs move by float rounding only:
# measured <= 1e-6 of the largest logit here (this CPU); 1e-5 still catches a channel moved on one side only (10%).
@pytest.mark.parametrize("case", ["basic", "bottleneck", "nested"])
def test_re_sorting_keeps_the_widest_network_and_puts_the_most_important_inner_channels_first(case):
    build = {"basic": lambda num_classes: ResNet(BasicBlock, [1, 2, 1, 1], num_classes=num_classes),
             "bottleneck": lambda num_classes: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=num_classes),
             "nested": resnet18}[case]
    rules = [elastic_depth(), elastic_widths(), elastic_kernels((3, 5))] if case == "nested" else [elastic_widths()]
    gm = gmgraph.trace(supernetify(model(build), rules)).eval()
    blocks = {"basic": 5, "bottleneck": 4, "nested": 8}[case]
    with torch.no_grad():
        before = derive(gm, original_arch(gm)).eval()(image(6))
    assert not all(_inner_layers_sorted(gm))

    assert channel_sort.before_phase(gm, "width") == \
        f"sorted the inner channels of {blocks} elastic-width ResNet block(s) by importance"

    assert all(_inner_layers_sorted(gm)) and len(_inner_layers_sorted(gm)) == blocks * (2 if case == "bottleneck" else 1)
    with torch.no_grad():
        after = derive(gm, original_arch(gm)).eval()(image(6))
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5 * before.abs().max().item())
    assert channel_sort.before_phase(gm, "kernel") is None


def test_re_sorting_moves_the_optimizers_momentum_with_the_channels():
    gm = gmgraph.trace(supernetify(model(lambda num_classes: ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)),
                                   elastic_widths())).train()
    optimizer = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
    with gmgraph.use(gm, original_arch(gm)):
        gm(image(7)).square().mean().backward()
    optimizer.step()
    block = channel_sort.inner_width_choices(gm)[0].ops["w1"]
    conv1, conv2 = block.conv1.conv, block.conv2.conv
    order = conv2.weight.abs().sum((0, 2, 3)).argsort(descending=True)
    momentum = optimizer.state[conv1.weight]["momentum_buffer"].clone()
    assert channel_sort.sort_inner_widths(gm, optimizer) == 4
    assert torch.equal(optimizer.state[conv1.weight]["momentum_buffer"], momentum[order])
