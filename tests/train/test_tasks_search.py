"""A few-shot search from Python for each task, on the user's own DataLoaders (their collate_fn called): train,
split by gradient matching, pick the best leaf architecture by the task's metric."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph.choice import Choice
from gmgraph.search import evaluate
from gmgraph.train import FewShotConfig, TrainConfig, locate, run_fewshot


def _dicts(calls):
    def collate(samples):
        calls.append(len(samples))
        return {"image": torch.stack([s[0] for s in samples]), "target": torch.stack([s[1] for s in samples])}
    return collate


def _data(task, g):
    x = torch.randn(64, 1, 6, 6, generator=g)
    if task == "classification":
        return x, (x.mean(dim=(1, 2, 3)) > 0).long()
    if task == "regression":
        return x, x.mean(dim=(1, 2, 3)) * 6
    return x, (x[:, 0] > 0).long()  # segmentation: each pixel's sign


def _net(task):
    outputs = {"classification": 2, "regression": 1, "segmentation": 2}[task]
    body = [nn.Conv2d(1, 4, 3, padding=1), Choice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, "act"),
            Choice({"3x3": nn.Conv2d(4, 4, 3, padding=1), "1x1": nn.Conv2d(4, 4, 1)}, "mix")]
    head = [nn.Conv2d(4, outputs, 1)] if task == "segmentation" else [nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                                                        nn.Linear(4, outputs)]
    return nn.Sequential(*body, *head)


@pytest.mark.parametrize("task", ["classification", "regression", "segmentation"])
def test_a_few_shot_search_runs_on_the_users_loaders_for_each_task(task):
    g = torch.Generator().manual_seed(0)
    calls = []
    loaders = [DataLoader(TensorDataset(*_data(task, g)), batch_size=16, shuffle=i == 0, collate_fn=_dicts(calls))
               for i in range(3)]
    torch.manual_seed(0)
    root = gmgraph.trace(_net(task))
    result = run_fewshot(root, loaders, FewShotConfig(method="gm", split_at=(1,), rounds=2),
                         TrainConfig(epochs=2, lr=0.05), seed=0, quiet=True, task=task)
    assert calls and result.tree[0]["label"] in ("act", "mix") and len(result.leaves) == 2
    scores = {}
    for act in ("relu", "tanh", "id"):
        arch = {"act": act, "mix": "3x3"}
        scores[act] = evaluate(locate(result, arch).gm, arch, loaders[1], calib_loader=loaders[0], bn_batches=1,
                               task=task)
    assert all(-1.0 < score <= 1.0 for score in scores.values())  # accuracy, R² or mean IoU
    history = result.leaves[0].trainer.history
    assert history[-1]["loss"] < history[0]["loss"]  # each task's loss goes down
    if task != "regression":  # two epochs of 4 steps: enough to separate two classes, not to fit a regression
        assert max(scores.values()) > 0.5
