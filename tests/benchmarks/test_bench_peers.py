"""benchmarks/bench_peers.py without NNI: the name mapping, the gmgraph side's steps, the message when NNI is absent.

NNI is never installed or imported here and nothing reaches the network: the NNI names the mapping
must produce are a digest recorded from NNI 3.0 itself (below).
"""

import doctest
import hashlib
import importlib.util

import bench_peers
import nni_names
import paired_ratios
import peer_env
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph.errors import ConfigError
from gmgraph.spaces import nb201

# sha256 of the sorted lines "name (shape)" of every tensor of NNI 3.0's
# NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=10), mutated by RandomOneShot (255 tensors;
# DARTS adds only the 18 alphas): recorded with nni 3.0 and torch 2.14 by `peer_nni.supernet("rsps", 4, 1, 10)`.
NNI_TINY_DIGEST = "ed020bf8c10360fbb80cecd89e3802309621e8447efe6ad6828a845b6a507aca"


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, affine=True))
    bench_peers.randomise_norms(gm, 0)
    return gm


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()  # main() pins the thread count: give the worker its own back
    yield
    torch.set_num_threads(threads)


def mirror(names_and_tensors) -> nn.Module:
    """A module whose state dict holds zero tensors under the given dotted names (a stand-in for NNI's)."""
    root = nn.Module()
    for name, tensor in names_and_tensors:
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, torch.zeros_like(tensor))
    return root


def test_the_mapped_names_and_shapes_are_nni_3_0s(tiny):
    lines = sorted(f"{nni_names.nni_name(k)} {tuple(v.shape)}" for k, v in tiny.state_dict().items())
    assert len(lines) == len(set(lines)) == 255
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == NNI_TINY_DIGEST
    named = dict(line.split(" ", 1) for line in lines)  # a few, readable
    assert named["cells.0.layers.2.2.conv_3x3.op.1.weight"] == "(4, 4, 3, 3)"  # edge 3<-2
    assert named["cells.1.conv_a.op.2.running_mean"] == "(8,)"
    assert named["cells.1.downsample.1.weight"] == "(8, 4, 1, 1)"


def test_load_by_name_copies_every_tensor_to_its_counterpart(tiny):
    ours = tiny.state_dict()
    target = mirror((nni_names.nni_name(k), v) for k, v in ours.items())
    assert nni_names.load_by_name(tiny, target) == 255
    theirs = target.state_dict()
    for name, tensor in ours.items():
        assert torch.equal(theirs[nni_names.nni_name(name)], tensor), name
    # NNI's DARTS layers hold the alphas as parameters too: left alone, not counted as missing
    target.cells.get_submodule("0.layers.0.0").register_parameter("_arch_alpha", nn.Parameter(torch.zeros(5)))
    assert nni_names.load_by_name(tiny, target) == 255


def test_a_tensor_without_counterpart_or_of_another_shape_is_named(tiny):
    ours = tiny.state_dict()
    names = [nni_names.nni_name(k) for k in ours]
    with pytest.raises(ConfigError, match=r"NNI tensors nothing maps to \['extra.weight'\]"):
        nni_names.name_map(ours, [*names, "extra.weight"])
    with pytest.raises(ConfigError, match=r"mapped to no NNI tensor \['classifier.bias'\]"):
        nni_names.name_map(ours, [n for n in names if n != "classifier.bias"])
    shapes = [(nni_names.nni_name(k), v if k != "stem.0.weight" else torch.zeros(1)) for k, v in ours.items()]
    with pytest.raises(ConfigError, match=r"1 tensors differ in shape, e.g. stem.0.weight \(4, 3, 3, 3\) vs"):
        nni_names.load_by_name(tiny, mirror(shapes))


def test_alphas_go_to_nni_labels_in_candidate_order():
    ours = {label: torch.arange(5.0) + i for i, label in enumerate(nb201.LABELS)}
    theirs = {nni_names.nni_label(label): torch.zeros(5) for label in nb201.LABELS}
    nni_names.copy_alphas(ours, theirs)
    assert sorted(theirs) == ["cell/0_1", "cell/0_2", "cell/0_3", "cell/1_2", "cell/1_3", "cell/2_3"]
    assert torch.equal(theirs["cell/1_3"], ours["3<-1"])
    assert nb201.OPS[2:4] == ("nor_conv_1x1", "nor_conv_3x3") and nni_names.nni_op("nor_conv_1x1") == "conv_1x1"


def test_the_fixed_path_trainer_steps_the_given_path_only(tiny):
    x, y = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 3])
    loaders = [DataLoader(TensorDataset(x, y), batch_size=4)] * 2
    trainer = bench_peers.trainer(tiny, loaders, "uniform")
    arch = {label: "skip_connect" for label in nb201.LABELS} | {"1<-0": "nor_conv_3x3"}
    trainer.sampler.path = arch
    before = {k: v.clone() for k, v in tiny.named_parameters()}
    trainer.train_step(x, y, torch.arange(4))
    assert trainer.sampler.last_arch == arch
    moved = {k for k, v in tiny.named_parameters() if not torch.equal(v, before[k])}
    assert "cells.0.edges.0.ops.nor_conv_3x3.1.weight" in moved
    assert not {k for k in moved if ".edges." in k and "edges.0.ops.nor_conv_3x3" not in k}


def test_peer_none_times_gmgraph_against_its_derived_networks(tmp_path, one_thread):
    out = bench_peers.main(["--peer", "none", "--C", "4", "--N", "1", "--batch", "4", "--size", "8", "--paths", "2",
                            "--reps", "1", "--darts-reps", "1", "--out", str(tmp_path / "peers.md")])
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| single path (RSPS) step", "gmgraph", "gmgraph's derived network"],
        ["| evaluation forward", "gmgraph", "gmgraph's derived network"]]
    assert "gmgraph vs its derived network (eval): bit for bit equal" in text  # derive keeps the path's function
    assert "--peer none" in text and "NNI 3.0 |" not in text


def test_without_nni_and_without_install_one_line_says_so(tmp_path):
    if importlib.util.find_spec("nni") is not None:
        pytest.skip("NNI is importable here; this checks the environment without it")
    venv = tmp_path / "no-nni"
    with pytest.raises(SystemExit) as exit_info:
        bench_peers.main(["--no-install", "--nni-venv", str(venv)])
    message = str(exit_info.value)
    assert message == peer_env.missing_message("nni", venv) and "\n" not in message
    assert not venv.exists()  # nothing created, nothing installed


def test_paired_ratios_resample_whole_groups():
    a, b = [1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0]
    grouped = paired_ratios.paired(a, b, [0, 0, 1, 1], n_boot=400)
    assert (grouped.median, grouped.sums, grouped.pairs) == (1.0, 1.0, 4)
    # two groups: a draw holds 0, 1 or 2 copies of the slow one, so the ratio of sums is 0.5, 1.0 or 1.5
    assert grouped.sums_ci == (0.5, 1.5)
    assert paired_ratios.paired(a, b, [0, 0, 1, 1], n_boot=400) == grouped  # seeded
    with pytest.raises(ValueError, match="equally many"):
        paired_ratios.paired([1.0], [1.0, 2.0])


@pytest.mark.parametrize("module", [bench_peers, nni_names, paired_ratios, peer_env])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0
