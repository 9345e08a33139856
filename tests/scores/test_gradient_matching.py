import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.choice import Choice, Neg
from gmgraph.errors import ConfigError, DataError, SpaceError
from gmgraph.scores import best_partition, gradient_matching
from gmgraph.scores.splitters import SplitRequest, get_splitter, unsplit_labels
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


class Toy(nn.Module):
    """Zero-initialised head: every child sees the same dL/dlogits, so the head's gradient
    is g x^T for identity, 2 g x^T for doubling and -g x^T for negation."""

    def __init__(self):
        super().__init__()
        self.a = Choice({"id": nn.Identity(), "twice": Scale(2.0)}, "a")
        self.b = Choice({"id": nn.Identity(), "twice": Scale(2.0), "neg": Neg()}, "b")
        self.head = nn.Linear(4, 3, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, x):
        return self.head(self.b(self.a(x)))


def batches(n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(6, 4, generator=g), torch.randint(3, (6,), generator=g)) for _ in range(n)]


def test_identical_gradients_are_at_zero_and_opposite_ones_at_two():
    gm = gmgraph.trace(Toy())
    d = gradient_matching(gm, "b", batches(), rounds=5)
    ops = gmgraph.space(gm)["b"]
    i, t, n = ops.index("id"), ops.index("twice"), ops.index("neg")
    assert d[i, t] == pytest.approx(0.0, abs=1e-5)
    assert d[i, n] == pytest.approx(2.0, abs=1e-5) and d[t, n] == pytest.approx(2.0, abs=1e-5)
    assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)
    partition, score = best_partition(d, groups=2, balanced=True)
    assert sorted(partition) == [(i, t), (n,)]
    assert score == pytest.approx(4.0, abs=1e-4)


@pytest.mark.parametrize("distance", ["per-filter-cos", "mse"])
def test_other_distances_see_the_same_structure(distance):
    gm = gmgraph.trace(Toy())
    d = gradient_matching(gm, "b", batches(), rounds=3, distance=distance)
    assert d[0, 2] > d[0, 1] >= 0
    if distance == "per-filter-cos":
        assert d[0, 1] == pytest.approx(0.0, abs=1e-5) and d[0, 2] == pytest.approx(2.0, abs=1e-5)


def test_label_selection_picks_the_largest_cut():
    gm = gmgraph.trace(Toy())
    request = SplitRequest(gm, unsplit_labels(gm), iter(batches(6)), rounds=3)
    decision = get_splitter("gm")(request)
    assert decision["label"] == "b"
    assert decision["scores"]["a"] == pytest.approx(0.0, abs=1e-4)
    assert sorted(map(sorted, decision["groups"])) == [["id", "twice"], ["neg"]]


def test_scoring_leaves_weights_bn_grads_optimizer_and_rng_streams_alone():
    loaders = data.load("digits", batch_size=32)
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    trainer = SupernetTrainer(gm, loaders, TrainConfig(steps_per_epoch=3))
    trainer.train_epoch(quiet=True)
    before_state = {k: v.clone() for k, v in gm.state_dict().items()}
    before_opt = trainer.optimizer.state_dict()
    before_opt = {i: {k: v.clone() for k, v in s.items()} for i, s in before_opt["state"].items()}
    sampler_stream = trainer.sampler.generator.get_state()
    global_stream = torch.get_rng_state()
    grads = [None if p.grad is None else p.grad.clone() for p in gm.parameters()]
    gm.train()
    gradient_matching(gm, "2<-1", data.infinite(loaders.train), rounds=2, sampler=trainer.sampler)
    after = gm.state_dict()
    assert all(torch.equal(before_state[k], after[k]) for k in before_state)  # weights and BN statistics
    for before, p in zip(grads, gm.parameters()):
        assert (before is None and p.grad is None) or torch.equal(before, p.grad)
    now_opt = trainer.optimizer.state_dict()["state"]
    assert all(torch.equal(before_opt[i][k], now_opt[i][k]) for i in before_opt for k in before_opt[i])
    assert torch.equal(trainer.sampler.generator.get_state(), sampler_stream)
    assert torch.equal(torch.get_rng_state(), global_stream)
    assert all(m.active is None and m.weights is None for g in gmgraph.choices(gm).values() for m in g)


def test_the_nb201_preset_excludes_stem_and_classifier_and_the_tested_label():
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    names = nb201.shared_parameters(gm, "1<-0")
    assert names and all(n.startswith("cells.") for n in names)
    assert not any(n.startswith(("stem", "classifier")) for n in names)
    d = gradient_matching(gm, "1<-0", batches_for_nb201(), rounds=2, shared=nb201.shared_parameters)
    assert d.shape == (5, 5) and torch.isfinite(d).all()


