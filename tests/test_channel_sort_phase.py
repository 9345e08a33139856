"""Channel re-sorting before progressive shrinking's width phase: the OFA space's ``before_phase`` hook."""

import torch

import gmgraph
from gmgraph import data
from gmgraph.config import TrainConfig
from gmgraph.spaces import get, ofa
from gmgraph.train.loop import SupernetTrainer


def _tiny_ofa() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, in_channels=1, strides=ofa.strides_for(1),
                                      divisor=4))


def _widest(gm, x):
    with torch.no_grad(), gmgraph.use(gm.eval(), ofa.largest(gm)):
        out = gm(x)
    gm.train()
    return out


def _momentum(optimizer, p):
    buffer = optimizer.state.get(p, {}).get("momentum_buffer")  # none before the first step
    return None if buffer is None else buffer.clone()


def test_the_width_phase_sorts_once_keeping_the_widest_output_and_permuting_momentum(capsys):
    gm = _tiny_ofa()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    body = next(iter(next(m for m in gm.modules() if isinstance(m, ofa.Block)).body.ops.values()))
    expand, project = body[0].conv, body[-2].conv  # the block's shared expand and projection convs
    seen = []

    def hook(g, phase, optimizer):  # the space's own hook, observed around the call
        before = _widest(g, x)
        order = project.weight.abs().sum((0, 2, 3)).argsort(descending=True)
        weight, momentum = expand.weight.detach().clone(), _momentum(optimizer, expand.weight)
        note = get("ofa").before_phase(g, phase, optimizer)
        seen.append({"phase": phase, "note": note, "order": order, "before": before, "after": _widest(g, x),
                     "weight": (weight, expand.weight.detach().clone()),
                     "momentum": (momentum, _momentum(optimizer, expand.weight))})
        return note

    config = TrainConfig(epochs=3, steps_per_epoch=1, sampler="sandwich", sandwich_random=0, shrink="full:1,width:1")
    trainer = SupernetTrainer(gm, data.load("digits", batch_size=8), config, seed=0, before_phase=hook)
    for _ in range(3):
        trainer.train_epoch(title="[root] ")
    assert [s["phase"] for s in seen] == ["full", "width"]  # called as each phase starts; only width sorts
    full, width = seen
    assert full["note"] is None and torch.equal(full["before"], full["after"])
    assert width["note"] == "sorted the hidden channels of 20 blocks by importance"
    assert not torch.equal(width["order"], torch.arange(len(width["order"])))  # the sort moved channels
    torch.testing.assert_close(width["after"], width["before"], rtol=0, atol=1e-5)
    (weight, weight_after), (momentum, momentum_after) = width["weight"], width["momentum"]
    assert torch.equal(weight_after, weight[width["order"]])
    assert torch.equal(momentum_after, momentum[width["order"]])  # the momentum moved with its weights
    assert [h.get("before_phase") for h in trainer.history] == [
        None, "width: sorted the hidden channels of 20 blocks by importance", None]
    assert "[root] before the width phase (epoch 2): sorted the hidden channels" in capsys.readouterr().err


def test_each_few_shot_child_sorts_its_own_copy():
    gm = _tiny_ofa()
    config = TrainConfig(epochs=2, steps_per_epoch=1, sampler="sandwich", sandwich_random=0, shrink="full:1,width:1")
    parent = SupernetTrainer(gm, data.load("digits", batch_size=8), config, seed=0,
                             before_phase=get("ofa").before_phase)
    parent.train_epoch(quiet=True)
    children = gmgraph.passes.split(gm, "s1.b1.kernel", [["k3"], ["k5", "k7"]])
    trainers = [parent.fork(child) for child in children]
    kept = [p.detach().clone() for p in gm.parameters()]
    for trainer in trainers:
        trainer.train_epoch(quiet=True)
    assert [t.history[-1].get("before_phase", "")[:6] for t in trainers] == ["width:", "width:"]
    assert all(torch.equal(a, b) for a, b in zip(kept, gm.parameters()))  # the parent's tensors untouched
