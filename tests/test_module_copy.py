"""module_copy.deepcopy gives exactly what copy.deepcopy gives, for every space's supernet."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import module_copy
from gmgraph.elastic import is_view
from gmgraph.spaces import darts, mobilenet, nb201, ofa

SPACES = {
    "nb201": lambda: nb201.supernet(C=4, N=1, num_classes=10),
    "darts": lambda: darts.supernet(C=4, layers=2, num_classes=10),
    "mobilenet": lambda: mobilenet.supernet(num_classes=10, width_mult=0.25),
    "ofa": lambda: ofa.supernet(num_classes=10, width_mult=0.25),
}


def _sharing(module: nn.Module) -> list[int]:
    """Which parameter and buffer names hold the same tensor (as first-seen indices)."""
    ids: dict[int, int] = {}
    tensors = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return [ids.setdefault(id(t), len(ids)) for _, t in tensors]


@pytest.mark.parametrize("space", SPACES)
def test_a_copy_equals_copy_deepcopy_and_shares_nothing_with_the_original(space):
    torch.manual_seed(0)
    gm = gmgraph.trace(SPACES[space]())
    theirs, ours = copy.deepcopy(gm), module_copy.deepcopy(gm)

    assert ours.code == theirs.code and str(ours) == str(theirs)
    assert [type(m) for m in list(ours.modules())[1:]] == [type(m) for m in list(theirs.modules())[1:]]
    a, b = theirs.state_dict(keep_vars=True), ours.state_dict(keep_vars=True)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert _sharing(ours) == _sharing(gm)  # an elastic op's views still read one tensor
    originals = {id(t) for t in [*gm.parameters(), *gm.buffers()]}
    assert not originals & {id(t) for t in [*ours.parameters(), *ours.buffers()]}
    assert not {id(m) for m in gm.modules()} & {id(m) for m in ours.modules()}
    assert [type(p) for p in ours.parameters()] == [type(p) for p in gm.parameters()]
    x = torch.randn(2, 3, 32, 32)
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(1))
    with gmgraph.use(ours, arch), gmgraph.use(theirs, arch):
        assert torch.equal(ours.eval()(x), theirs.eval()(x))


def test_the_callers_memo_entries_are_used_and_shared_modules_stay_shared():
    shared, dropped = nn.Linear(3, 3), nn.Conv2d(1, 1, 1)
    net = nn.Sequential(shared, nn.Sequential(shared, dropped), nn.BatchNorm1d(3))
    stand_in = nn.Identity()

    twin = module_copy.deepcopy(net, {id(dropped): stand_in})

    assert twin[1][1] is stand_in and twin[0] is twin[1][0] and twin[0] is not shared
    assert torch.equal(twin[0].weight, shared.weight) and twin[0].weight is not shared.weight
    twin[2].running_mean.add_(1)
    assert torch.equal(net[2].running_mean, torch.zeros(3))  # buffers are copies too


def test_hooks_and_a_modules_own_copy_protocol_are_kept():
    class Counted(nn.Linear):
        copies = 0

        def __deepcopy__(self, memo):
            Counted.copies += 1
            new = nn.Linear.__new__(Counted)
            memo[id(self)] = new
            new.__dict__.update(copy.deepcopy(self.__dict__, memo))
            return new

    seen = []
    inner = nn.Linear(2, 2)
    inner.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    net = nn.Sequential(inner, Counted(2, 2))

    twin = module_copy.deepcopy(net)
    twin(torch.ones(1, 2))

    assert Counted.copies == 1 and isinstance(twin[1], Counted)
    assert seen == [torch.Size([1, 2])]  # the copy's hook table is a copy of the original's


def test_views_of_a_shared_weight_copy_to_views_of_one_copied_weight():
    torch.manual_seed(0)
    gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25))
    views = [m for m in gm.modules() if is_view(m)]
    assert views  # the OFA space's kernel and width choices are views of shared tensors

    twin = module_copy.deepcopy(gm)

    assert _sharing(twin) == _sharing(gm)
