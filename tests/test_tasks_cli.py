"""Other tasks end to end: a segmentation search of the encoder-decoder space on the placed digits' masks, and a
regression search of a user's model on a user's data (``--model`` and ``--data module:function``)."""

import json
import sys
import textwrap

import pytest
import torch

import gmgraph
from gmgraph import data
from gmgraph.cli import main
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import encdec
from tests.conftest import users_module

QUICK = ["--epochs", "2", "--method", "gm", "--split-at", "1", "--rounds", "1", "--evaluations", "3", "--final-epochs", "1",
         "--steps-per-epoch", "2", "--bn-batches", "1", "--batch-size", "16", "--export", "false", "--html", "false", "--quiet"]


def test_a_segmentation_search_reports_mean_iou(tmp_path, capsys):
    out = tmp_path / "seg"
    assert main(["search", "--data", "digits16-seg", "--space", "encdec", "--width", "4", "--method", "random",
                 *QUICK, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    final = report["final"]
    assert final["metric"] == "miou" and 0 <= final["standalone_test_accuracy"] <= 1
    assert set(report["arch"]) == set(encdec.LABELS)
    assert "test mean IoU" in capsys.readouterr().out


def test_gradient_matching_scores_a_segmentation_label_by_its_per_pixel_loss():
    torch.manual_seed(0)
    gm = gmgraph.trace(encdec.supernet(num_classes=11, in_channels=1, width=4))
    train = data.load("digits16-seg", batch_size=8).train
    distances = gradient_matching(gm, "dec", iter(train), rounds=1, task="segmentation")
    assert distances.shape == (5, 5) and torch.isfinite(distances).all()
    assert torch.all(distances.diagonal() == 0) and distances[0, 1] > 0


USER = textwrap.dedent('''
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from gmgraph import Choice

    COLLATED = []

    def _collate(samples):
        COLLATED.append(len(samples))
        return {"x": torch.stack([s[0] for s in samples]), "target": torch.stack([s[1] for s in samples])}

    def regression(batch_size, seed):
        g = torch.Generator().manual_seed(seed)
        def split(n, shuffle):
            x = torch.randn(n, 1, 6, 6, generator=g)
            ds = TensorDataset(x, x.mean(dim=(1, 2, 3)) * 6)
            return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate)
        return split(96, True), split(32, False), split(32, False)

    def net(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1),
                             Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, label="act"),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    with users_module(tmp_path, monkeypatch, "gm_user_task", USER):
        yield sys.modules.get


def test_a_regression_search_of_a_users_model_on_a_users_loaders(tmp_path, capsys, user_module):
    out = tmp_path / "reg"
    assert main(["search", "--data", "gm_user_task:regression", "--model", "gm_user_task:net", "--task",
                 "regression", *QUICK, "--out", str(out)]) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["final"]["metric"] == "r2" and report["num_classes"] == 1  # one output per sample, read
    assert report["sampler"] == "uniform"  # --sampler auto: PA&DA scores classification errors only
    assert report["arch"]["act"] in ("relu", "tanh", "id")
    assert sum(user_module("gm_user_task").COLLATED) > 0  # their collate_fn fed the training
    assert "test R²" in capsys.readouterr().out
