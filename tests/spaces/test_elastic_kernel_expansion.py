"""Expansion and depthwise kernel of one MBConv from ``supernetify`` rules, as in Once-for-All's blocks.

``[elastic_expansions(), elastic_kernels()]``: each expansion candidate runs views of one widened
block, and the kernel rule visits those views: every candidate holds a kernel Choice of the same
label, whose ops are views of ONE enlarged, widened depthwise conv.
"""

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

import gmgraph
from gmgraph import label_sizes
from gmgraph.elastic import is_view
from gmgraph.graph import choices
from gmgraph.label_sizes import label_kind
from gmgraph.passes import derive, split
from gmgraph.scores import gradient_matching
from gmgraph.spaces import elastic_depth, elastic_expansions, elastic_kernels, original_arch, supernetify
from gmgraph.spaces.channel_sort import before_phase
from tests.conftest import assert_derived_matches, randomize_batchnorm

KERNELS = ("3x3", "5x5", "7x7")
RULES = [elastic_expansions((3, 4, 6)), elastic_kernels((3, 5, 7))]


def image(seed: int, size: int = 32) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    model = mobilenet_v2(num_classes=10, width_mult=0.25).eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    return model, gmgraph.trace(supernetify(model, RULES)).eval()


def largest(gm) -> dict[str, str]:
    return {label: "7x7" if ops[0].endswith("x3") else "e6" for label, ops in gmgraph.space(gm).items()}


def test_each_block_chooses_its_expansion_and_its_depthwise_kernel(mobilenet):
    _, gm = mobilenet
    space = gmgraph.space(gm)
    blocks = range(2, 18)
    assert list(space) == ["features/0/0", "features/1/conv/0/0",
                           *(label for b in blocks for label in (f"features/{b}", f"features/{b}/conv/1/0"))]
    assert all(space[f"features/{b}/conv/1/0"] == KERNELS and space[f"features/{b}"] == ("e6", "e3", "e4")
               for b in blocks)
    expansion = gm.get_submodule("features.2")
    kernels = [candidate.conv[1][0] for candidate in expansion.ops.values()]
    assert all(isinstance(k, gmgraph.Choice) and k.label == "features/2/conv/1/0" for k in kernels)
    shared = {id(view.conv) for k in kernels for view in k.ops.values()}
    assert len(shared) == 1  # one conv behind every kernel of every width
    conv = kernels[0].ops["3x3"].conv
    assert conv.kernel_size == (7, 7) and conv.out_channels == expansion.hidden_width
    assert [k.ops["5x5"].out_channels for k in kernels] == [int(w) for w in (conv.out_channels,
                                                                             conv.out_channels / 2,
                                                                             conv.out_channels * 4 / 6)]


def test_the_original_arch_derives_the_model_itself(mobilenet):
    model, gm = mobilenet
    plain = derive(gm, original_arch(gm)).eval()
    rebuilt = mobilenet_v2(num_classes=10, width_mult=0.25).eval()
    rebuilt.load_state_dict(plain.state_dict(), strict=True)  # exactly the model's keys and shapes
    with torch.no_grad():
        assert torch.equal(plain(image(1)), model(image(1))) and torch.equal(rebuilt(image(1)), model(image(1)))


def test_the_supernet_holds_exactly_the_largest_subnets_parameters(mobilenet):
    _, gm = mobilenet
    groups = choices(gm)
    assert [(label_kind(groups[label]), label_sizes.largest(groups[label])) for label in
            ("features/4", "features/4/conv/1/0")] == [("width", "e6"), ("kernel", "7x7")]  # as the sandwich sees them
    assert {label: label_sizes.largest(group) for label, group in groups.items()} == largest(gm)
    widest = derive(gm, largest(gm))
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in widest.parameters())


def test_sampled_paths_derive_to_what_the_supernet_runs_at_their_kernel_and_width(mobilenet):
    _, gm = mobilenet
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        arch = gmgraph.sample(gm, generator)
        plain = assert_derived_matches(gm, arch, image(2), atol=1e-5)
        assert not any(is_view(m) for m in plain.modules())
        depthwise = plain.get_submodule("features.5.conv.1.0")
        hidden = {"e3": 24, "e4": 32, "e6": 48}[arch["features/5"]]  # 8 channels in, widths as the model rounds
        assert depthwise.kernel_size == (int(arch["features/5/conv/1/0"][0]),) * 2
        assert depthwise.out_channels == depthwise.groups == hidden


def test_a_split_on_the_kernel_label_restricts_it_in_every_expansion_and_children_inherit(mobilenet):
    _, gm = mobilenet
    small, large = split(gm, "features/3/conv/1/0", [["3x3"], ["5x5", "7x7"]])
    assert gmgraph.space(small)["features/3/conv/1/0"] == ("3x3",)
    assert all(list(k.ops) == ["5x5", "7x7"] for k in gmgraph.graph.choices(large)["features/3/conv/1/0"])
    assert not set(map(id, small.parameters())) & set(map(id, large.parameters()))
    arch = {**original_arch(gm), "features/3": "e4", "features/3/conv/1/0": "5x5"}
    with torch.no_grad(), gmgraph.use(gm, arch), gmgraph.use(large, arch):
        assert torch.equal(large(image(4)), gm(image(4)))


def test_with_depth_too_every_block_of_a_stage_nests_both():
    torch.manual_seed(0)
    model = mobilenet_v2(num_classes=10, width_mult=0.25).eval()
    gm = gmgraph.trace(supernetify(model, [elastic_depth(), *RULES])).eval()
    space = gmgraph.space(gm)
    assert space["features/4"] == ("d3", "d2", "d1")
    assert space["features/5"] == ("e6", "e3", "e4") and space["features/5/conv/1/0"] == KERNELS
    with torch.no_grad():
        assert torch.equal(derive(gm, original_arch(gm)).eval()(image(5)), model(image(5)))
    assert_derived_matches(gm, gmgraph.sample(gm, torch.Generator().manual_seed(1)), image(6), atol=1e-5)


@pytest.fixture
def block():
    """Two MBConvs at 8x8: small enough to score and sort."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), InvertedResidual(8, 8, 1, 6), InvertedResidual(8, 16, 2, 6),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    return gmgraph.trace(supernetify(model, RULES))


def test_gradient_matching_scores_a_kernel_label_nested_in_the_expansions(block):
    generator = torch.Generator().manual_seed(0)
    conv = block.get_submodule("2").ops["e6"].conv[1][0].ops["7x7"].conv
    with torch.no_grad():  # as after training: the enlarged kernel's ring is no longer zero (then all sizes agree)
        conv.weight.add_(0.1 * torch.randn(conv.weight.shape, generator=generator))
    batches = [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(10, (8,), generator=generator))
               for _ in range(2)]
    distances = gradient_matching(block.train(), "2/conv/1/0", batches, rounds=2)
    assert distances.shape == (3, 3) and torch.all(distances.diagonal() == 0)
    assert torch.all(distances[~torch.eye(3, dtype=torch.bool)] > 0)  # each kernel sends its own gradient


def test_sorting_the_hidden_channels_moves_the_kernels_too_and_keeps_the_widest_subnet(block):
    block.eval()
    widest = largest(block)
    with torch.no_grad(), gmgraph.use(block, widest):
        before = block(image(7, 8))
    assert before_phase(block, "width") == "sorted the hidden channels of 2 elastic expansion block(s) by importance"
    with torch.no_grad(), gmgraph.use(block, widest):
        torch.testing.assert_close(block(image(7, 8)), before, rtol=0, atol=1e-5)

