"""PA&DA against the authors' code (ShunLu91/PA-DA, nasbench201/train_panda_201.py, commit 9060c3a).

Each test replays the reference's rules, written out step by step in plain
Python (its per-op gradient-norm average, its per-sample score average, its
tau schedule), and compares them with what ``PadaSampler`` computes.
"""

import pytest
import torch
import torch.nn.functional as F

from gmgraph import data
from gmgraph.errors import ConfigError
from gmgraph.sampler_table import make_sampler
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig
from tests.train.conftest import tiny_supernet


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64, seed=0)


def random_step(sampler, generator: torch.Generator) -> dict[str, float]:
    """Give the ops of a random path random gradients, run ``after_backward``; return op -> summed norms."""
    arch = {label: ops[int(torch.randint(len(ops), (1,), generator=generator))]
            for label, ops in sampler.space.items()}
    sampler.last_arch = arch
    totals = {op: 0.0 for op in nb201.OPS}
    for label, op in arch.items():
        for module in sampler.groups[label]:
            for p in module.ops[op].parameters():
                p.grad = torch.randn(p.shape, generator=generator)
                totals[op] += p.grad.double().norm().item()  # the reference adds the norm of each tensor
    sampler.after_backward()
    for label, op in arch.items():
        for module in sampler.groups[label]:
            for p in module.ops[op].parameters():
                p.grad = None
    return {op: total / list(arch.values()).count(op) for op, total in totals.items() if total != 0}


def reference_probs(steps: list[dict[str, float]], epoch: int, epochs: int) -> torch.Tensor:
    """The reference's path probabilities after an epoch of ``steps`` (op -> normalised norm of each step)."""
    g = {op: 0.0 for op in nb201.OPS}  # reset every epoch
    for step in steps:
        for op, x in step.items():
            g[op] = (g[op] + x) / 2  # np.mean([old, new])
    tau = epoch / epochs
    total = sum(g.values())
    return torch.tensor([tau * g[op] / total + (1 - tau) / len(g) for op in nb201.OPS], dtype=torch.float64)


def test_path_probabilities_replay_the_reference_over_three_epochs():
    sampler = make_sampler("pada", tiny_supernet(), seed=0)
    generator = torch.Generator().manual_seed(5)
    epochs = 3
    for epoch in range(epochs):
        steps = [random_step(sampler, generator) for _ in range(6)]
        sampler.end_epoch(epoch, epochs)
        expected = reference_probs(steps, epoch, epochs)
        for label, probs in sampler.probs.items():  # one distribution shared by every edge
            assert probs.double().tolist() == pytest.approx(expected.tolist(), rel=1e-5), (epoch, label)
    assert sampler.probs["1<-0"][nb201.OPS.index("none")].item() == pytest.approx((1 - 2 / 3) / 5)


def test_tau_is_epoch_over_epochs_so_the_first_two_epochs_sample_uniformly():
    sampler = make_sampler("pada", tiny_supernet(), seed=0, dataset_size=4)
    assert sampler.data_weights() is None  # the first epoch: a plain shuffle
    random_step(sampler, torch.Generator().manual_seed(0))
    sampler.observe(torch.tensor([[4.0, 0.0]] * 2), torch.tensor([0, 1]), torch.tensor([0, 1]))
    sampler.end_epoch(0, 10)
    assert sampler.tau == 0.0
    assert all(torch.equal(p, torch.full((5,), 0.2)) for p in sampler.probs.values())
    assert sampler.data_weights().tolist() == [0.25] * 4  # uniform, but drawn with replacement from now on
    sampler.end_epoch(9, 10)
    assert sampler.tau == pytest.approx(0.9)


def reference_scores(size: int, observations: list[tuple[int, float]]) -> torch.Tensor:
    """The reference's per-sample scores after an epoch: 0 where unseen, a running pairwise mean where repeated."""
    scores = [0.0] * size
    for i, value in observations:
        scores[i] = (scores[i] + value) / 2 if scores[i] != 0 else value
    return torch.tensor(scores, dtype=torch.float64)


