"""The sandwich sampler: largest, smallest and N random subnets per step, gradients added, one optimizer step."""

import copy
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph.choice import Choice
from gmgraph.config import TrainConfig
from gmgraph.elastic import ConvView, NormView
from gmgraph.errors import ConfigError, TrainError
from gmgraph.label_sizes import label_kind, largest_first
from gmgraph.sampler_table import make_sampler
from gmgraph.samplers import SandwichSampler
from gmgraph.spaces import nb201
from gmgraph.train.loop import SupernetTrainer
from gmgraph.train.sandwich import sandwich_loss, sandwich_pass
from tests.conftest import tiny_search


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


class Elastic(nn.Module):
    """A kernel, a width (conv -> BN -> conv), a depth and an op choice; ops listed out of size order on purpose."""

    def __init__(self):
        super().__init__()
        stem = nn.Conv2d(1, 4, 5, padding=2)
        self.kernel = Choice({"3x3": ConvView(stem, kernel=3), "5x5": ConvView(stem, kernel=5),
                              "1x1": ConvView(stem, kernel=1)}, "kernel")
        expand, bn, project = nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)
        widths = (4, 8, 6)
        self.wide = Choice({f"w{c}": ConvView(expand, out_channels=c) for c in widths}, "width")
        self.norm = Choice({f"w{c}": NormView(bn, c) for c in widths}, "width")
        self.narrow = Choice({f"w{c}": ConvView(project, in_channels=c) for c in widths}, "width")
        stage = nn.Sequential(Block(4), Block(4), Block(4))
        self.depth = Choice({"d2": stage[:2], "d3": stage, "d1": stage[:1]}, "depth")
        self.op = Choice({"skip": nn.Identity(), "conv": nn.Conv2d(4, 4, 3, padding=1)}, "op")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        x = torch.relu(self.kernel(x))
        x = x + self.narrow(torch.relu(self.norm(self.wide(x))))
        return self.head(self.op(self.depth(x)))


LARGEST = {"kernel": "5x5", "width": "w8", "depth": "d3", "op": "conv"}
SMALLEST = {"kernel": "1x1", "width": "w4", "depth": "d1", "op": "skip"}


def elastic_graph() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return gmgraph.trace(Elastic())


def loaders(n: int = 16, batch: int = 8):
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch), None


def trainer_for(gm, **config) -> SupernetTrainer:
    settings = {"sampler": "sandwich", "epochs": 2, "steps_per_epoch": 1, "device": "cpu", "grad_clip": None,
                **config}
    return SupernetTrainer(gm, loaders(), TrainConfig(**settings), seed=0)


def record_paths(gm) -> list[dict[str, str]]:
    """Per forward of ``gm``: the op every Choice ran (read when it ran, by a forward pre-hook)."""
    paths: list[dict[str, str]] = []

    def seen(module, _):
        if module.label == "kernel":  # the first Choice of a forward starts a new path
            paths.append({})
        paths[-1][module.label] = module.active

    for module in gm.modules():
        if isinstance(module, Choice):
            module.register_forward_pre_hook(seen)
    return paths


def test_labels_are_classified_and_ordered_by_size_not_by_position():
    groups = gmgraph.graph.choices(elastic_graph())
    assert {label: label_kind(group) for label, group in groups.items()} == {
        "kernel": "kernel", "width": "width", "depth": "depth", "op": "op"}
    assert largest_first(groups["kernel"]) == ("5x5", "3x3", "1x1")
    assert largest_first(groups["width"]) == ("w8", "w6", "w4")
    assert largest_first(groups["depth"]) == ("d3", "d2", "d1")
    assert largest_first(groups["op"]) == ("conv", "skip")


def test_on_nb201_op_choices_rank_by_parameters_and_equal_sizes_keep_the_order():
    sampler = make_sampler("sandwich", gmgraph.trace(nb201.supernet(C=4, N=1)), random=0)
    largest, smallest = sampler.step_archs()
    assert set(largest.values()) == {"nor_conv_3x3"}
    assert set(smallest.values()) == {"none"}  # none, skip and pooling have no parameters: the first wins


def test_a_step_runs_the_largest_the_smallest_and_n_random_paths_and_steps_once(monkeypatch):
    gm = elastic_graph()
    paths = record_paths(gm)
    trainer = trainer_for(gm, sandwich_random=3)
    steps = []
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: steps.append(1))
    expected = copy.deepcopy(trainer.sampler).step_archs()  # the same generator state: the same draws
    x, y = next(iter(loaders()[0]))
    trainer.train_step(x, y)
    assert len(paths) == 5 and steps == [1]
    assert paths == expected
    assert paths[0] == LARGEST and paths[1] == SMALLEST


