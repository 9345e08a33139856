"""benchmarks/bench_backward.py's baseline is the trainer as it was: the same updates, more gradients."""

import doctest
from itertools import islice

import bench_backward
import pytest
import torch

from gmgraph import data
from gmgraph.train import SupernetTrainer, TrainConfig
from tests.train.conftest import tiny_supernet


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64, seed=0)


@pytest.mark.parametrize("sampler", ["darts", "gdas"])
def test_each_step_differentiates_only_what_it_updates_with_the_same_result(digits, sampler):
    targeted = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler=sampler), seed=0)
    full = bench_backward.FullBackward(tiny_supernet(), digits, TrainConfig(sampler=sampler), seed=0)
    batches, val = list(islice(digits.train, 3)), list(islice(digits.val, 3))
    for (x, y), v in zip(batches, val):
        for trainer in (targeted, full):
            trainer.train_step(x, y, torch.arange(len(y)), v)

    alphas = list(targeted.sampler.alphas.values())
    weight_grads = [p.grad.clone() for p in targeted.gm.parameters() if p.grad is not None]
    alpha_grads = [a.grad.clone() for a in alphas]
    targeted._arch_step(*val[0])  # the architecture step leaves every weight gradient alone
    after = [p.grad for p in targeted.gm.parameters() if p.grad is not None]
    assert len(after) == len(weight_grads) and all(torch.equal(a, b) for a, b in zip(weight_grads, after))
    assert not all(torch.equal(a, b.grad) for a, b in zip(alpha_grads, alphas))
    alpha_grads = [a.grad.clone() for a in alphas]
    x, y = batches[0]
    targeted._weight_step(x, y, torch.arange(len(y)))  # and the weight step every alpha's
    assert all(torch.equal(a, b.grad) for a, b in zip(alpha_grads, alphas))
    assert all(a.requires_grad for a in alphas)  # constants only during the weight step's forward
    # Before those two extra steps, both trainers had made the same updates, bit for bit on any CPU: a targeted
    # backward runs, for each gradient it does compute, the same kernels on the same inputs in the same process as
    # the full one (a conv's input and weight gradients are separate kernels; skipping one reorders no sum).
    full._arch_step(*val[0])
    full._weight_step(x, y, torch.arange(len(y)))
    for a, b in zip(targeted.gm.parameters(), full.gm.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(alphas, full.sampler.alphas.values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_doctests():
    assert doctest.testmod(bench_backward).failed == 0
