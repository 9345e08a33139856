"""``gmgraph export`` (from --space/--arch, --checkpoint or a search --run) and ``gmgraph predict``."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from gmgraph import data
from gmgraph.cli import main
from gmgraph.onnx_export import read_metadata
from gmgraph.spaces import nb201

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|"
ACCURACY = re.compile(r"^accuracy: (\d\.\d{4}) \((\d+)/(\d+) (.+)\)$", re.M)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, finished_search):
    """A tiny finished search run on synthetic 3x32x32 data (10 classes): a copy of the session's
    (tests/conftest.py), as run_onnx writes into it."""
    return finished_search.copy(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """An untrained NB201 network for digits (1x8x8, 10 classes), exported by the CLI."""
    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    code = main(["export", "--space", "nb201", "--arch", ARCH, "--width", "4", "--cells", "1",
                 "--in-channels", "1", "--image-size", "8", "--out", str(path)])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def run_onnx(run_dir):
    """The run's result as `gmgraph search` wrote it: by export_run(out), at its default place out/best.onnx
    (search_job.py). Exporting the run again would write the same file for another second; that export_run
    returns that place is checked in tests/commands/test_predict_preprocessing.py, where it exports a copy of a run."""
    path = run_dir / "best.onnx"
    assert path.is_file(), "the session's search did not export its best.onnx"
    return path


def _network_from_best(run_dir) -> torch.nn.Module:
    """The run's network rebuilt independently of gmgraph.commands.export."""
    best = torch.load(run_dir / "best.pt", weights_only=True)
    net = nb201.network(best["arch"], C=4, N=1, num_classes=10, in_channels=3)
    net.load_state_dict(best["model"])
    return net.eval()


def test_export_from_space_and_arch(digits_model):
    meta = read_metadata(digits_model)
    assert meta["arch"] == nb201.parse(ARCH) and meta["space"] == "nb201"
    assert "preprocessing" not in meta  # --space/--arch does not know the data: predict --images says so
    session = ort.InferenceSession(str(digits_model), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [1, 8, 8]
    logits = session.run(None, {"input": np.zeros((5, 1, 8, 8), np.float32)})[0]
    assert logits.shape == (5, 10)


def test_export_run_carries_the_trained_weights(run_dir, run_onnx):
    report = json.loads((run_dir / "report.json").read_text())
    meta = read_metadata(run_onnx)
    assert meta["arch"] == report["arch"] and meta["data"] == "synthetic" and meta["task"] == "classification"
    assert meta["preprocessing"] == data.preprocessing("synthetic", shape=(3, 32, 32))
    assert meta["preprocessing"]["mean"] == [0.0] * 3 and meta["preprocessing"]["std"] == [1.0] * 3  # none
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(run_onnx), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = _network_from_best(run_dir)(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4)


def test_cli_export_of_a_run_writes_where_asked(run_dir, tmp_path, capsys):
    out = tmp_path / "chosen.onnx"
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: |")
    assert read_metadata(out)["arch"] == json.loads((run_dir / "report.json").read_text())["arch"]


def test_export_from_checkpoint_takes_its_arch(run_dir, tmp_path, capsys):
    out = tmp_path / "ckpt.onnx"
    assert main(["export", "--checkpoint", str(run_dir / "best.pt"), "--width", "4", "--cells", "1",
                 "--out", str(out)]) == 0
    assert "with the weights of" in capsys.readouterr().out
    arch = torch.load(run_dir / "best.pt", weights_only=True)["arch"]
    assert read_metadata(out)["arch"] == arch


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "{run}/best.pt", "--width", "8", "--out", "{tmp}/x.onnx"], "--width 8 (the file has 4)"),
    (["--checkpoint", "{run}/best.pt", "--arch", ARCH, "--width", "4", "--cells", "1", "--out", "{tmp}/x.onnx"],
     "differs from the architecture stored"),
    (["--run", "{tmp}", "--out", "{tmp}/x.onnx"], "holds no report.json; is it a finished `gmgraph search` run?"),
    (["--run", "{run}", "--arch", ARCH], "drop --arch"),
    (["--arch", ARCH], "--out is required"),
    (["--arch", "|nor_conv_3x3~0|", "--out", "{tmp}/x.onnx"], "node part"),
    (["--arch", ARCH, "--width", "0", "--out", "{tmp}/x.onnx"], "--width must be a positive integer"),
    (["--out", "{tmp}/x.onnx"], "give --arch"),
])
def test_export_errors_are_one_line(run_dir, tmp_path, capsys, argv, message):
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in argv]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_predict_digits_prints_predictions_and_accuracy(digits_model, capsys):
    assert main(["predict", str(digits_model), "--data", "digits", "--show", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "preprocessing: gmgraph.data.load('digits'), as in training"
    assert lines[2].split() == ["item", "label", "predicted", "confidence"] and lines[3].startswith("test[0]")
    accuracy, hits, total, source = ACCURACY.search(out).groups()
    assert (int(total), source) == (360, "test images of digits")
    assert float(accuracy) == pytest.approx(int(hits) / 360, abs=1e-4)


def test_predict_accuracy_matches_torch(run_dir, run_onnx, capsys):
    assert main(["predict", str(run_onnx), "--data", "synthetic", "--batch-size", "7"]) == 0
    _, hits, total, _ = ACCURACY.search(capsys.readouterr().out).groups()
    net = _network_from_best(run_dir)
    with torch.no_grad():
        right = sum(int((net(x).argmax(1) == y).sum()) for x, y in data.load("synthetic").test)
    assert (int(hits), int(total)) == (right, 64)


def test_predict_images_reads_class_folders(digits_model, tmp_path, capsys):
    images = data.load("digits").test.dataset.tensors[0][:20, 0]  # 20 test digits
    labels = data.load("digits").test.dataset.tensors[1][:20]
    for i, (image, label) in enumerate(zip(images, labels)):
        pixels = ((image - image.min()) / (image.max() - image.min()) * 255).to(torch.uint8).numpy()
        folder = tmp_path / str(int(label))
        folder.mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    for k in range(10):  # classes are the folder names: all ten must exist for a 10-class model
        (tmp_path / str(k)).mkdir(exist_ok=True)
    assert main(["predict", str(digits_model), "--images", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    _, _, total, source = ACCURACY.search(out).groups()
    assert int(total) == 20 and source == f"images in {tmp_path}"
    assert out.splitlines()[1].startswith("preprocessing: ImageNet mean/std, the default for a model without")
    assert re.search(r"^\d/\d+\.png\s+\d\s+\d\s+[01]\.\d{3}$", out, re.M)


@pytest.mark.parametrize("case, message", [
    ("missing", "no model file at"),
    ("shape", "expects inputs of shape (3, 32, 32) but the test images of digits have shape (1, 8, 8)"),
    ("classes", "predicts 10 classes but the images in"),
])
def test_predict_errors(run_onnx, digits_model, tmp_path, capsys, case, message):
    if case == "missing":
        argv = [str(tmp_path / "nothing.onnx")]
    elif case == "shape":
        argv = [str(run_onnx), "--data", "digits"]
    else:
        for name in ("cat", "dog"):
            (tmp_path / name).mkdir()
            Image.new("L", (8, 8)).save(tmp_path / name / "a.png")
        argv = [str(digits_model), "--images", str(tmp_path)]
    assert main(["predict", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and message in err
