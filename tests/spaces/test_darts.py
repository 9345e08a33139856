
import pytest
import torch

import gmgraph
from gmgraph.choice import Zero
from gmgraph.errors import ArchError, SpaceError
from gmgraph.passes import derive
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import darts, get
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def seeded_graph(**kw) -> torch.fx.GraphModule:
    torch.manual_seed(0)
    gm = gmgraph.trace(darts.supernet(C=4, layers=3, **kw))
    randomize_batchnorm(gm, torch.Generator().manual_seed(1))
    return gm.eval()


@pytest.fixture(scope="module")
def gm():
    return seeded_graph()


def single_path(gm, arch, x):
    with torch.no_grad(), gmgraph.use(gm, arch):
        return gm(x)


def test_space_labels_ops_and_reduction_positions(gm):
    current = gmgraph.space(gm)
    assert tuple(current) == darts.LABELS
    assert sum(label.startswith("normal/") for label in current) == 14
    assert all(ops == darts.OPS for ops in current.values())
    net = darts.supernet(C=2, layers=8)
    kinds = [cell.edges[0].label.split("/")[0] for cell in net.cells]
    assert kinds == ["normal", "normal", "reduce", "normal", "normal", "reduce", "normal", "normal"]
    assert net.stem[0].out_channels == 6  # 3 * C stem channels, as in the DARTS search net
    assert net.classifier.in_features == 4 * 4 * 2  # four nodes of 4C after two reductions


def test_gm_nas_space_drops_none_and_bn_defaults():
    net = darts.supernet(C=2, layers=3, ops=darts.OPS[1:])
    assert gmgraph.space(gmgraph.trace(net))["reduce/2<-0"] == darts.OPS[1:]
    cell_bns = [m for n, m in net.named_modules() if n.startswith("cells.") and isinstance(m, torch.nn.BatchNorm2d)]
    assert cell_bns and not any(bn.affine for bn in cell_bns)
    affine = darts.supernet(C=2, layers=3, affine=True)
    assert all(m.affine for n, m in affine.named_modules() if n.startswith("cells.") and isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(SpaceError, match="DARTS ops"):
        darts.supernet(ops=("none", "conv_9x9"))


def test_reduction_edges_halve_the_resolution_with_every_op():
    cell = darts.Cell(8, 8, 4, reduction=True, reduction_prev=False, ops=darts.OPS, affine=False, pool_bn=True).eval()
    x = torch.randn(2, 4, 4, 4)
    for edge in cell.edges[:2]:  # edges from the two inputs are strided
        assert isinstance(edge.ops["none"], Zero) and edge.ops["none"].stride == 2
        assert isinstance(edge.ops["skip_connect"], darts.FactorizedReduce)
        assert {tuple(op(x).shape) for op in edge.ops.values()} == {(2, 4, 2, 2)}
    odd = torch.randn(1, 4, 5, 5)
    assert darts.FactorizedReduce(4, 4)(odd).shape == (1, 4, 3, 3)  # odd sizes keep DARTS's ceil(n/2)


def test_sampled_archs_derive_to_the_supernet_path(gm):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=generator)
    for _ in range(8):
        assert_derived_matches(gm, gmgraph.sample(gm, generator), x, atol=1e-5)


def test_darts_arch_keeps_the_top_two_edges_by_non_none_strength():
    space = {f"normal/3<-{j}": ("none", "skip_connect", "sep_conv_3x3") for j in range(3)}
    alphas = {
        "normal/3<-0": [9.0, 1.0, 0.0],   # none dominates: weak once none is excluded
        "normal/3<-1": [0.0, 0.0, 2.0],   # strongest non-none weight
        "normal/3<-2": [0.0, 1.0, 0.0],
    }
    assert darts.darts_arch(alphas, space) == {
        "normal/3<-0": "none", "normal/3<-1": "sep_conv_3x3", "normal/3<-2": "skip_connect",
    }
    tied = {label: torch.zeros(3) for label in space}  # ties: lower sources, first non-none op
    assert darts.darts_arch(tied, space) == {
        "normal/3<-0": "skip_connect", "normal/3<-1": "skip_connect", "normal/3<-2": "none",
    }
    with pytest.raises(SpaceError, match="shape"):
        darts.darts_arch({**alphas, "normal/3<-2": [1.0]}, space)
    with pytest.raises(SpaceError, match="not a DARTS edge"):
        darts.darts_arch({"1<-0": [0.0]}, {"1<-0": ("none",)})


