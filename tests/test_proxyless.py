"""ProxylessNAS (``--sampler proxyless``, gmgraph/proxyless.py): single-path weight steps, two-path gate gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph.choice import Choice
from gmgraph.cli import main
from gmgraph.config import SearchConfig, SearchSettings
from gmgraph.errors import ConfigError, TrainError
from gmgraph.graph import running
from gmgraph.latency.table import LatencyTable
from gmgraph.passes import restrict
from gmgraph.proxyless import ProxylessSampler
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig, load_checkpoint, train_supernet
from gmgraph.train.penalty import LatencyPenalty
from tests.sampler_runs import MOBILENET, assert_a_gm_argmax_run, gm_argmax, killed_and_resumed, search


def loaders(shape=(1, 8, 8), n=32, classes=10, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch), DataLoader(TensorDataset(x, y), batch_size=batch)


def toy(ops=3):
    """Linear 4 -> 3 through one Choice of ``ops`` candidate Linears (label ``op``)."""
    torch.manual_seed(0)
    names = "abcdefg"[:ops]
    return gmgraph.trace(nn.Sequential(nn.Flatten(), Choice({n: nn.Linear(4, 3) for n in names}, "op")))


def toy_trainer(ops=3, alphas=None, **config):
    train, val = loaders(shape=(4,), classes=3)
    config = {"sampler": "proxyless", "device": "cpu", "sampler_options": {"rescale": False}, **config}
    trainer = SupernetTrainer(toy(ops), (train, val), TrainConfig(**config), seed=0)
    if alphas is not None:
        with torch.no_grad():
            trainer.sampler.alphas["op"].copy_(torch.tensor(alphas))
    return trainer, next(iter(val))


def tiny_nb201():
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))


# ------------------------------------------------------------------ the weight step: one path


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd keeps for the backward while ``fn`` runs."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def test_the_weight_step_trains_only_the_sampled_path_and_keeps_its_activations_only():
    train, val = loaders()
    trainer = SupernetTrainer(tiny_nb201(), (train, val), TrainConfig(sampler="proxyless", device="cpu"), seed=0)
    x, y = next(iter(train))
    trainer.train_step(x, y, None, next(iter(val)))  # an architecture step, then a weight step
    arch = trainer.sampler.last_arch
    for label, group in gmgraph.choices(trainer.gm).items():
        for module in group:
            for name, op in module.ops.items():
                grads = [p.grad for p in op.parameters()]
                if name == arch[label]:
                    assert all(g is not None for g in grads)
                else:
                    assert all(g is None for g in grads), (label, name)
    assert any(p.grad is not None for p in trainer.gm.parameters())

    def weight_step():
        with trainer.sampler.context():
            F.cross_entropy(trainer.gm(x), y)

    def single_path(arch):
        with gmgraph.use(trainer.gm, arch):
            F.cross_entropy(trainer.gm(x), y)

    def every_op():
        with gmgraph.graph.use_weights(trainer.gm, {k: a.softmax(0) for k, a in trainer.sampler.alphas.items()}):
            F.cross_entropy(trainer.gm(x), y)

    proxyless = saved_bytes(weight_step)
    assert proxyless == saved_bytes(lambda: single_path(trainer.sampler.last_arch))
    assert proxyless * 3 < saved_bytes(every_op)


# ------------------------------------------------------------------ the architecture step: two paths, binary gates


def gate_gradient(trainer, x, y, pair, active) -> torch.Tensor:
    """ProxylessNAS's formula apart from the sampler: ∂L/∂alpha_i = Σ_j ∂L/∂g_j q_j (δ_ij − q_i) over the pair."""
    alpha = trainer.sampler.alphas["op"].detach()
    gates = torch.zeros(len(alpha))
    gates[active] = 1.0
    gates.requires_grad_(True)
    with running(gmgraph.choices(trainer.gm), weights={"op": gates}, keep={"op": [True] * len(alpha)}):
        F.cross_entropy(trainer.gm(x), y).backward(inputs=[gates])
    q = alpha[pair].softmax(0)
    out = torch.zeros(len(alpha))
    for i, a in enumerate(pair):
        out[a] = sum(gates.grad[b] * q[j] * (float(i == j) - q[i]) for j, b in enumerate(pair))
    return out


