"""The latency term of the architecture loss (``--latency-weight``): equal to expected_latency, and it moves alphas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import data
from gmgraph.choice import Choice
from gmgraph.latency import expected_latency
from gmgraph.latency.table import LatencyTable
from gmgraph.train import SupernetTrainer, TrainConfig
from gmgraph.train.penalty import LatencyPenalty


def _table() -> LatencyTable:
    flow = [{"name": "x", "kind": "kept", "inputs": []}]
    entries = []
    for i, label in enumerate(("a", "b")):
        flow.append({"name": f"c{i}", "kind": "choice", "inputs": ["x"], "label": label, "identity": [], "zero": [],
                     "shape": [1, 16]})
        entries += [{"label": label, "op": op, "shape": [1, 16], "ms": ms, "stable": True}
                    for op, ms in (("slow", 5.0 + i), ("fast", 0.5), ("mid", 2.0))]
    flow.append({"name": "out", "kind": "output", "inputs": ["c0", "c1"]})
    return LatencyTable(key={}, space={"a": ["slow", "fast", "mid"], "b": ["slow", "fast", "mid"]}, flow=flow,
                        fixed_ms=1.5, entries=entries)


@pytest.mark.parametrize("ops", [{"a": ("slow", "fast", "mid"), "b": ("slow", "fast", "mid")},
                                 {"a": ("slow", "mid"), "b": ("fast", "mid", "slow")}])
def test_the_penalty_is_weight_times_expected_latency_in_value_and_gradient(ops):
    table, term = _table(), LatencyPenalty(_table(), weight=0.3)
    g = torch.Generator().manual_seed(0)
    alphas = {label: torch.randn(len(o), generator=g, requires_grad=True) for label, o in ops.items()}
    twins = {label: a.detach().clone().requires_grad_(True) for label, a in alphas.items()}
    ours = term(alphas, ops)
    reference = 0.3 * expected_latency(table, twins, ops=ops)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    ours.backward()
    reference.backward()
    for label in ops:
        assert torch.allclose(alphas[label].grad, twins[label].grad, atol=1e-6)


def _supernet() -> torch.fx.GraphModule:
    def choice(label):
        return Choice({"slow": nn.Linear(16, 16), "fast": nn.Identity(), "mid": nn.Linear(16, 16)}, label)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.a, self.b, self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), choice("a"), \
                choice("b"), nn.Linear(16, 10)

        def forward(self, x):
            h = self.stem(x)
            return self.head(self.a(h) + self.b(h))

    torch.manual_seed(0)
    return gmgraph.trace(Net())


def _train(penalty) -> dict[str, torch.Tensor]:
    loaders = data.load("synthetic", batch_size=16, shape=(1, 8, 8), size=(64, 32, 32))
    trainer = SupernetTrainer(_supernet(), loaders, TrainConfig(sampler="darts", epochs=2, arch_lr=0.05),
                              seed=0, arch_penalty=penalty)
    for _ in range(2):
        trainer.train_epoch(quiet=True)
    return {label: a.detach().softmax(0) for label, a in trainer.sampler.alphas.items()}


def test_a_heavy_latency_weight_moves_the_alphas_to_cheaper_ops():
    table = _table()
    plain, paid = _train(None), _train(LatencyPenalty(table, weight=5.0))

    def expected(probs):  # op order is the Choice's: slow, fast, mid
        return sum(float(probs[label] @ torch.tensor([5.0 + i, 0.5, 2.0])) for i, label in enumerate(("a", "b")))

    assert expected(paid) < expected(plain) - 0.2
    assert all(paid[label][0] < plain[label][0] for label in ("a", "b"))
