"""export_onnx: derived NB201 networks run in onnxruntime as in torch; metadata; refusals; atomic writes.

torch.onnx.export costs about half a second per call plus about half a second
per small network, and a symbolic batch dimension adds about a third. So five
random architectures that together put every op on every edge are exported to
one file (side by side in one module, C=8, N=1) with a static batch of 7, which
also checks what a static batch keeps; the three uniform edge cases share one
file with a symbolic batch (checked at batch 1 and 7), and the full-size
network gets one of its own."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.errors import ExportError
from gmgraph.onnx_export import PREPROCESSING_KEY, export_onnx, read_metadata
from gmgraph.passes import derive
from gmgraph.spaces import nb201
from tests.conftest import randomize_batchnorm

SHAPE = (3, 32, 32)


def _supernet(C: int, N: int, seed: int = 0) -> torch.fx.GraphModule:
    torch.manual_seed(seed)
    gm = gmgraph.trace(nb201.supernet(C=C, N=N))
    randomize_batchnorm(gm, torch.Generator().manual_seed(seed + 1))
    return gm


def _uniform(op: str) -> dict[str, str]:
    return {label: op for label in nb201.LABELS}


class SideBySide(nn.Module):
    """Several derived networks on the same input: one export checks them all."""

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(net(x) for net in self.nets)


def _assert_matches_torch(model: nn.Module, path, seed: int = 123, batches: tuple[int, ...] = (1, 7)) -> None:
    """Our own check, independent of export_onnx's: batch 1 and 7 (default), max abs diff <= 1e-4."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    for batch in batches:
        x = torch.randn((batch, *SHAPE), generator=generator)
        with torch.no_grad():
            expected = model.eval()(x)
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        got = session.run(None, {"input": x.numpy()})
        assert len(got) == len(expected)
        for want, have in zip(expected, got):
            assert have.shape == tuple(want.shape) == (batch, 10)
            np.testing.assert_allclose(have, want.numpy(), rtol=0, atol=1e-4)


def _random_archs_putting_every_op_on_every_edge(generator: torch.Generator) -> list[dict[str, str]]:
    """Five random archs that together put every NB201 op on every edge: each edge deals the five ops out to the
    five archs in its own random order. So each arch, on its own, is a uniformly random arch (each edge's op
    uniform, the edges independent), as gmgraph.sample draws, and no (edge, op) pair depends on luck."""
    ops = nb201.OPS
    orders = {label: torch.randperm(len(ops), generator=generator).tolist() for label in nb201.LABELS}
    return [{label: ops[order[i]] for label, order in orders.items()} for i in range(len(ops))]


def test_random_archs_and_every_op_on_every_edge_match_torch_and_a_static_batch_leaves_the_input_unchanged(tmp_path):
    # Five seeded random archs in one file (one export) that put every op on every edge (asserted below): mixed
    # cells (edges cut off by `none`, skips folded into sums) with no (edge, op) pair left to luck. They were ten
    # (five fixed archs for the coverage, five random ones for mixed cells); random archs that also cover every
    # pair check both with half the networks, which is half the export's cost.
    # The same export, from a module in train mode with a static batch, checks what a static batch keeps
    # (it was a test of its own, with an export of its own).
    gm = _supernet(C=8, N=1)
    archs = _random_archs_putting_every_op_on_every_edge(torch.Generator().manual_seed(2024))
    covered = {(label, arch[label]) for arch in archs for label in nb201.LABELS}
    assert covered == {(label, op) for label in nb201.LABELS for op in nb201.OPS}
    assert len({tuple(arch.items()) for arch in archs}) == 5 and all(len(set(arch.values())) > 1 for arch in archs)
    model = SideBySide([derive(gm, arch) for arch in archs]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, torch.randn(7, *SHAPE), tmp_path / "five.onnx", dynamic_batch=False)
    assert model.training  # exported in eval mode, from a copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [7, *SHAPE]
    _assert_matches_torch(model, path, batches=(7,))  # our own check, besides export_onnx's