@pytest.mark.parametrize("distill", [0.0, 1.0, 0.5])
def test_gradients_are_the_sum_of_the_paths_losses_gradients(distill):
    gm = elastic_graph()
    trainer = trainer_for(gm, sandwich_random=1, distill=distill)
    manual = copy.deepcopy(gm)
    archs = copy.deepcopy(trainer.sampler).step_archs()
    x, y = next(iter(loaders()[0]))
    loss, hits, logits = sandwich_pass(trainer, x, y)

    total, teacher = 0.0, None
    for arch in archs:  # by hand: the largest from the labels, the rest against its detached logits
        with gmgraph.use(manual, arch):
            out = manual(x)
        ce = nn.functional.cross_entropy(out, y)
        if teacher is None:
            total, teacher = total + ce, out.detach()
            continue
        kl = nn.functional.kl_div(out.log_softmax(1), teacher.softmax(1), reduction="batchmean")
        total = total + (1 - distill) * ce + distill * kl
    total.backward()
    for (name, p), q in zip(gm.named_parameters(), manual.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    with gmgraph.use(manual, archs[0]):
        first = manual(x)
    torch.testing.assert_close(logits, first)  # the step reports the largest subnet
    assert float(loss) == pytest.approx(float(nn.functional.cross_entropy(first, y).detach()))


def test_the_distillation_target_is_the_largest_subnets_detached_output():
    logits = torch.randn(4, 10, requires_grad=True)
    teacher = torch.randn(4, 10, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    sandwich_loss(logits, y, teacher, 1.0).backward()
    assert teacher.grad is None and logits.grad is not None
    with torch.no_grad():
        expected = (teacher.softmax(1) * (teacher.log_softmax(1) - logits.log_softmax(1))).sum(1).mean()
        assert float(sandwich_loss(logits, y, teacher, 1.0)) == pytest.approx(float(expected))
        assert float(sandwich_loss(logits, y, None, 1.0)) == pytest.approx(float(nn.functional.cross_entropy(logits, y)))


def test_training_epochs_run_and_a_fork_keeps_the_options():
    gm = elastic_graph()
    trainer = trainer_for(gm, sandwich_random=1, distill=0.5)
    stats = trainer.train_epoch(quiet=True)
    assert stats["steps"] == 1 and stats["loss"] > 0
    child = gmgraph.passes.restrict(gm, {"kernel": ("3x3", "5x5")})
    fork = trainer.fork(child)
    assert isinstance(fork.sampler, SandwichSampler) and (fork.sampler.random, fork.sampler.distill) == (1, 0.5)
    assert fork.sampler.step_archs()[0]["kernel"] == "5x5" and fork.sampler.step_archs()[1]["kernel"] == "3x3"


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="sandwich-random must be 0 or more"):
        TrainConfig(sampler="sandwich", sandwich_random=-1)
    with pytest.raises(ConfigError, match="distill must be a number from 0 to 1"):
        TrainConfig(sampler="sandwich", distill=1.5)
    with pytest.raises(ConfigError, match="add --sampler sandwich"):
        TrainConfig(sampler="uniform", distill=0.5)
    with pytest.raises(ConfigError, match="sandwich random"):
        make_sampler("sandwich", elastic_graph(), random=-2)


def test_data_parallel_training_is_refused_with_a_clear_error():
    trainer = trainer_for(elastic_graph())
    with pytest.raises(TrainError, match="run without --nproc"):
        trainer.distribute(object())


def test_gmgraph_search_with_the_sandwich_sampler_on_nb201(tmp_path):
    tiny_search(tmp_path / "run", "synthetic", export="false", sampler="sandwich", sandwich_random=1, batch_size=8, method="oneshot",
                epochs=1, steps_per_epoch=1, evaluations=1)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["train"]["sampler"] == "sandwich"


def test_sandwich_with_nproc_is_refused_before_any_worker_starts(tmp_path, monkeypatch, capsys):
    from gmgraph.cli import main
    from gmgraph.train import distributed

    monkeypatch.setattr(distributed, "launch", lambda *a, **k: pytest.fail("a worker was started"))
    code = main(["search", "--sampler", "sandwich", "--nproc", "2", "--data", "synthetic", "--out", str(tmp_path / "r")])
    assert code == 2 and "--sampler sandwich trains in one process" in capsys.readouterr().err