def batches_for_nb201():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 1, 8, 8, generator=g), torch.randint(10, (8,), generator=g)) for _ in range(2)]


def test_samplers_darts_and_gdas_can_drive_the_other_decisions():
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    for name in ("darts", "gdas"):
        d = gradient_matching(gm, "3<-2", batches_for_nb201(), rounds=2, sampler=name)
        assert torch.isfinite(d).all()


def test_errors():
    gm = gmgraph.trace(Toy())
    with pytest.raises(SpaceError, match="no decision named 'c'"):
        gradient_matching(gm, "c", batches(), rounds=1)
    with pytest.raises(ConfigError, match="unknown distance 'l1'"):
        gradient_matching(gm, "b", batches(), distance="l1")
    with pytest.raises(DataError, match="needs 10 batches but the data gave only 5"):
        gradient_matching(gm, "b", batches(), rounds=10)
    single = gmgraph.trace(nn.Sequential(Choice({"id": nn.Identity()}, "x"), nn.Linear(2, 2)))
    with pytest.raises(SpaceError, match="single op"):
        gradient_matching(single, "x", batches(), rounds=1)


# ------------------------------------------------------------- device


def test_an_explicit_cpu_device_is_the_default():
    gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    default = gradient_matching(gm, "2<-1", batches_for_nb201(), rounds=2)
    for device in ("cpu", torch.device("cpu")):
        assert torch.equal(gradient_matching(gm, "2<-1", batches_for_nb201(), rounds=2, device=device), default)
    assert default.device.type == "cpu" and default.dtype == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_config_error_that_names_the_cpu():
    gm = gmgraph.trace(Toy())
    with pytest.raises(ConfigError, match="--device cpu"):
        gradient_matching(gm, "b", batches(), rounds=1, device="cuda")


def test_an_unknown_device_is_a_config_error():
    gm = gmgraph.trace(Toy())
    with pytest.raises(ConfigError, match="device 'tpu' is not one of auto, cpu, cuda, cuda:N"):
        gradient_matching(gm, "b", batches(), rounds=1, device="tpu")


class DropoutNet(nn.Module):
    """A 3x3 conv and its zero-padded 5x5 copy (the same function), then dropout before the head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        conv3 = nn.Conv2d(2, 4, 3, padding=1)
        conv5 = nn.Conv2d(2, 4, 5, padding=2)
        with torch.no_grad():
            conv5.weight.zero_()
            conv5.weight[:, :, 1:4, 1:4] = conv3.weight
            conv5.bias.copy_(conv3.bias)
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.conv = Choice({"3x3": conv3, "5x5": conv5, "neg": nn.Sequential(Neg(), nn.Conv2d(2, 4, 1))}, "k")
        self.drop = nn.Dropout(0.5)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        return self.head(self.drop(self.conv(self.stem(x))))


def test_every_candidate_of_a_round_sees_the_same_dropout_masks():
    gm = gmgraph.trace(DropoutNet()).train()
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 1, 6, 6, generator=g), torch.randint(3, (8,), generator=g)) for _ in range(3)]
    d = gradient_matching(gm, "k", data, rounds=3)
    ops = gmgraph.space(gm)["k"]
    same = d[ops.index("3x3"), ops.index("5x5")]
    assert same == pytest.approx(0.0, abs=1e-5)  # the same function: dropout noise would make it 0.1-0.9
    assert d[ops.index("3x3"), ops.index("neg")] > 0.05
    torch.manual_seed(5)
    before = torch.get_rng_state()
    gradient_matching(gm, "k", data, rounds=1)
    assert torch.equal(torch.get_rng_state(), before)  # and the caller's stream did not move


@pytest.mark.parametrize("kind", ["cos", "per-filter-cos"])
def test_cosine_distances_stay_in_their_range_when_the_quotient_rounds_past_one(kind):
    from gmgraph.scores.gradient_matching import _distance

    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        a = [torch.randn(3, 5, generator=g, dtype=torch.float64) * 10 ** float(torch.randint(-3, 4, (1,), generator=g))]
        flat = a[0].reshape(-1)
        same, opposite = _distance(a, a, flat, flat, kind), _distance(a, [-a[0]], flat, -flat, kind)
        assert 0.0 <= float(same) <= 2.0 and 0.0 <= float(opposite) <= 2.0
