"""Each epoch's history carries the supernet's validation accuracy (report.html's validation curve), measured
without changing what training does."""

import pytest
import torch

from gmgraph.passes.derive import derive
from gmgraph.samplers import borrowed
from gmgraph.seeding import derived_seed
from gmgraph.train import SupernetTrainer, TrainConfig
from tests.train.conftest import tiny_supernet


def train(digits, sampler: str, *, measure: bool) -> SupernetTrainer:
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler=sampler, steps_per_epoch=3), seed=1)
    if not measure:
        trainer._val_accuracy = lambda batches: None
    for _ in range(2):
        trainer.train_epoch(quiet=True)
    return trainer


def same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("sampler", ["uniform", "gdas", "pada"])
def test_measuring_validation_accuracy_leaves_training_as_it_was(digits, sampler):
    measured, plain = train(digits, sampler, measure=True), train(digits, sampler, measure=False)
    assert [0.0 <= h["val_accuracy"] <= 1.0 for h in measured.history] == [True, True]
    assert all("val_accuracy" not in h for h in plain.history)
    drop = ("val_accuracy", "seconds")
    assert [{k: v for k, v in h.items() if k not in drop} for h in measured.history] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in plain.history]
    a, b = measured.state_dict(), plain.state_dict()
    for part in ("model", "sampler", "rng", "optimizer", "arch_optimizer"):  # weights, BN statistics, streams
        assert same(a[part], b[part]), part


def test_validation_accuracy_is_that_of_a_sampled_path_on_batch_statistics(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="uniform", steps_per_epoch=3), seed=1)
    stats = trainer.train_epoch(quiet=True)  # 3 steps: one validation batch
    paths = torch.Generator().manual_seed(derived_seed(1, "val@1"))
    with borrowed(trainer.sampler, paths) as arch:
        pass
    net = derive(trainer.gm, arch).train()  # BatchNorm on the batch's statistics (the copy's may change)
    x, y = next(iter(digits.val))[:2]
    with torch.no_grad():
        expected = (net(x).argmax(1) == y).float().mean().item()
    assert stats["val_accuracy"] == pytest.approx(expected)
