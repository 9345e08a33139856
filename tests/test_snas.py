"""SNAS (``--sampler snas``): relaxed Gumbel-softmax weights, their temperature, the joint update, forks, resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gmgraph import data
from gmgraph.config import SearchConfig, SearchSettings, TrainConfig
from gmgraph.errors import ConfigError
from gmgraph.passes import restrict
from gmgraph.snas import TAU_MAX, TAU_MIN, SnasSampler, temperature
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer
from gmgraph.train.fewshot import FewShotConfig
from tests.sampler_runs import MOBILENET, assert_a_gm_argmax_run, gm_argmax, killed_and_resumed, search
from tests.train.conftest import straight_and_resumed, tiny_supernet


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64, seed=0)


@pytest.fixture(scope="module")
def digits_in_batches_of_8():
    """The digits in batches of 8: a resume's exactness does not depend on the batch size, and three few-shot runs
    of a GM split on batches of 8 cost about half of what they cost on 64."""
    return data.load("digits", batch_size=8, seed=0)


def test_weights_are_a_relaxed_one_hot_whose_temperature_follows_the_schedule(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="snas", epochs=4, steps_per_epoch=1),
                              seed=0)
    sampler = trainer.sampler
    taus = []
    for _ in range(4):
        trainer.train_epoch(quiet=True)
        taus.append(sampler.tau)
    assert (TAU_MAX, TAU_MIN) == (1.0, 0.1)  # the reference's defaults (snas-ws-201.sh)
    assert taus == pytest.approx([1.0, 0.775, 0.55, 0.325])  # tau_min + (tau_max - tau_min) * (1 - e / E)
    weights = sampler.weights()
    for z in weights.values():
        assert z.shape == (len(nb201.OPS),)
        assert torch.allclose(z.sum(), torch.tensor(1.0)) and (z > 0).all() and z.max() < 1  # soft, not one-hot
    # a lower temperature, the same noise: sharper weights
    state = sampler.device_generator.get_state()
    sampler.tau = 1.0
    warm = sampler.weights()
    sampler.device_generator.set_state(state)
    sampler.tau = 0.1
    cold = sampler.weights()
    assert all(cold[k].max() > warm[k].max() for k in warm)
    assert all(cold[k].argmax() == warm[k].argmax() for k in warm)


def test_the_temperature_is_settable_and_checked():
    gm = tiny_supernet()
    sampler = SnasSampler(gm, tau_max=2.0, tau_min=0.5)
    sampler.start_epoch(1, 3)
    assert sampler.tau == pytest.approx(temperature(1, 3, 2.0, 0.5)) == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="tau_min \\(2.0\\) must not exceed tau_max \\(1.0\\)"):
        SnasSampler(gm, tau_max=1.0, tau_min=2.0)
    with pytest.raises(ConfigError, match="tau_max must be a positive number"):
        SnasSampler(gm, tau_max=0)
    assert TrainConfig(sampler="snas", sampler_options={"tau_max": 3.0}).sampler_kwargs() == {"tau_max": 3.0}


def test_one_step_trains_weights_and_alphas_on_the_same_batch_by_the_same_loss(digits):
    config = TrainConfig(sampler="snas", device="cpu", grad_clip=None)
    trainer = SupernetTrainer(tiny_supernet(seed=1), digits, config, seed=3)
    twin = SupernetTrainer(tiny_supernet(seed=1), digits, config, seed=3)  # the same state, stepped by hand
    x, y = next(iter(digits.train))
    val = next(iter(digits.val))
    alphas = {k: a.detach().clone() for k, a in trainer.sampler.alphas.items()}
    weights = {n: p.detach().clone() for n, p in trainer.gm.named_parameters()}

    trainer.train_step(x, y, torch.arange(len(y)), val)  # a validation batch given: a joint sampler ignores it

    with twin.sampler.context():
        loss = F.cross_entropy(twin.gm(x), y)
    loss.backward()
    for label, alpha in trainer.sampler.alphas.items():
        assert torch.allclose(alpha.grad, twin.sampler.alphas[label].grad, atol=1e-7)  # the training loss's gradient
        assert not torch.equal(alpha.detach(), alphas[label])
    twin_params = dict(twin.gm.named_parameters())
    moved = 0
    for name, p in trainer.gm.named_parameters():
        if twin_params[name].grad is not None:
            assert torch.allclose(p.grad, twin_params[name].grad, atol=1e-7), name
            moved += not torch.equal(p.detach(), weights[name])
    assert moved > 0
    assert trainer.sampler.bilevel is False and trainer.sampler.joint is True


def test_the_latency_penalty_reaches_the_alphas_through_the_training_loss(digits):
    config = TrainConfig(sampler="snas", device="cpu")
    plain = SupernetTrainer(tiny_supernet(), digits, config, seed=0)
    costly = SupernetTrainer(tiny_supernet(), digits, config, seed=0,
                             arch_penalty=lambda alphas, space: sum(a.softmax(0)[0] for a in alphas.values()))
    x, y = next(iter(digits.train))
    probs = {label: a.detach().softmax(0) for label, a in plain.sampler.alphas.items()}  # before the step
    plain.train_step(x, y)
    costly.train_step(x, y)
    for label, alpha in costly.sampler.alphas.items():
        p = probs[label]
        extra = alpha.grad - plain.sampler.alphas[label].grad
        expected = p[0] * (torch.eye(len(p))[0] - p)  # d softmax(a)_0 / d a
        assert torch.allclose(extra, expected, atol=1e-6)


def test_a_fork_carries_the_alphas_restricted_and_renormalised_and_the_temperature(digits):
    gm = tiny_supernet()
    parent = SupernetTrainer(gm, digits, TrainConfig(sampler="snas", epochs=4, steps_per_epoch=1))
    parent.train_epoch(quiet=True)
    parent.train_epoch(quiet=True)
    ops = ["nor_conv_3x3", "avg_pool_3x3"]
    child = parent.fork(restrict(gm, {"1<-0": ops}))
    keep = [nb201.OPS.index(op) for op in ops]
    alpha, parent_alpha = child.sampler.alphas["1<-0"].detach(), parent.sampler.alphas["1<-0"].detach()
    assert torch.equal(alpha, parent_alpha[keep])
    assert torch.allclose(child.sampler.weights()["1<-0"].sum(), torch.tensor(1.0))
    assert torch.allclose(alpha.softmax(0), parent_alpha.softmax(0)[keep] / parent_alpha.softmax(0)[keep].sum())
    assert child.sampler.tau == parent.sampler.tau and child.sampler.tau_min == parent.sampler.tau_min
    adam_parent = parent.arch_optimizer.state[parent.sampler.alphas["1<-0"]]
    adam_child = child.arch_optimizer.state[child.sampler.alphas["1<-0"]]
    assert torch.equal(adam_child["exp_avg"], adam_parent["exp_avg"][keep])
    steps = int(adam_parent["step"])
    child.train_epoch(quiet=True)
    assert child.sampler.tau == pytest.approx(temperature(2, 4))
    assert int(adam_parent["step"]) == steps  # a child counts its own Adam steps (siblings must not share them)


def test_few_shot_resumes_bit_exactly_after_a_kill(digits_in_batches_of_8, tmp_path):
    # GM scores 2 of the 6 labels: two splits still happen, the kill falls between them
    config, train = FewShotConfig(method="gm", split_at=(1, 2), rounds=1, labels=("1<-0", "3<-2")), TrainConfig(
        sampler="snas", epochs=3, steps_per_epoch=1)
    straight, resumed = straight_and_resumed(digits_in_batches_of_8, config, train, tmp_path, kill_at=2)
    assert resumed.tree == straight.tree and [t["epoch"] for t in straight.tree] == [1, 2, 2]
    for a, b in zip(straight.leaves, resumed.leaves, strict=True):
        assert a.trainer.sampler.tau == b.trainer.sampler.tau
        assert all(torch.equal(a.trainer.sampler.alphas[k], b.trainer.sampler.alphas[k]) for k in a.space)
        sa, sb = a.gm.state_dict(), b.gm.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_argmax_search_and_the_latency_weight_accept_it():
    SearchSettings(train=TrainConfig(sampler="snas", latency_weight=0.1), search=SearchConfig(strategy="argmax"))
    with pytest.raises(ConfigError, match="use --sampler darts or gdas or snas"):
        SearchSettings(train=TrainConfig(sampler="uniform"), search=SearchConfig(strategy="argmax"))


# ------------------------------------------------------------------ the command

FLAGS = gm_argmax("snas")
SMALL_BATCHES = ["--batch-size", "4"]
"""The kill-and-resume runs on batches of 4 instead of 16: the same split, kill and resume for about 60% of the cost
(SNAS runs every op of the NB201 cell on each image)."""


def test_gm_with_snas_and_argmax_runs_end_to_end_on_mobilenet(tmp_path):
    # --width 2: the same 21 blocks of 7 ops, fewer channels in the later ones (the run is op-bound: a sixth faster)
    assert_a_gm_argmax_run(search([*FLAGS, *MOBILENET, "--width", "2"], tmp_path), "snas")


def test_a_run_killed_in_training_resumes_to_the_same_result(tmp_path, monkeypatch):
    straight, resumed = killed_and_resumed([*FLAGS, *SMALL_BATCHES], tmp_path, monkeypatch)
    assert_a_gm_argmax_run(straight, "snas")  # the straight run: the command end to end on nb201