def test_uniform_archs_match_torch_and_the_exporter_is_quiet_and_metadata_round_trips(tmp_path, capfd):
    # The three uniform edge cases side by side in one export with a symbolic batch (checked at 1 and 7).
    # That a derived network's arch is recorded by default is checked with the full-size network below.
    # The same file carries a mapping, a list and a string as metadata (that round trip was a test of its own in
    # tests/commands/test_predict_preprocessing.py, with an export of its own).
    ops = ("none", "skip_connect", "nor_conv_3x3")
    gm = _supernet(C=8, N=1)
    model = SideBySide([derive(gm, _uniform(op)) for op in ops])
    spec = data.preprocessing("cifar10")
    path = export_onnx(model, torch.randn(2, *SHAPE), tmp_path / "uniform.onnx",
                       metadata={"preprocessing": spec, "space": "nb201", "sizes": (1, 2)})
    assert capfd.readouterr().out == ""  # the exporter's chatter would clutter the CLI
    _assert_matches_torch(model, path)
    assert read_metadata(path) == {"version": gmgraph.__version__, "space": "nb201", "preprocessing": spec,
                                   "sizes": "[1, 2]"}  # no arch: none was derived
    raw = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(raw[PREPROCESSING_KEY]) == spec  # stored as JSON, under gmgraph.preprocessing


def test_full_size_network_is_one_valid_self_contained_file_with_its_metadata(tmp_path, capfd):
    arch = nb201.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    net = derive(_supernet(C=16, N=5), arch)
    path = export_onnx(net, torch.randn(1, *SHAPE), tmp_path / "net.onnx", metadata={"space": "nb201"})
    assert capfd.readouterr().out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]  # no external data, no temp file
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert proto.opset_import[0].version == 18
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    assert read_metadata(path) == {"arch": arch, "version": gmgraph.__version__, "space": "nb201"}
    _assert_matches_torch(net, path)


def test_supernet_is_refused(tmp_path):
    with pytest.raises(ExportError, match="derive an architecture first"):
        export_onnx(_supernet(C=4, N=1), torch.randn(1, *SHAPE), tmp_path / "supernet.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["under_a_file", "onto_a_folder"])
def test_unwritable_path_fails_clearly_and_leaves_nothing(tmp_path, where):
    net = derive(_supernet(C=4, N=1), _uniform("skip_connect"))
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    target = tmp_path / "file" / "net.onnx" if where == "under_a_file" else tmp_path / "folder"
    with pytest.raises(ExportError, match="cannot write"):
        export_onnx(net, torch.randn(1, *SHAPE), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []


class _Noisy(nn.Module):
    """Random output: torch and onnxruntime draw different numbers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


def test_disagreement_is_named_and_nothing_is_written(tmp_path):
    with pytest.raises(ExportError, match=r"disagrees with torch on output 0 at batch 1: max \|onnx - torch\| = "):
        export_onnx(_Noisy(), torch.randn(1, 4), tmp_path / "noisy.onnx")
    assert list(tmp_path.iterdir()) == []


def test_wrong_example_shape_is_explained(tmp_path):
    net = derive(_supernet(C=4, N=1), _uniform("skip_connect"))
    with pytest.raises(ExportError, match=r"cannot run on an example input of shape \(1, 1, 32, 32\)"):
        export_onnx(net, torch.randn(1, 1, 32, 32), tmp_path / "net.onnx")
    assert list(tmp_path.iterdir()) == []


def test_read_metadata_errors(tmp_path):
    with pytest.raises(ExportError, match="no ONNX model at"):
        read_metadata(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 not a protobuf \xff")
    with pytest.raises(ExportError, match="is not an ONNX model"):
        read_metadata(tmp_path / "junk.onnx")


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # torch.export cannot trace a branch on a value
            return x * 2
        return x - 1


def test_an_export_failure_is_one_clean_line_without_torchs_dump(tmp_path, capfd):
    with pytest.raises(ExportError) as info:
        export_onnx(DataDependent(), torch.randn(1, 3, 4, 4), tmp_path / "m.onnx")
    message = str(info.value)
    assert "\n" not in message and "\x1b[" not in message
    assert message.startswith("torch.onnx.export could not export DataDependent: ")
    assert "data-dependent" in message and "if x.sum() > 0:" in message
    assert capfd.readouterr().err == ""  # torch's warnings and graph dumps stay out of the user's terminal
    assert not list(tmp_path.iterdir())
