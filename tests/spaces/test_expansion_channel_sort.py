"""Channel re-sorting before the width phase for ``elastic_expansions`` blocks (OFA's, on a user's model)."""

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

import gmgraph
from gmgraph import data
from gmgraph.config import TrainConfig
from gmgraph.elastic import ConvView
from gmgraph.spaces import channel_sort, elastic_expansions, elastic_kernels, get, supernetify
from gmgraph.train.loop import SupernetTrainer
from tests.conftest import randomize_batchnorm


def widest(gm) -> dict[str, str]:
    """Every block at its largest ratio (ops are named ``e<ratio>``, ``p`` for the point)."""
    return {label: max(ops, key=lambda op: float(op[1:].replace("p", "."))) for label, ops in gmgraph.space(gm).items()}


def trained_like(model: nn.Module, seed: int) -> nn.Module:
    """Noise on every weight (the widened blocks' unread new channels too), as training leaves them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    randomize_batchnorm(model, generator)
    return model


def supernet(name: str) -> torch.fx.GraphModule:
    from torchvision import models

    torch.manual_seed(0)
    model = getattr(models, name)(weights=None, num_classes=10)
    return trained_like(gmgraph.trace(supernetify(model, elastic_expansions((3, 4, 6)))), 1).eval()


def output(gm, arch, x):
    with torch.no_grad(), gmgraph.use(gm, arch):
        return gm(x)


def projections(gm) -> list[ConvView]:
    """Each block's shared projection conv (the last conv that reads the hidden layer)."""
    found = []
    for choice in channel_sort.expansion_choices(gm):
        convs = [m for m in channel_sort.shared_modules(next(iter(choice.ops.values()))) if isinstance(m, nn.Conv2d)]
        found.append([c for c in convs if c.in_channels == choice.hidden_width and c.groups == 1][-1])
    return found


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0"])
def test_the_widest_output_is_unchanged_and_importance_is_descending(name):
    gm = supernet(name)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    arch = widest(gm)
    before = output(gm, arch, x)
    narrow = {label: ops[1] for label, ops in gmgraph.space(gm).items()}
    narrow_before = output(gm, narrow, x)
    assert channel_sort.sort_expansions(gm) == len(gmgraph.space(gm))
    torch.testing.assert_close(output(gm, arch, x), before, rtol=0, atol=1e-5)
    for project in projections(gm):
        importance = project.weight.abs().sum((0, 2, 3))
        assert torch.equal(importance, importance.sort(descending=True).values)
    assert not torch.allclose(output(gm, narrow, x), narrow_before, atol=1e-3)  # narrower widths run other channels


def test_a_narrower_expansion_runs_the_most_important_channels_in_every_module():
    torch.manual_seed(0)
    block = trained_like(nn.Sequential(InvertedResidual(8, 8, 1, 6)), 3)
    gm = gmgraph.trace(supernetify(block, elastic_expansions((3, 4)))).eval()
    (choice,) = channel_sort.expansion_choices(gm)
    expand, bn1, depthwise, bn2, project = channel_sort.shared_modules(choice.ops["e6"])
    old = {name: t.detach().clone() for name, t in [("expand", expand.weight), ("dw", depthwise.weight),
                                                    ("mean", bn1.running_mean), ("var", bn2.running_var),
                                                    ("project", project.weight)]}
    order = project.weight.abs().sum((0, 2, 3)).argsort(descending=True)
    assert channel_sort.before_phase(gm, "width") == "sorted the hidden channels of 1 elastic expansion block(s) " \
                                                      "by importance"
    assert torch.equal(expand.weight, old["expand"][order]) and torch.equal(depthwise.weight, old["dw"][order])
    assert torch.equal(bn1.running_mean, old["mean"][order]) and torch.equal(bn2.running_var, old["var"][order])
    assert torch.equal(project.weight, old["project"][:, order])
    e3 = choice.ops["e3"]
    assert e3.conv[0][0].out_channels == 24 and torch.equal(e3.conv[0][0].weight(), old["expand"][order[:24]])


def test_the_optimizer_state_moves_with_the_weights():
    torch.manual_seed(0)
    gm = gmgraph.trace(supernetify(trained_like(nn.Sequential(InvertedResidual(8, 8, 1, 6)), 4),
                                   elastic_expansions((3, 4))))
    optimizer = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 8, 6, 6, generator=torch.Generator().manual_seed(5))
    with gmgraph.use(gm, {"0": "e6"}):
        gm(x).square().mean().backward()
    optimizer.step()
    (choice,) = channel_sort.expansion_choices(gm)
    expand, *_, project = channel_sort.shared_modules(choice.ops["e6"])
    order = project.weight.abs().sum((0, 2, 3)).argsort(descending=True)
    momentum = optimizer.state[expand.weight]["momentum_buffer"].clone()
    channel_sort.sort_expansions(gm, optimizer)
    assert torch.equal(optimizer.state[expand.weight]["momentum_buffer"], momentum[order])


def _is_the_sort_hook(hook) -> bool:
    """Whether ``hook`` is ``channel_sort.before_phase``, by name: pytest's doctest collection may import the
    module a second time (``--import-mode=importlib``), and the spaces keep the first one's function."""
    return (hook.__module__, hook.__qualname__) == ("gmgraph.spaces.channel_sort", "before_phase")


def test_spaces_get_the_hook_and_graphs_without_expansion_blocks_are_left_alone():
    assert _is_the_sort_hook(get("gm_any_nets:net", "elastic_expansions").before_phase)
    assert _is_the_sort_hook(get("nb201").before_phase) and get("ofa").before_phase is not None
    gm = gmgraph.trace(supernetify(nn.Sequential(nn.Conv2d(2, 2, 3, padding=1)), elastic_kernels((3, 5))))
    assert channel_sort.before_phase(gm, "width") is None  # nothing to sort: no note


def test_the_trainer_sorts_exactly_once_as_the_width_phase_starts(capsys):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), InvertedResidual(8, 8, 1, 4),
                        InvertedResidual(8, 16, 2, 6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    gm = gmgraph.trace(supernetify(net, elastic_expansions((3, 6))))
    calls = []

    def hook(g, phase, optimizer):
        calls.append(phase)
        return channel_sort.before_phase(g, phase, optimizer)

    config = TrainConfig(epochs=3, steps_per_epoch=1, sampler="sandwich", sandwich_random=0, shrink="full:1,width:1")
    trainer = SupernetTrainer(gm, data.load("digits", batch_size=8), config, seed=0, before_phase=hook)
    for _ in range(3):
        trainer.train_epoch(title="[root] ")
    assert calls == ["full", "width"]
    note = "width: sorted the hidden channels of 2 elastic expansion block(s) by importance"
    assert [h.get("before_phase") for h in trainer.history] == [None, note, None]
    assert "[root] before the width phase (epoch 2): sorted the hidden channels of 2" in capsys.readouterr().err


def test_each_split_child_sorts_its_own_copy_and_the_parent_is_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(InvertedResidual(8, 8, 1, 6), InvertedResidual(8, 8, 1, 6))
    gm = gmgraph.trace(supernetify(trained_like(net, 6), elastic_expansions((3, 4))))
    kept = [p.detach().clone() for p in gm.parameters()]
    children = gmgraph.passes.split(gm, "0", [["e6"], ["e3", "e4"]])
    assert [channel_sort.sort_expansions(child) for child in children] == [1, 2]  # one width left: nothing to sort
    assert all(torch.equal(a, b) for a, b in zip(kept, gm.parameters()))
    moved = [not torch.equal(a, b) for a, b in zip(kept, children[1].parameters())]
    assert any(moved)
