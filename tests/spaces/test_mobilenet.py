
import pytest
import torch

import gmgraph
from gmgraph.errors import ArchError
from gmgraph.passes import derive
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import get, mobilenet
from tests.conftest import assert_derived_matches, assert_onnx_parity, eval_graph


@pytest.fixture(scope="module")
def gm():
    return eval_graph(lambda: mobilenet.supernet(num_classes=10, width_mult=0.25))


def test_21_blocks_with_strides_widths_and_zero_where_shapes_allow():
    net = mobilenet.supernet(num_classes=10, width_mult=0.5)  # all stage widths distinct at 0.5
    blocks = list(net.blocks)
    assert [b.choice.label for b in blocks] == list(mobilenet.LABELS) and len(blocks) == 21
    first_of_stage = {1, 5, 9, 13, 17, 21}
    for i, block in enumerate(blocks, start=1):
        body = block.choice.ops["k7_e6"]
        depthwise = body[1][0]
        assert depthwise.kernel_size == (7, 7)
        assert depthwise.stride == ((2, 2) if i in {1, 5, 9, 17} else (1, 1))
        assert ("zero" in block.choice.ops) == (i not in first_of_stage) == block.residual
    assert blocks[0].choice.ops["k3_e6"][0][0].out_channels == 6 * 8  # 16 channels in, expansion 6
    assert [blocks[i - 1].choice.ops["k3_e3"][-1][0].out_channels for i in sorted(first_of_stage)] == [
        16, 24, 40, 48, 96, 160,
    ]
    assert net.first_conv[0].stride == (2, 2) and net.first_block[0][0].groups == 16
    assert net.classifier.in_features == 1280


def test_sampled_archs_derive_to_the_supernet_path(gm):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    for _ in range(4):
        assert_derived_matches(gm, gmgraph.sample(gm, generator), x, atol=1e-5)


def test_zero_leaves_the_identity_shortcut(gm):
    arch = {label: "zero" if "zero" in ops else "k3_e3" for label, ops in gmgraph.space(gm).items()}
    plain = assert_derived_matches(gm, arch, torch.randn(2, 3, 32, 32), atol=1e-5)
    kept = {name.split(".")[1] for name, _ in plain.named_modules() if name.startswith("blocks.")}
    assert kept == {"0", "4", "8", "16", "20"}  # block 13 is zero too: at 0.25, stages 3 and 4 are both 24 wide


def test_codec_and_registry(gm):
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(2))
    assert mobilenet.parse(mobilenet.to_str(arch)) == arch
    for bad in ("k3_e3", "-".join(["k9_e3"] * 21)):
        with pytest.raises(ArchError):
            mobilenet.parse(bad)
    spec = get("mobilenet")
    net = spec.build(width=4, cells=99, num_classes=7, in_channels=1)  # width 4 = width_mult 0.25; cells unused
    assert net.first_block[-1][0].out_channels == 8 and len(net.blocks) == 21
    graph = gmgraph.trace(net).eval()
    with torch.no_grad(), gmgraph.use(graph, arch):
        assert graph(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert spec.parse(spec.to_str(arch)) == arch and spec.shared is mobilenet.shared_parameters


def test_onnx_export_of_a_sampled_arch_matches_torch(gm, tmp_path):
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    assert_onnx_parity(derive(gm, arch), x, tmp_path / "mobilenet.onnx")


def test_gradient_matching_with_the_shared_preset(gm):
    generator = torch.Generator().manual_seed(5)
    batches = [(torch.randn(2, 3, 32, 32, generator=generator), torch.randint(10, (2,), generator=generator))]
    assert all(n.startswith("blocks.") for n in mobilenet.shared_parameters(gm, "block2"))
    distances = gradient_matching(gm, "block2", batches, rounds=1, shared=mobilenet.shared_parameters)
    assert distances.shape == (7, 7) and torch.isfinite(distances).all()
    assert distances.max() > 0
