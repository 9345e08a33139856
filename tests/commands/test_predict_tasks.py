"""``gmgraph predict`` for every task (issue 31): a segmentation run's per-pixel class maps and mean IoU, a
regression run's values and R², each checked against the run's network in torch; the task read from the run;
tasks that cannot be predicted refused in one line."""

from __future__ import annotations

import csv
import re
import shutil
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import gmgraph
from gmgraph import data
from gmgraph.cli import main
from gmgraph.inference import regression_scores, segmentation_scores
from gmgraph.onnx_export import read_metadata
from gmgraph.passes.derive import derive
from gmgraph.spaces import encdec
from gmgraph.task import REGRESSION, SEGMENTATION
from tests.conftest import tiny_search, users_module

QUICK = {"method": "oneshot", "evaluations": 2, "final_epochs": 1, "steps_per_epoch": 2, "batch_size": 16}
MIOU = re.compile(r"^mean IoU: (\d\.\d{4}), pixel accuracy: (\d\.\d{4}) \((\d+) test images of digits16-seg, "
                  r"16x16 pixels, 11 classes\)$", re.M)
R2 = re.compile(r"^R²: (-?\d+\.\d{4}), MSE: (\S+) \((\d+) test images of gm_predict_reg:regression\)$", re.M)

USER = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from gmgraph import Choice

    def regression(batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        def split(n, shuffle):
            x = torch.randn(n, 1, 6, 6, generator=g)
            return DataLoader(TensorDataset(x, x.mean(dim=(1, 2, 3)) * 6), batch_size=batch_size, shuffle=shuffle)
        return split(96, True), split(32, False), split(32, False)

    def net(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1),
                             Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, label="act"),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