def test_darts_arch_of_random_alphas_gives_each_node_two_inputs(gm):
    generator = torch.Generator().manual_seed(3)
    alphas = {label: torch.randn(len(darts.OPS), generator=generator) for label in darts.LABELS}
    arch = darts.darts_arch(alphas, gmgraph.space(gm))
    for kind in darts.KINDS:
        for i in darts.NODES:
            kept = [arch[f"{kind}/{i}<-{j}"] for j in range(i)]
            assert sum(op != "none" for op in kept) == 2
    x = torch.randn(2, 3, 32, 32, generator=generator)
    torch.testing.assert_close(darts.discretize(gm, alphas)(x), single_path(gm, arch, x), rtol=0, atol=1e-5)


def test_discretize_a_supernet_without_none_through_with_none():
    gm = seeded_graph(ops=darts.OPS[1:])
    generator = torch.Generator().manual_seed(4)
    alphas = {label: torch.randn(7, generator=generator) for label in darts.LABELS}
    arch = darts.darts_arch(alphas, gmgraph.space(gm))
    assert "none" in arch.values()
    full = darts.with_none(gm)
    assert gmgraph.space(full)["reduce/2<-0"] == (*darts.OPS[1:], "none")
    assert "none" not in gmgraph.space(gm)["reduce/2<-0"]  # the input is not changed
    assert full.get_submodule("cells.1.edges.0").ops["none"].stride == 2  # layer 1 of 3 reduces
    x = torch.randn(2, 3, 16, 16, generator=generator)
    net = darts.discretize(gm, alphas)
    torch.testing.assert_close(net(x), single_path(full, arch, x), rtol=0, atol=1e-5)


def test_darts_v2_evaluation_network_has_the_published_parameter_count():
    net = darts.network(DARTS_V2)  # C=36, 20 layers: DARTS reports 3.3M (3,349,342 without the auxiliary head)
    assert sum(p.numel() for p in net.parameters()) == 3349342
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_codec_round_trips_and_reads_genotypes(gm):
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(5))
    assert darts.parse(darts.to_str(arch)) == arch
    v2 = darts.parse(DARTS_V2)
    assert v2["normal/5<-2"] == "dil_conv_3x3" and v2["normal/5<-1"] == "none"
    assert darts.parse(darts.to_str(v2)) == v2
    for bad in ("normal=|none~0|", DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)"),
                darts.to_str(arch).replace("~1|", "~2|", 1), "Genotype(normal=[], reduce=[])"):
        with pytest.raises(ArchError):
            darts.parse(bad)
    with pytest.raises(ArchError, match="unknown op"):
        darts.parse(darts.to_str({label: "conv_9x9" for label in darts.LABELS}))


def test_onnx_export_of_a_sampled_arch_matches_torch(gm, tmp_path):
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(6))
    net = derive(gm, arch)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    assert_onnx_parity(net, x, tmp_path / "darts.onnx")


def test_gradient_matching_with_the_shared_preset(gm):
    generator = torch.Generator().manual_seed(8)
    batches = [(torch.randn(2, 3, 16, 16, generator=generator), torch.randint(10, (2,), generator=generator))]
    names = darts.shared_parameters(gm, "normal/2<-0")
    assert names and all(n.startswith("cells.") for n in names)
    assert any(".preprocess" in n for n in names)
    distances = gradient_matching(gm, "normal/2<-0", batches, rounds=1, shared=darts.shared_parameters)
    assert distances.shape == (8, 8) and torch.isfinite(distances).all()
    torch.testing.assert_close(distances, distances.T)
    assert distances.max() > 0


def test_registry_builds_cells_per_stage():
    spec = get("darts")
    net = spec.build(width=2, cells=1, num_classes=7, in_channels=1)
    assert len(net.cells) == 5  # 1 normal cell per stage + 2 reductions
    gm = gmgraph.trace(net).eval()
    arch = {label: "skip_connect" for label in darts.LABELS}
    with torch.no_grad(), gmgraph.use(gm, arch):
        assert gm(torch.randn(2, 1, 8, 8)).shape == (2, 7)
    assert spec.parse(spec.to_str(arch)) == arch
    assert spec.shared is darts.shared_parameters