def test_the_gate_gradient_is_proxylessnas_formula_for_each_draw_and_reaches_only_the_pair():
    trainer, (x, y) = toy_trainer(ops=3, alphas=[0.5, -0.3, 0.1])
    sampler, seen = trainer.sampler, set()
    for _ in range(12):
        state = sampler.generator.get_state()
        weights, keep = sampler.gates()  # the draw arch_pass makes next
        sampler.generator.set_state(state)
        pair = [i for i, k in enumerate(keep["op"]) if k]
        active = int(weights["op"].argmax())
        assert len(pair) == 2 and active in pair and sorted(weights["op"].tolist()) == [0.0, 0.0, 1.0]
        with running(sampler.groups, weights=weights, keep=keep), torch.no_grad():
            two_paths = trainer.gm(x)
        with gmgraph.use(trainer.gm, {"op": "abc"[active]}), torch.no_grad():
            assert torch.equal(two_paths, trainer.gm(x))  # the forward is exactly the active path's
        loss = sampler.arch_pass(trainer, (x, y), (x, y))
        assert loss.dim() == 0 and not loss.requires_grad
        grad = sampler.alphas["op"].grad
        torch.testing.assert_close(grad, gate_gradient(trainer, x, y, pair, active), rtol=1e-5, atol=1e-7)
        assert all(grad[i] == 0 for i in range(3) if i not in pair) and grad[pair].abs().min() > 0
        seen.add((tuple(sorted(pair)), active))
    assert len(seen) >= 3  # several pairs and active ops were checked


