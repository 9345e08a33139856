"""``--kernel-transform``: OFA's kernel transform matrices from the CLI, recorded so that best.pt rebuilds them."""

import json

import torch

from gmgraph.cli import main
from gmgraph.config import KERNEL_TRANSFORM_SPACES, SearchSettings
from gmgraph.elastic import KernelTransform, is_view
from gmgraph.run_folder import best_shape, build_network, read_best
from gmgraph.spaces import BUILTIN, get
from gmgraph.train.checkpoint import differences

# One oneshot OFA run of 2 one-step epochs: the largest subnet, then every expansion (the width phase).
ARGS = ["search", "--space", "ofa", "--data", "digits", "--width", "4", "--cells", "1", "--epochs", "2",
        "--method", "oneshot", "--steps-per-epoch", "1", "--batch-size", "8", "--evaluations", "2",
        "--final-epochs", "0", "--bn-batches", "1", "--threads", "1", "--sampler", "sandwich",
        "--sandwich-random", "0", "--shrink", "full:1,width:1", "--export", "false", "--html", "false", "--quiet"]


def test_an_ofa_run_with_kernel_transforms_records_them_and_sorts_before_the_width_phase(tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--kernel-transform", "true", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["kernel_transform"] is True
    (leaf,) = report["leaves"]
    assert [h.get("before_phase") for h in leaf["history"]] == [
        None, "width: sorted the hidden channels of 20 blocks by importance"]  # once, as the width phase starts
    best = read_best(out / "best.pt")
    assert best["network"]["kernel_transform"] is True
    shape = best_shape(best, out / "best.pt")
    assert shape.kernel_transform
    supernet = get("ofa").make(shape.width, shape.cells, shape.num_classes, shape.in_channels, kernel_transform=True)
    assert sum(isinstance(m, KernelTransform) for m in supernet.modules()) == 20  # one per block
    net = build_network(shape, best["arch"])  # derive folds the matrices into plain kernels
    assert not any(isinstance(m, KernelTransform) or is_view(m) for m in net.modules())
    net.load_state_dict(best["model"])
    assert sum(p.numel() for p in net.parameters()) == report["final"]["params"]
    assert net.eval()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


def test_a_space_without_elastic_kernels_refuses_it_in_one_line(tmp_path, capsys):
    assert main(["search", "--space", "nb201", "--kernel-transform", "true", "--out", str(tmp_path / "r"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and len(err.strip().splitlines()) == 1
    assert "--kernel-transform acts on elastic kernels; the nb201 space has none" in err


def test_it_shapes_the_supernet_so_a_resume_must_keep_it():
    plain, transformed = SearchSettings(space="ofa").shaping(), SearchSettings(space="ofa", kernel_transform=True).shaping()
    assert differences(transformed, plain) == ["kernel_transform: checkpoint True, now False"]


def test_the_schema_list_is_the_spaces_own_word():  # the schema checks without importing a space
    assert KERNEL_TRANSFORM_SPACES == tuple(name for name, spec in BUILTIN.items() if spec.kernel_transform)
