"""``elastic_kernels(transform=True)``: OFA's kernel transform matrices on a user's model (and from the CLI)."""

import json
import textwrap

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.cli import main
from gmgraph.config import SearchSettings
from gmgraph.elastic import KernelTransform, is_view
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.passes import derive, split
from gmgraph.run_folder import best_shape, build_network, read_best
from gmgraph.spaces import elastic_kernels, get, original_arch, supernetify
from tests.conftest import assert_derived_matches, randomize_batchnorm, users_module


def cnn() -> nn.Module:
    """A 7x7 stem, a 3x3 conv and a 5x5 depthwise conv: three originals of three sizes."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 7, padding=3), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 5, padding=2, groups=8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    randomize_batchnorm(net, torch.Generator().manual_seed(1))
    return net.eval()


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


def transforms(gm: nn.Module) -> list[KernelTransform]:
    found = {id(m): m for m in gm.modules() if isinstance(m, KernelTransform)}
    return list(found.values())


def perturb(gm: nn.Module, seed: int) -> None:
    """Move every matrix away from the identity (as training would)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for transform in transforms(gm):
            for matrix in transform.matrices.values():
                matrix.add_(0.2 * torch.randn(matrix.shape, generator=generator))


def test_each_shared_conv_gets_one_transform_that_all_its_views_share():
    gm = gmgraph.trace(supernetify(cnn(), elastic_kernels((3, 5, 7), transform=True))).eval()
    assert gmgraph.space(gm) == {"0": ("7x7", "3x3", "5x5"), "3": ("3x3", "5x5", "7x7"), "5": ("5x5", "3x3", "7x7")}
    for (choice,) in gmgraph.graph.choices(gm).values():
        held = {id(view.transform) for view in choice.ops.values()}
        assert len(held) == 1 and isinstance(next(iter(choice.ops.values())).transform, KernelTransform)
    assert [sorted(t.matrices) for t in transforms(gm)] == [["3", "5"]] * 3
    matrices = sum(p.numel() for t in transforms(gm) for p in t.parameters())
    assert matrices == 3 * (9 * 9 + 25 * 25)
    plain = gmgraph.trace(supernetify(cnn(), elastic_kernels((3, 5, 7))))
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in plain.parameters()) + matrices


def test_the_original_is_exactly_the_model_at_the_start_and_derive_folds_trained_matrices():
    model = cnn()
    gm = gmgraph.trace(supernetify(model, elastic_kernels((3, 5, 7), transform=True))).eval()
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):
        assert torch.equal(gm(image(2)), model(image(2)))  # identity matrices: the plain centres
    perturb(gm, 3)
    generator = torch.Generator().manual_seed(4)
    archs = [{label: ops[-1] for label, ops in gmgraph.space(gm).items()},
             {label: ops[1] for label, ops in gmgraph.space(gm).items()},
             *(gmgraph.sample(gm, generator) for _ in range(3))]
    for arch in archs:
        plain = assert_derived_matches(gm, arch, image(5), atol=1e-6)
        assert not any(isinstance(m, KernelTransform) or is_view(m) for m in plain.modules())
    with torch.no_grad(), gmgraph.use(gm, original_arch(gm)):  # the transformed 3x3 no longer is the original
        assert not torch.allclose(gm(image(2)), model(image(2)), atol=1e-4)


def test_the_derived_3x3_is_the_hand_computed_transform_of_the_shared_7x7():
    gm = gmgraph.trace(supernetify(cnn(), elastic_kernels((3, 5, 7), transform=True))).eval()
    perturb(gm, 6)
    (choice,) = gmgraph.graph.choices(gm)["3"]
    shared, transform = choice.ops["3x3"].conv, choice.ops["3x3"].transform
    five = (shared.weight[:, :, 1:6, 1:6].reshape(-1, 25) @ transform.matrices["5"].T).reshape(8, 8, 5, 5)
    three = (five[:, :, 1:4, 1:4].reshape(-1, 9) @ transform.matrices["3"].T).reshape(8, 8, 3, 3)
    plain = derive(gm, {"0": "7x7", "3": "3x3", "5": "5x5"})
    torch.testing.assert_close(plain.get_submodule("3").weight, three, rtol=0, atol=1e-6)