def test_pairs_and_active_ops_follow_the_enumerated_probabilities():
    trainer, _ = toy_trainer(ops=3, alphas=[1.0, 0.0, -1.0])
    sampler, n = trainer.sampler, 3000
    p = sampler.alphas["op"].detach().softmax(0).double()
    counts: dict[tuple[frozenset, int], int] = {}
    for _ in range(n):
        weights, keep = sampler.gates()
        key = (frozenset(i for i, k in enumerate(keep["op"]) if k), int(weights["op"].argmax()))
        counts[key] = counts.get(key, 0) + 1
    for a in range(3):
        for b in range(a + 1, 3):
            pair = p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b])  # without replacement, either order
            for active in (a, b):
                expected = float(pair * p[active] / (p[a] + p[b]))  # renormalised over the pair
                got = counts.get((frozenset((a, b)), active), 0) / n
                assert abs(got - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (a, b, active)


def test_on_two_ops_the_estimators_mean_is_the_enumerated_expectation():
    trainer, (x, y) = toy_trainer(ops=2, alphas=[0.4, -0.4])
    sampler = trainer.sampler
    p = sampler.alphas["op"].detach().softmax(0)
    each = [gate_gradient(trainer, x, y, [0, 1], active) for active in (0, 1)]  # the pair is always both
    expected = p[0] * each[0] + p[1] * each[1]
    n, total = 400, torch.zeros(2)
    for _ in range(n):
        sampler.arch_pass(trainer, (x, y), (x, y))
        total += sampler.alphas["op"].grad
    spread = (each[0] - each[1]).abs() * 4 * math.sqrt(float(p[0] * p[1]) / n)  # two values: a binomial mean
    assert ((total / n - expected).abs() <= spread + 1e-7).all()


def test_rescale_keeps_the_pairs_logsumexp_so_other_ops_keep_their_probability():
    trainer, (x, y) = toy_trainer(ops=3, alphas=[0.5, -0.3, 0.1], sampler_options={}, arch_lr=0.1,
                                  arch_weight_decay=0.0)
    sampler = trainer.sampler
    assert sampler.rescale
    before = sampler.alphas["op"].detach().clone()
    state = sampler.generator.get_state()
    _, keep = sampler.gates()
    sampler._pending.clear()
    sampler.generator.set_state(state)
    trainer._arch_step(x, y, train=(x, y))
    with trainer.sampler.context():
        pass  # the pending rescale is applied before the next draw
    after = sampler.alphas["op"].detach()
    pair = [i for i, k in enumerate(keep["op"]) if k]
    other = next(i for i in range(3) if i not in pair)
    assert not torch.equal(after[pair], before[pair])
    torch.testing.assert_close(after[pair].logsumexp(0), before[pair].logsumexp(0))
    torch.testing.assert_close(after.softmax(0)[other], before.softmax(0)[other])


# ------------------------------------------------------------------ latency


def two_op_latency(slow: str, fast: str) -> LatencyTable:
    flow = [{"name": "x", "kind": "kept", "inputs": []},
            {"name": "c", "kind": "choice", "inputs": ["x"], "label": "op", "identity": [], "zero": [], "shape": [1]},
            {"name": "out", "kind": "output", "inputs": ["c"]}]
    return LatencyTable(key={}, space={"op": [slow, fast]}, flow=flow, fixed_ms=1.0,
                        entries=[{"label": "op", "op": slow, "shape": [1], "ms": 3.0, "stable": True},
                                 {"label": "op", "op": fast, "shape": [1], "ms": 1.0, "stable": True}])


def test_the_latency_penalty_moves_the_alphas_toward_the_faster_op():
    def fast_probability(penalty):
        trainer, (x, y) = toy_trainer(ops=2, arch_lr=0.05)
        trainer.arch_penalty = penalty
        for _ in range(20):
            trainer._arch_step(x, y, train=(x, y))
        return float(trainer.sampler.alphas["op"].detach().softmax(0)[1])

    without = fast_probability(None)
    with_penalty = fast_probability(LatencyPenalty(two_op_latency("a", "b"), weight=1.0))
    assert with_penalty > 0.6 and with_penalty > without + 0.1


def test_settings_accept_proxyless_with_argmax_and_a_latency_weight():
    settings = SearchSettings(train=TrainConfig(sampler="proxyless", latency_weight=0.1))
    assert settings.train.latency_weight == 0.1
    assert SearchSettings(train=TrainConfig(sampler="proxyless"), search=SearchConfig(strategy="argmax")).search
    with pytest.raises(ConfigError, match="proxyless rescale must be true or false"):
        ProxylessSampler(toy(), rescale="yes")


# ------------------------------------------------------------------ few-shot, resume, processes


def test_a_fork_restricts_and_renormalises_the_alphas_and_their_adam_state():
    train, val = loaders()
    gm = tiny_nb201()
    trainer = SupernetTrainer(gm, (train, val), TrainConfig(sampler="proxyless", device="cpu"), seed=0)
    with torch.no_grad():
        trainer.sampler.alphas["1<-0"].copy_(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]))
    x, y = next(iter(train))
    trainer.train_step(x, y, None, next(iter(val)))
    parent = trainer.sampler.alphas["1<-0"].detach().clone()
    keep = [nb201.OPS.index(op) for op in ("nor_conv_1x1", "nor_conv_3x3")]
    child = trainer.fork(restrict(gm, {"1<-0": ["nor_conv_1x1", "nor_conv_3x3"]}))
    sampler = child.sampler
    assert isinstance(sampler, ProxylessSampler) and sampler.rescale and sampler.seed != trainer.sampler.seed
    assert torch.equal(sampler.alphas["1<-0"].detach(), parent[keep])
    p = parent.softmax(0)[keep]
    torch.testing.assert_close(sampler.alphas["1<-0"].detach().softmax(0), p / p.sum())  # renormalised
    assert torch.equal(sampler.alphas["2<-0"].detach(), trainer.sampler.alphas["2<-0"].detach())
    parent_state = trainer.arch_optimizer.state_dict()["state"][list(trainer.sampler.arch_parameters()).index("alpha/1<-0")]
    child_state = child.arch_optimizer.state_dict()["state"][list(sampler.arch_parameters()).index("alpha/1<-0")]
    assert torch.equal(child_state["exp_avg"], parent_state["exp_avg"][keep])
    child.train_step(x, y, None, next(iter(val)))
    assert sampler.last_arch["1<-0"] in ("nor_conv_1x1", "nor_conv_3x3")


