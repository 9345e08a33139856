"""Damaged checkpoints and best.pt files: one line that names the file and says it is damaged (issue 32, item 9);
best.pt records the network it holds weights for, so `export --checkpoint best.pt` needs no flags (item 10)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gmgraph.cli import main
from gmgraph.errors import CheckpointError
from gmgraph.onnx_export import read_metadata
from gmgraph.run_folder import read_best
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import tiny_search


class NotPlainData:
    """An object a weights-only load refuses (unpickling it could run code)."""


def _damage(good: bytes) -> dict[str, bytes | None]:
    """Damaged copies of a torch file, by what happened to it; None: written by torch.save (see below)."""
    changed = bytearray(good)
    changed[100:140] = bytes(40)  # inside the first part of the archive (data.pkl)
    return {
        "cut in half": good[: len(good) // 2],
        "end cut off": good[:-100],  # torch says `OSError: [Errno 22] Invalid argument` here
        "empty": b"",
        "bytes changed": bytes(changed),
        "not a torch file": b"this is not a checkpoint\n",
        "python objects": None,
    }


EXPECTED = {
    "cut in half": "is damaged: it is truncated",
    "end cut off": "is damaged: it is truncated",
    "empty": "is damaged: it is empty (0 bytes)",
    "bytes changed": "is damaged: its part data.pkl fails its checksum",
    "not a torch file": "is corrupt or not a torch file",
    "python objects": "holds Python objects besides tensors and plain data",
}


@pytest.fixture
def damaged(tmp_path, request):
    """``(kind, path)``: a gmgraph checkpoint damaged as ``kind`` says."""
    good = save_checkpoint({"epoch": 3, "model": {"w": torch.arange(2000.0)}}, tmp_path / "good.pt").read_bytes()
    path = tmp_path / "checkpoint.pt"
    content = _damage(good)[request.param]
    if content is None:
        torch.save({"format": "x", "model": NotPlainData()}, path)
    else:
        path.write_bytes(content)
    return request.param, path


KINDS = list(EXPECTED)


@pytest.mark.parametrize("load, name", [(load_checkpoint, "checkpoint"), (read_best, "network file")])
@pytest.mark.parametrize("damaged", KINDS, indirect=True)
def test_a_damaged_file_is_named_and_called_damaged(damaged, load, name):
    kind, path = damaged
    with pytest.raises(CheckpointError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{name} {path} {EXPECTED[kind]}"), message
    _assert_plain(message)


def _assert_plain(message: str) -> None:
    # no torch advice (weights_only=False would let the file run code), no errno, no terminal codes, one line
    assert "weights_only" not in message and "Errno" not in message and "\x1b[" not in message
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize("damaged", ["end cut off", "python objects"], indirect=True)
def test_the_cli_says_it_in_one_line(damaged, tmp_path, capsys):
    kind, path = damaged
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gmgraph: error: network file {path} {EXPECTED[kind]}"), err
    assert err.count("\n") == 1 and "Traceback" not in err and "weights_only" not in err


def test_resume_from_a_truncated_checkpoint_is_one_line(tmp_path, capsys):
    good = save_checkpoint({"epoch": 1, "model": {"w": torch.ones(500)}}, tmp_path / "good.pt").read_bytes()
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(good[:-100])
    argv = ["search", "--data", "digits", "--width", "4", "--cells", "1", "--epochs", "2", "--split-at", "1",
            "--quiet", "--out", str(out), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gmgraph: error: checkpoint {out / 'checkpoint.pt'} is damaged: it is truncated")
    assert err.count("\n") == 1 and "Errno" not in err


# ------------------------------------------------------------------ item 10: best.pt rebuilds its network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished search on digits (1x8x8) at C=4, N=1: not the export command's default size."""
    out = tmp_path_factory.mktemp("run")
    tiny_search(out, "digits", labels="1<-0,3<-2")  # GM scores 2 of the 6 labels: enough to split
    return out


def test_best_pt_records_the_network_and_its_data(run_dir):
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["network"] == {"space": "nb201", "width": 4, "cells": 1, "num_classes": 10, "in_channels": 1,
                               "image_size": [8, 8]}
    assert best["data"] == {"name": "digits", "image_size": None}


def test_export_from_best_pt_needs_no_flags(run_dir, tmp_path, capsys):
    out = tmp_path / "from-best.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--out", str(out)]) == 0
    assert f"with the weights of {run_dir / 'best.pt'}" in capsys.readouterr().out
    ours, runs = read_metadata(out), read_metadata(run_dir / "best.onnx")  # best.onnx: exported from the run
    assert ours["arch"] == runs["arch"] and ours["preprocessing"] == runs["preprocessing"]
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    got, expected = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
                     for p in (out, run_dir / "best.onnx"))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_an_older_best_pt_says_what_is_missing(run_dir, tmp_path, capsys):
    best = torch.load(run_dir / "best.pt", weights_only=True)
    old = tmp_path / "old-best.pt"
    torch.save({"arch": best["arch"], "model": best["model"]}, old)  # as gmgraph wrote it before
    assert main(["export", "--checkpoint", str(old), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gmgraph: error: the weights in {old} do not fit the network (") and err.count("\n") == 1
    assert "does not record the network's size" in err and "--width/--cells" in err and "--run DIR" in err
    assert len(err) < 600  # counts and one example, not torch's list of every key
    assert not (tmp_path / "x.onnx").exists()


def test_a_best_pt_with_a_broken_network_record_is_one_line(run_dir, tmp_path, capsys):
    best = torch.load(run_dir / "best.pt", weights_only=True)
    broken = tmp_path / "broken.pt"
    torch.save({**best, "network": {"space": "nb201", "width": "four"}}, broken)
    assert main(["export", "--checkpoint", str(broken), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gmgraph: error: {broken} records its network in a form") and err.count("\n") == 1
