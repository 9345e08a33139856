"""The default search (issue 30): one supernet (``--method oneshot``) trained with ``--sampler auto``, which is
PA&DA where it can run and uniform elsewhere; ``--split-at`` without a splitting method is refused."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import gmgraph
from gmgraph.cli import main
from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.errors import ConfigError
from gmgraph.spaces import nb201
from gmgraph.train.loop import SupernetTrainer

TINY = ["--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "2", "--steps-per-epoch", "2",
        "--evaluations", "2", "--final-epochs", "0", "--bn-batches", "1", "--export", "false",
        "--html", "false"]


def test_the_default_search_trains_one_pada_supernet_and_says_so(tmp_path, capsys):
    assert main(["search", *TINY, "--out", str(tmp_path / "run")]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["fewshot"]["method"] == "oneshot" and report["settings"]["train"]["sampler"] == "auto"
    assert report["sampler"] == "pada" and report["split_tree"] == [] and len(report["leaves"]) == 1
    assert "trained on cpu in fp32 with the pada sampler" in capsys.readouterr().out


def _trainer(data, config=None, task=None):
    torch.manual_seed(0)
    return SupernetTrainer(gmgraph.trace(nb201.supernet(C=4, N=1)), [data], config, task=task)


def _images(n=8):
    return TensorDataset(torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))


class _Stream(IterableDataset):
    def __iter__(self):
        yield from _images()


@pytest.mark.parametrize("case, expected", [
    ("classification on a dataset", "pada"),
    ("regression", "uniform"),             # PA&DA scores each sample by its classification error
    ("an IterableDataset", "uniform"),     # no sample positions to keep scores for
    ("a --shrink schedule", "uniform"),    # progressive shrinking limits the uniform and sandwich samplers' paths
    ("an explicit sampler", "darts"),
])
def test_auto_is_pada_only_where_pada_can_run(case, expected):
    data, config, task = DataLoader(_images(), batch_size=4), TrainConfig(), None
    if case == "regression":
        data, task = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.randn(8, 10)), batch_size=4), "regression"
    elif case == "an IterableDataset":
        data = DataLoader(_Stream(), batch_size=4)
    elif case == "a --shrink schedule":
        config = TrainConfig(shrink="full:1", epochs=2)
    elif case == "an explicit sampler":
        config = TrainConfig(sampler="darts")
    assert _trainer(data, config, task).sampler.name == expected


def test_split_epochs_without_a_splitting_method_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^--split-at 3 splits the supernet, but --method oneshot never splits: "
                                          r"add --method gm"):
        FewShotConfig(split_at=(3,))
    assert FewShotConfig(method="gm", split_at=(3,)).split_at == (3,)
    assert FewShotConfig().split_at == (10, 20)  # the default schedule stays, for when a splitting method is given