def test_a_resumed_run_ends_bit_for_bit_where_a_straight_one_does(tmp_path):
    train, val = loaders()
    data = (train, val, val)

    class Killed(Exception):
        pass

    def kill(stats):
        if stats["epoch"] == 1:
            raise Killed

    def run(**kwargs):
        return train_supernet(tiny_nb201(), data, sampler="proxyless", epochs=2, steps_per_epoch=3, seed=3,
                              quiet=True, device="cpu", **kwargs)

    straight = run()
    with pytest.raises(Killed):
        run(checkpoint_dir=tmp_path, on_epoch=kill)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    torch.manual_seed(12345)
    resumed = run(checkpoint_dir=tmp_path, resume=True)
    a, b = straight.gm.state_dict(), resumed.gm.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for label, alpha in straight.trainer.sampler.alphas.items():
        assert torch.equal(alpha, resumed.trainer.sampler.alphas[label])


def test_data_parallel_is_refused_in_one_line(tmp_path, capsys):
    assert main(["search", *FLAGS, "--nproc", "2", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == ("gmgraph: error: --sampler proxyless trains in one process (its own "
                                       "architecture step is not averaged across ranks); leave out --nproc\n")
    train, val = loaders()
    trainer = SupernetTrainer(tiny_nb201(), (train, val), TrainConfig(sampler="proxyless", device="cpu"), seed=0)
    with pytest.raises(TrainError, match=r"^the proxyless sampler trains in one process .*; run without --nproc$"):
        trainer.distribute(object())


def darts_space():
    from gmgraph.spaces import darts

    return darts.supernet(C=4, layers=2)


def mobilenet_space():
    from gmgraph.spaces import mobilenet

    return mobilenet.supernet(num_classes=10, width_mult=0.25)


def torchvision_model():
    from torchvision.models import mobilenet_v3_small

    from gmgraph.spaces import inverted_residual_expansions, supernetify

    return supernetify(mobilenet_v3_small(weights=None, num_classes=10), inverted_residual_expansions())


@pytest.mark.parametrize("build", [darts_space, mobilenet_space, torchvision_model])
def test_each_step_trains_one_path_and_moves_every_labels_alphas_on_other_spaces(build):
    torch.manual_seed(0)
    gm = gmgraph.trace(build())
    train, val = loaders(shape=(3, 32, 32), n=8, batch=4)
    trainer = SupernetTrainer(gm, (train, val), TrainConfig(sampler="proxyless", device="cpu", arch_lr=0.01), seed=0)
    before = {label: a.detach().clone() for label, a in trainer.sampler.alphas.items()}
    x, y = next(iter(train))
    loss, _ = trainer.train_step(x, y, None, next(iter(val)))
    assert torch.isfinite(loss)
    moved = [label for label, a in trainer.sampler.alphas.items() if not torch.equal(a.detach(), before[label])]
    assert len(moved) == len(before) > 0  # every label drew a pair and stepped
    arch = trainer.sampler.last_arch
    for label, group in gmgraph.choices(gm).items():
        for module in group:
            for name, op in module.ops.items():
                assert all((p.grad is None) == (name != arch[label]) for p in op.parameters()), (label, name)


# ------------------------------------------------------------------ the command


FLAGS = gm_argmax("proxyless", steps_per_epoch=2)


def test_gm_with_proxyless_and_argmax_runs_end_to_end_on_mobilenet(tmp_path):
    # one step an epoch (FLAGS, which the resume test below runs as it was, take two) and --width 2: the same 21
    # blocks of 7 ops, fewer channels in the later ones; the claim is that the command runs end to end
    flags = [*FLAGS, *MOBILENET, "--steps-per-epoch", "1", "--width", "2"]
    assert_a_gm_argmax_run(search(flags, tmp_path), "proxyless")


def test_a_run_killed_in_training_resumes_to_the_same_result(tmp_path, monkeypatch):
    # batches of 4 instead of 16: the same kill and resume, and the run costs less
    straight, resumed = killed_and_resumed([*FLAGS, "--batch-size", "4"], tmp_path, monkeypatch)
    assert_a_gm_argmax_run(straight, "proxyless")  # the straight run: the command end to end on nb201
    a, b = (torch.load(tmp_path / name / "best.pt", weights_only=True)["model"] for name in ("straight", "run"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