def observe_batches(sampler, batches, generator: torch.Generator) -> list[tuple[int, float]]:
    observations = []
    for index in batches:
        index = torch.tensor(index)
        logits, targets = torch.randn(len(index), 3, generator=generator), torch.randint(3, (len(index),), generator=generator)
        sampler.observe(logits, targets, index)
        scores = (logits.softmax(1) - F.one_hot(targets, 3).float()).norm(dim=1)
        observations += list(zip(index.tolist(), scores.tolist()))
    return observations


@pytest.mark.parametrize("repeats", ["mean", "last"])
def test_data_weights_replay_the_reference_with_repeated_and_unseen_samples(repeats):
    size, epochs = 12, 4
    sampler = make_sampler("pada", tiny_supernet(), seed=0, dataset_size=size, repeats=repeats)
    generator = torch.Generator().manual_seed(1)
    epoch_batches = [[[0, 3, 3, 5], [3, 7, 0, 0], [3, 9, 9, 9]],  # repeats inside a batch and across batches
                     [[1, 2, 2, 4], [6, 1, 8, 2]]]  # the next epoch: 0, 3, 5, 7, 9 unseen
    for epoch, batches in enumerate(epoch_batches, start=2):
        observations = observe_batches(sampler, batches, generator)
        sampler.end_epoch(epoch, epochs)
        if repeats == "mean":
            s = reference_scores(size, observations)
        else:
            s = torch.zeros(size, dtype=torch.float64)
            for i, value in observations:
                s[i] = value
        tau = epoch / epochs
        expected = tau * s / s.sum() + (1 - tau) / size
        assert sampler.data_weights().tolist() == pytest.approx(expected.tolist(), rel=1e-6)
        assert (s == 0).sum() == size - len({i for batch in batches for i in batch})


def test_repeats_mean_differs_from_last_where_a_sample_repeats():
    sampler = make_sampler("pada", tiny_supernet(), seed=0, dataset_size=2, repeats="mean")
    logits = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    sampler.observe(logits, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    first, second = 2 ** -0.5, (2 * (1 - torch.tensor([5.0, 0.0]).softmax(0)[0].item()) ** 2) ** 0.5
    assert sampler.sample_scores.tolist() == pytest.approx([(first + second) / 2, 2 ** -0.5])


def test_pool_label_keeps_one_distribution_per_label():
    sampler = make_sampler("pada", tiny_supernet(), seed=0, pool="label")
    arch = {label: "nor_conv_1x1" for label in sampler.space}
    arch["1<-0"] = "nor_conv_3x3"
    sampler.last_arch = arch
    for label, op in arch.items():
        for module in sampler.groups[label]:
            for p in module.ops[op].parameters():
                p.grad = torch.ones_like(p)
    sampler.after_backward()
    sampler.end_epoch(1, 2)
    conv1, conv3 = nb201.OPS.index("nor_conv_1x1"), nb201.OPS.index("nor_conv_3x3")
    assert sampler.probs["1<-0"][conv3].item() == pytest.approx(0.5 + 0.1)  # tau = 1/2 on its only op
    assert sampler.probs["2<-1"][conv1].item() == pytest.approx(0.5 + 0.1)


def test_loss_is_the_plain_batch_mean_while_data_are_drawn_from_q(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="pada", epochs=4, steps_per_epoch=2))
    for _ in range(2):  # tau = 0, then 1/4
        trainer.train_epoch(quiet=True)
    q = trainer.sampler.data_weights()
    assert q is not None and q.max() > q.min()  # the next epoch draws non-uniformly
    x, y = next(iter(digits.train))
    loss, _, logits = trainer._weight_pass(x, y)
    assert loss.item() == F.cross_entropy(logits, y).item()  # not reweighted by 1 / (N q)


@pytest.mark.parametrize("option, value", [("pool", "edge"), ("free_ops", "uniform"), ("repeats", "first"),
                                           ("momentum", 1.0)])
def test_bad_options_are_config_errors(option, value):
    with pytest.raises(ConfigError, match=f"pada {option} must"):
        make_sampler("pada", tiny_supernet(), **{option: value})