def test_split_children_own_a_copy_of_the_transform_with_the_parents_values():
    gm = gmgraph.trace(supernetify(cnn(), elastic_kernels((3, 5, 7), transform=True)))
    perturb(gm, 7)
    children = split(gm, "3", [["3x3"], ["5x5", "7x7"]])
    parent = gmgraph.graph.choices(gm)["3"][0].ops["3x3"].transform
    mine = [next(iter(gmgraph.graph.choices(child)["3"][0].ops.values())).transform for child in children]
    assert len({id(parent), *map(id, mine)}) == 3
    assert all(torch.equal(t.matrices["3"], parent.matrices["3"]) for t in mine)


def test_a_bad_transform_setting_is_refused():
    with pytest.raises(SpaceError, match="transform must be True or False"):
        elastic_kernels((3, 5), transform="yes")


NETS = textwrap.dedent('''
    from torch import nn
    from torchvision.models.mobilenetv2 import InvertedResidual

    def small(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             InvertedResidual(8, 8, 1, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(8, num_classes))
''')


@pytest.fixture
def nets(tmp_path, monkeypatch):
    with users_module(tmp_path, monkeypatch, "gm_transform_nets", NETS) as folder:
        yield folder


def test_the_setting_takes_a_model_only_with_elastic_kernels_in_its_rules(nets):
    settings = SearchSettings(model="gm_transform_nets:small", rules="elastic_kernels", kernel_transform=True)
    assert settings.shaping()["kernel_transform"] is True
    spec = get("gm_transform_nets:small", "elastic_kernels,elastic_expansions")
    assert spec.kernel_transform and not get("gm_transform_nets:small", "elastic_expansions").kernel_transform
    gm = gmgraph.trace(spec.make(8, 1, 10, 1, kernel_transform=True))
    # the stem's, and the block's depthwise conv's: one, shared by the kernel Choice in each of its expansions
    assert len(transforms(gm)) == 2
    with pytest.raises(ConfigError, match="--model gm_transform_nets:small with --rules elastic_expansions has none"):
        SearchSettings(model="gm_transform_nets:small", rules="elastic_expansions", kernel_transform=True)
    with pytest.raises(ConfigError, match="--model gm_transform_nets:small with --rules conv_kernels has none"):
        get("gm_transform_nets:small", "conv_kernels").make(8, 1, 10, 1, kernel_transform=True)


def test_a_cli_run_with_kernel_transforms_and_sorted_expansions_records_and_rebuilds_them(nets, capsys):
    out = nets / "run"
    args = ["search", "--model", "gm_transform_nets:small", "--rules", "elastic_kernels,elastic_expansions",
            "--kernel-transform", "true", "--data", "digits", "--epochs", "2", "--method", "oneshot",
            "--steps-per-epoch", "1", "--batch-size", "8", "--evaluations", "2", "--final-epochs", "0",
            "--bn-batches", "1", "--threads", "1", "--sampler", "sandwich", "--sandwich-random", "0",
            "--shrink", "full:1,width:1", "--export", "false", "--html", "false", "--quiet",
            "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["kernel_transform"] is True
    (leaf,) = report["leaves"]
    assert [h.get("before_phase") for h in leaf["history"]] == [
        None, "width: sorted the hidden channels of 1 elastic expansion block(s) by importance"]
    best = read_best(out / "best.pt")
    assert best["network"]["kernel_transform"] is True and best["network"]["rules"] == "elastic_kernels,elastic_expansions"
    net = build_network(best_shape(best, out / "best.pt"), best["arch"])
    assert not any(isinstance(m, KernelTransform) or is_view(m) for m in net.modules())
    net.load_state_dict(best["model"])
    assert net.eval()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_the_cli_refuses_it_in_one_line_when_no_rule_makes_elastic_kernels(nets, capsys):
    assert main(["search", "--model", "gm_transform_nets:small", "--rules", "elastic_expansions",
                 "--kernel-transform", "true", "--out", str(nets / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and len(err.strip().splitlines()) == 1
    assert "--kernel-transform acts on elastic kernels; --model gm_transform_nets:small" in err
