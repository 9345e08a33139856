import pytest
import torch

from gmgraph.errors import ConfigError
from gmgraph.passes import restrict
from gmgraph.sampler_table import make_sampler
from gmgraph.samplers import PadaSampler, borrowed
from gmgraph.spaces import nb201
from tests.train.conftest import tiny_supernet


def test_uniform_draws_every_op_and_is_seeded():
    gm = tiny_supernet()
    a, b = make_sampler("uniform", gm, seed=3), make_sampler("uniform", gm, seed=3)
    seen = set()
    for _ in range(200):
        with a.context():
            arch = dict(a.last_arch)
        with b.context():
            assert b.last_arch == arch
        seen.add(arch["1<-0"])
    assert seen == set(nb201.OPS)


def test_gdas_runs_one_op_per_choice_and_anneals_tau():
    gm = tiny_supernet()
    sampler = make_sampler("gdas", gm, seed=0)
    weights = sampler.weights()
    for w in weights.values():
        assert torch.allclose(w.detach(), torch.nn.functional.one_hot(w.argmax(), 5).float())
    sampler.start_epoch(0, 5)
    assert sampler.tau == 10.0
    sampler.start_epoch(4, 5)
    assert sampler.tau == pytest.approx(0.1)


def test_borrowed_does_not_move_the_sampler_stream():
    gm = tiny_supernet()
    a, b = make_sampler("uniform", gm, seed=1), make_sampler("uniform", gm, seed=1)
    with borrowed(a, torch.Generator().manual_seed(99)):
        pass
    with a.context(), b.context():
        assert a.last_arch == b.last_arch


def fake_step(sampler: PadaSampler, op: str, scale: float) -> None:
    arch = {label: op for label in sampler.space}
    sampler.last_arch = arch
    for group in sampler.groups.values():
        for module in group:
            for p in module.ops[op].parameters():
                p.grad = torch.full_like(p, scale)
    sampler.after_backward()
    for group in sampler.groups.values():
        for module in group:
            for p in module.ops[op].parameters():
                p.grad = None


def test_pada_probabilities_stay_a_distribution_and_favour_large_gradients():
    gm = tiny_supernet()
    sampler = make_sampler("pada", gm, seed=0, dataset_size=10)
    total = 5
    for epoch in range(total):
        fake_step(sampler, "nor_conv_3x3", 1.0)
        fake_step(sampler, "nor_conv_1x1", 0.01)
        sampler.end_epoch(epoch, total)
        for probs in sampler.probs.values():
            assert torch.all(probs >= 0) and probs.sum().item() == pytest.approx(1.0)
    probs = sampler.probs["1<-0"]
    conv3, conv1 = nb201.OPS.index("nor_conv_3x3"), nb201.OPS.index("nor_conv_1x1")
    assert sampler.tau == 0.8  # epoch / epochs after the last epoch, as the reference
    # all-ones gradients: sum of sqrt(#weights) over the 3 cells, 84 for conv3x3 and 0.01 * 28 for conv1x1
    assert probs[conv3].item() == pytest.approx(0.8 * 300 / 301 + 0.04, rel=1e-5)
    assert probs[conv1].item() == pytest.approx(0.8 * 1 / 301 + 0.04, rel=1e-5)
    assert probs[nb201.OPS.index("none")].item() == pytest.approx(0.04)  # parameter-free: g = 0


def test_pada_free_ops_mean_gives_parameter_free_ops_a_fair_share():
    sampler = make_sampler("pada", tiny_supernet(), seed=0, free_ops="mean")
    fake_step(sampler, "nor_conv_3x3", 1.0)
    fake_step(sampler, "nor_conv_1x1", 0.01)
    sampler.end_epoch(4, 5)
    probs = sampler.probs["1<-0"]
    conv3, conv1 = nb201.OPS.index("nor_conv_3x3"), nb201.OPS.index("nor_conv_1x1")
    assert probs[conv3] > probs[nb201.OPS.index("none")] > probs[conv1]


def test_pada_data_weights_follow_per_sample_error():
    gm = tiny_supernet()
    sampler = make_sampler("pada", gm, seed=0, dataset_size=4)
    assert sampler.data_weights() is None  # tau = 0 at the start: plain shuffle
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0], [10.0, 0.0]])
    sampler.observe(logits, torch.tensor([0, 0, 0, 1]), torch.arange(4))
    sampler.end_epoch(3, 5)
    q = sampler.data_weights()
    assert q.sum().item() == pytest.approx(1.0)
    assert q[0] < q[2] < q[1] and q[3] == pytest.approx(q[1])


def test_fork_restricts_per_op_state():
    gm = tiny_supernet()
    sampler = make_sampler("pada", gm, seed=0, dataset_size=3)
    sampler.grad_norm["1<-0"].copy_(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    sampler.tau = 1.0
    child = restrict(gm, {"1<-0": ["nor_conv_1x1", "nor_conv_3x3"]})
    forked = sampler.fork(child, seed=1)
    assert forked.grad_norm["1<-0"].tolist() == [3.0, 4.0]
    assert forked.probs["1<-0"].tolist() == pytest.approx([3 / 7, 4 / 7])


def test_unknown_sampler_or_option():
    gm = tiny_supernet()
    with pytest.raises(ConfigError, match="unknown sampler 'spos'"):
        make_sampler("spos", gm)
    with pytest.raises(ConfigError, match="bad option for sampler 'uniform'"):
        make_sampler("uniform", gm, tau=3)