''')


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    """A short but real segmentation search of the encoder-decoder space on digits16-seg (best.onnx written)."""
    out = tmp_path_factory.mktemp("seg") / "run"
    tiny_search(out, "digits16-seg", space="encdec", **QUICK)
    return out


@pytest.fixture(scope="module")
def reg_run(tmp_path_factory):
    """A short but real regression search of a user's model on a user's data; the module stays importable."""
    folder = tmp_path_factory.mktemp("reg")
    with pytest.MonkeyPatch.context() as patch, users_module(folder, patch, "gm_predict_reg", USER):
        tiny_search(folder / "run", "gm_predict_reg:regression", model="gm_predict_reg:net", task="regression",
                    **QUICK)
        yield folder / "run"


def _torch_net(run, build):
    """The run's network in torch, rebuilt from best.pt without gmgraph's export or predict code."""
    best = torch.load(run / "best.pt", weights_only=True)
    net = derive(gmgraph.trace(build()), best["arch"])
    net.load_state_dict(best["model"])
    return net.eval()


def _predict(capsys, *argv):
    assert main(["predict", *map(str, argv)]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_a_segmentation_run_writes_a_class_map_per_image_and_its_mean_iou(seg_run, tmp_path, capsys):
    out = _predict(capsys, seg_run / "best.onnx", "--data", "digits16-seg", "--show", "2", "--out", tmp_path / "m")
    lines = out.splitlines()
    assert lines[2] == "task: segmentation (from the model's metadata)"
    assert lines[3].split()[0] == "item" and lines[4].startswith("test[0]") and lines[6].startswith("mean IoU")
    miou, pixel_accuracy, count = MIOU.search(out).groups()
    assert lines[-1] == f"masks: wrote 1440 (grey PNG, the class index of each pixel) to {tmp_path / 'm'}"

    net = _torch_net(seg_run, lambda: encdec.supernet(num_classes=11, in_channels=1, width=4))
    stats, masks, targets = 0, [], []
    with torch.no_grad():
        for x, y in data.load("digits16-seg", batch_size=512).test:
            logits = net(x)
            stats = stats + SEGMENTATION.statistics(logits, y)
            masks.append(logits.argmax(1))
            targets.append(y)
    masks, targets = torch.cat(masks).numpy(), torch.cat(targets).numpy()
    assert int(count) == len(masks) == 1440
    assert float(miou) == pytest.approx(SEGMENTATION.value(stats), abs=2e-4)
    written = np.stack([np.asarray(Image.open(tmp_path / "m" / f"test-{i}.png")) for i in range(1440)])
    assert written.dtype == np.uint8 and written.shape == (1440, 16, 16)
    assert (written == masks).mean() > 0.999  # onnxruntime and torch may break a near-tie differently
    assert float(pixel_accuracy) == pytest.approx(float((masks == targets).mean()), abs=2e-4)


def test_a_segmentation_model_predicts_pictures_without_class_folders(seg_run, tmp_path, capsys):
    pictures = tmp_path / "pictures"
    (pictures / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "more/c.png"):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(pictures / name)
    out = _predict(capsys, seg_run / "best.onnx", "--images", pictures)
    assert "predicted 3 masks for the images in" in out and "(16x16 pixels, 11 classes)" in out
    assert out.splitlines()[-1] == "masks: not written (--out DIR writes one per image)"
    _predict(capsys, seg_run / "best.onnx", "--images", pictures, "--out", tmp_path / "m")
    assert sorted(str(p.relative_to(tmp_path / "m")) for p in (tmp_path / "m").rglob("*.png")) == [
        "a.png", "b.png", "more/c.png"]


def test_a_model_moved_out_of_its_run_reads_its_task_from_its_metadata(seg_run, reg_run, tmp_path, capsys):
    assert read_metadata(reg_run / "best.onnx")["task"] == "regression"  # the export records the run's task
    shutil.copy(reg_run / "best.onnx", tmp_path / "reg.onnx")
    out = _predict(capsys, tmp_path / "reg.onnx", "--data", "gm_predict_reg:regression", "--show", "0")
    assert "task: regression (from the model's metadata)" in out and R2.search(out)
    shutil.copy(seg_run / "best.onnx", tmp_path / "seg.onnx")
    out = _predict(capsys, tmp_path / "seg.onnx", "--data", "digits16-seg", "--show", "0")
    assert "task: segmentation (from the model's metadata)" in out and MIOU.search(out)


def test_an_older_file_without_its_task_reads_it_from_its_runs_report_or_its_data(seg_run, tmp_path, capsys):
    import onnx

    model = onnx.load(str(seg_run / "best.onnx"))
    kept = [p for p in model.metadata_props if p.key != "gmgraph.task"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    older = seg_run / "older.onnx"
    onnx.save(model, str(older))
    try:
        out = _predict(capsys, older, "--data", "digits16-seg", "--show", "0")
        assert f"task: segmentation (from the run's {seg_run / 'report.json'})" in out
        shutil.move(older, tmp_path / "older.onnx")
        out = _predict(capsys, tmp_path / "older.onnx", "--data", "digits16-seg", "--show", "0")
        assert "task: segmentation (from the data it records, digits16-seg)" in out and MIOU.search(out)
    finally:
        older.unlink(missing_ok=True)


def test_a_regression_run_prints_and_writes_its_values_and_r2(reg_run, tmp_path, capsys):
    out = _predict(capsys, reg_run / "best.onnx", "--data", "gm_predict_reg:regression", "--show", "3",
                   "--out", tmp_path / "values.csv")
    lines = out.splitlines()
    assert lines[2] == "task: regression (from the model's metadata)"
    assert lines[3].split() == ["item", "target", "predicted"] and lines[4].startswith("test[0]")
    r2, _, count = R2.search(out).groups()
    assert lines[-1] == f"values: wrote 32 rows to {tmp_path / 'values.csv'}"

    from gm_predict_reg import net as user_net
    from gm_predict_reg import regression

    net = _torch_net(reg_run, lambda: user_net(1, 1))
    x, y = (torch.cat(part) for part in zip(*regression(512, 0)[2]))
    with torch.no_grad():
        predicted = net(x)
    assert int(count) == 32
    assert float(r2) == pytest.approx(REGRESSION.value(REGRESSION.statistics(predicted, y)), abs=2e-4)
    rows = list(csv.DictReader((tmp_path / "values.csv").open()))
    assert [r["item"] for r in rows] == [f"test[{i}]" for i in range(32)]
    np.testing.assert_allclose([float(r["predicted"]) for r in rows], predicted.reshape(-1).numpy(), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose([float(r["target"]) for r in rows], y.numpy(), rtol=1e-5)


def test_a_regressor_predicts_pictures_without_targets(reg_run, tmp_path, capsys):
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).save(tmp_path / name)
    out = _predict(capsys, reg_run / "best.onnx", "--images", tmp_path)
    assert out.splitlines()[3].split() == ["item", "predicted"]
    assert re.search(r"^predicted 2 value\(s\) for 2 images in \S+: mean \S+, min \S+, max \S+$", out, re.M)


@pytest.mark.parametrize("flags, message", [
    (["--task", "ranking"], "task 'ranking' (--task) is not one gmgraph predicts from images: classification, "
                            "regression or segmentation"),
    (["--task", "segmentation"], "outputs shape (1,) per image; a segmentation model outputs (classes, height, "
                                 "width)"),
])
def test_tasks_that_cannot_be_predicted_are_refused_in_one_line(reg_run, capsys, flags, message):
    assert main(["predict", str(reg_run / "best.onnx"), "--data", "gm_predict_reg:regression", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and message in err and err.count("\n") == 1


def test_the_numpy_scores_equal_the_tasks_metrics():
    generator = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 5, 6, 6, generator=generator), torch.randint(0, 5, (4, 6, 6), generator=generator)
    scores = segmentation_scores(logits.argmax(1).numpy(), target.numpy(), 5)
    assert scores["miou"] == pytest.approx(SEGMENTATION.score(logits, target), rel=1e-12)
    assert scores["pixel_accuracy"] == pytest.approx(float((logits.argmax(1) == target).double().mean()), rel=1e-12)
    values, truth = torch.randn(40, 1, generator=generator), torch.randn(40, generator=generator)
    scores = regression_scores(values.numpy(), truth.numpy())
    assert scores["r2"] == pytest.approx(REGRESSION.score(values, truth), rel=1e-6)
    assert scores["mse"] == pytest.approx(float(REGRESSION.loss(values, truth)), rel=1e-6)
