"""Second-order DARTS (``--darts-order 2``): the unrolled hypergradient against autograd, and its place in training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gmgraph import data
from gmgraph.cli import main
from gmgraph.config import SearchConfig, SearchSettings, TrainConfig
from gmgraph.errors import ConfigError, TrainError
from gmgraph.passes import restrict
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer
from gmgraph.train.fewshot import FewShotConfig
from gmgraph.train.unrolled import hypergradient
from tests.sampler_runs import MOBILENET, assert_a_gm_argmax_run, gm_argmax, search
from tests.train.conftest import straight_and_resumed, tiny_supernet
from tests.train.test_device import HostReads


class Mixed(nn.Module):
    """A two-op mixture weighted by softmax(alpha), then a classifier: a small DARTS cell."""

    def __init__(self):
        super().__init__()
        self.ops = nn.ModuleList([nn.Linear(5, 6), nn.Linear(5, 6)])
        self.head = nn.Linear(6, 3)
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2], dtype=torch.float64))

    def forward(self, x, params=None):
        p = dict(self.named_parameters()) if params is None else params
        w = p["alpha"].softmax(0)
        h = sum(w[i] * F.linear(x, p[f"ops.{i}.weight"], p[f"ops.{i}.bias"]) for i in range(2))
        return F.linear(torch.tanh(h), p["head.weight"], p["head.bias"])


def test_the_hypergradient_is_autograd_through_one_explicit_unrolled_sgd_step():
    torch.manual_seed(0)
    model = Mixed().double()
    xt, yt = torch.randn(16, 5, dtype=torch.float64), torch.randint(3, (16,))
    xv, yv = torch.randn(16, 5, dtype=torch.float64), torch.randint(3, (16,))
    weights = [(n, p) for n, p in model.named_parameters() if n != "alpha"]
    params = [p for _, p in weights]
    buffers = [torch.randn_like(p) for p in params]
    lr, mu, wd = 0.1, 0.9, 3e-4
    before = [p.detach().clone() for p in params]

    hyper, val_loss = hypergradient(lambda: F.cross_entropy(model(xt), yt), lambda: F.cross_entropy(model(xv), yv),
                                    params, [model.alpha], lr=lr, momentum=mu, weight_decay=wd, buffers=buffers)

    assert all(torch.equal(p, b) for p, b in zip(params, before))  # the weights are restored bit for bit
    grads = torch.autograd.grad(F.cross_entropy(model(xt), yt), params, create_graph=True)
    unrolled = {n: p - lr * (mu * b + g + wd * p) for (n, p), b, g in zip(weights, buffers, grads)}
    exact_loss = F.cross_entropy(model(xv, {**unrolled, "alpha": model.alpha}), yv)
    exact = torch.autograd.grad(exact_loss, model.alpha)[0]
    assert torch.allclose(val_loss, exact_loss.detach())
    # central differences: the error is O(eps^2) with eps = 0.01 / ||v||
    assert torch.allclose(hyper[0], exact, rtol=1e-5, atol=1e-8), (hyper[0], exact)
    first_order = torch.autograd.grad(F.cross_entropy(model(xv), yv), model.alpha)[0]
    assert not torch.allclose(hyper[0], first_order, rtol=1e-3)  # the second-order term is really there


def test_the_trainer_step_restores_weights_and_running_statistics_exactly(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="darts", darts_order=2, device="cpu"),
                              seed=0)
    batches, val = iter(digits.train), iter(digits.val)
    x, y = next(batches)
    trainer.train_step(x, y, torch.arange(len(y)), next(val))  # momentum buffers exist from here on
    state = {k: v.clone() for k, v in trainer.gm.state_dict().items()}
    alphas = {k: a.detach().clone() for k, a in trainer.sampler.alphas.items()}
    x, y = next(batches)
    loss = trainer.second_order_pass(next(val), (x, y))
    after = trainer.gm.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)  # weights and BN buffers untouched
    assert all(torch.equal(alphas[k], a) for k, a in trainer.sampler.alphas.items())  # the trainer steps them
    assert torch.isfinite(loss) and all(torch.isfinite(a.grad).all() for a in trainer.sampler.alphas.values())
    before = {k: a.detach().clone() for k, a in trainer.sampler.alphas.items()}
    trainer.train_step(x, y, torch.arange(len(y)), next(val))
    assert any(not torch.equal(before[k], a) for k, a in trainer.sampler.alphas.items())


def test_a_steady_state_second_order_step_reads_nothing_back(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="darts", darts_order=2, device="cpu"),
                              seed=0)
    batches, val = iter(digits.train), iter(digits.val)
    x, y = next(batches)
    trainer.train_step(x, y, torch.arange(len(y)), next(val))
    with HostReads() as mode:
        for _ in range(2):
            x, y = next(batches)
            trainer.train_step(x, y, torch.arange(len(y)), next(val))
    assert mode.reads == []


def test_the_setting_is_checked_and_reaches_the_sampler():
    assert TrainConfig(sampler="darts", darts_order=2).sampler_kwargs() == {"order": 2}
    assert TrainConfig(sampler="darts").sampler_kwargs() == {}
    with pytest.raises(ConfigError, match="--darts-order 2 .* add --sampler darts \\(not 'gdas'\\)"):
        TrainConfig(sampler="gdas", darts_order=2)
    with pytest.raises(ConfigError, match="darts-order must be 1 or 2, got 3"):
        TrainConfig(sampler="darts", darts_order=3)
    settings = SearchSettings(train=TrainConfig(sampler="darts", darts_order=2), search=SearchConfig(strategy="argmax"),
                              final_epochs=1)
    assert settings.final_train().darts_order == 1  # the derived network trains with plain SGD


def test_data_parallel_training_refuses_it(digits):
    trainer = SupernetTrainer(tiny_supernet(), digits, TrainConfig(sampler="darts", darts_order=2, device="cpu"))
    with pytest.raises(TrainError, match="darts sampler trains in one process"):
        trainer.distribute(object())


def test_a_fork_keeps_the_order_and_the_restricted_alphas(digits):
    gm = tiny_supernet()
    parent = SupernetTrainer(gm, digits, TrainConfig(sampler="darts", darts_order=2, epochs=3, steps_per_epoch=1))
    parent.train_epoch(quiet=True)
    child = parent.fork(restrict(gm, {"1<-0": ["nor_conv_3x3", "avg_pool_3x3"]}))
    keep = [nb201.OPS.index("nor_conv_3x3"), nb201.OPS.index("avg_pool_3x3")]
    assert child.sampler.order == 2
    assert torch.equal(child.sampler.alphas["1<-0"].detach(), parent.sampler.alphas["1<-0"].detach()[keep])
    adam_parent = parent.arch_optimizer.state[parent.sampler.alphas["1<-0"]]
    adam_child = child.arch_optimizer.state[child.sampler.alphas["1<-0"]]
    assert torch.equal(adam_child["exp_avg"], adam_parent["exp_avg"][keep])
    child.train_epoch(quiet=True)


def test_few_shot_resumes_bit_exactly_after_a_kill(tmp_path):
    # batches of 8: a resume's exactness does not depend on the batch size, and the three runs cost less
    digits = data.load("digits", batch_size=8, seed=0)
    config, train = FewShotConfig(method="gm", split_at=(1,), rounds=1, labels=("1<-0", "3<-2")), TrainConfig(
        sampler="darts", darts_order=2, epochs=2, steps_per_epoch=1)
    straight, resumed = straight_and_resumed(digits, config, train, tmp_path, kill_at=1)
    for a, b in zip(straight.leaves, resumed.leaves, strict=True):
        assert all(torch.equal(a.trainer.sampler.alphas[k], b.trainer.sampler.alphas[k]) for k in a.space)
        sa, sb = a.gm.state_dict(), b.gm.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


# NB201 on batches of 4 (as MOBILENET's): the unrolled step runs the whole cell several times per image. MobileNet
# at --width 2: the same 21 blocks of 7 ops, fewer channels in the later ones. The claim is that the command runs
# end to end on each space, at any size.
@pytest.mark.parametrize("space", [["--batch-size", "4"], [*MOBILENET, "--width", "2"]], ids=["nb201", "mobilenet"])
def test_gm_with_second_order_darts_and_argmax_runs_end_to_end(tmp_path, space):
    report = search([*gm_argmax("darts"), "--darts-order", "2", *space], tmp_path)
    assert report["settings"]["train"]["darts_order"] == 2
    assert_a_gm_argmax_run(report, "darts")


def test_the_command_refuses_it_with_another_sampler_in_one_line(tmp_path, capsys):
    assert main(["search", "--sampler", "uniform", "--darts-order", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--darts-order 2" in err and "add --sampler darts" in err


def test_the_command_refuses_it_with_nproc_before_any_worker_starts(tmp_path, capsys):
    assert main(["search", "--sampler", "darts", "--darts-order", "2", "--nproc", "2", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--darts-order 2 trains in one process" in err and "leave out --nproc" in err
    assert not (tmp_path / "run").exists()
