"""``--log-dir``: epochs.csv, splits.csv and TensorBoard events, read back."""

import csv

import pytest
import torch

from gmgraph import data
from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.graph import trace
from gmgraph.run_log import RunLog
from gmgraph.spaces import nb201
from gmgraph.train.fewshot import run_fewshot


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A 3-epoch few-shot run split at epochs 1 and 2, logged after every epoch as `gmgraph search` does."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("logs")
    gm = trace(nb201.supernet(C=4, N=1, num_classes=10, in_channels=3))
    run_log = RunLog(folder)

    def after_epoch(epochs, result):
        run_log.fewshot(epochs, result)
        run_log.flush()

    result = run_fewshot(gm, data.load("synthetic", batch_size=16, seed=0),
                         FewShotConfig(method="gm", split_at=(1, 2), rounds=1, labels=("1<-0", "3<-2")),
                         TrainConfig(epochs=3, steps_per_epoch=2), quiet=True, on_epoch=after_epoch)
    run_log.rows("final", "final", [{"epoch": 1, "loss": 1.5, "accuracy": 0.5, "lr": 0.05, "seconds": 0.1}])
    run_log.close()
    return folder, result


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_each_epoch_of_work_is_one_row_under_the_node_that_trained_it(logged):
    folder, result = logged
    rows = read(folder / "epochs.csv")
    supernet = [(r["node"], int(r["epoch"])) for r in rows if r["phase"] == "supernet"]
    children = {entry["node"]: entry["children"] for entry in result.tree}
    assert sorted(supernet) == sorted([("root", 1)] + [(c, 2) for c in children["root"]]
                                      + [(leaf.id, 3) for leaf in result.leaves])  # 1 + 2 + 4 rows
    root = next(r for r in rows if r["node"] == "root")
    assert float(root["loss"]) == pytest.approx(result.leaves[0].trainer.history[0]["loss"], rel=1e-12)
    assert [r["phase"] for r in rows].count("final") == 1
    splits = read(folder / "splits.csv")
    assert [(s["epoch"], s["node"], s["label"]) for s in splits] == sorted(
        (str(e["epoch"]), e["node"], e["label"]) for e in result.tree)


def test_tensorboard_draws_one_curve_per_node(logged):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, result = logged
    runs = sorted(p.name for p in (folder / "tensorboard").iterdir())
    assert len(runs) == 1 + 2 + 4 + 1 and "root" in runs and "final" in runs
    root = EventAccumulator(str(folder / "tensorboard" / "root")).Reload()
    assert [e.step for e in root.Scalars("loss")] == [1]
    assert root.Scalars("loss")[0].value == pytest.approx(result.leaves[0].trainer.history[0]["loss"], rel=1e-6)
    assert "split" in "".join(root.Tags()["tensors"])  # the root's split, as text


def test_without_tensorboard_the_csv_files_are_still_written(tmp_path):
    run_log = RunLog(tmp_path, tensorboard=False)
    run_log.rows("supernet", "root", [{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "lr": 0.1, "seconds": 1.0}])
    run_log.close()
    assert read(tmp_path / "epochs.csv")[0]["val_accuracy"] == ""  # not measured: empty, not "None"
    assert not (tmp_path / "tensorboard").exists()
