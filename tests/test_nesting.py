"""space_size counts distinct networks: a decision nested in a candidate counts only where that candidate runs."""

import math

from torch import nn

import gmgraph
from gmgraph.choice import Choice
from gmgraph.nesting import network_count, places
from gmgraph.passes import restrict
from gmgraph.spaces import nb201, ofa


def test_the_ofa_space_holds_ofas_count_of_networks_not_its_label_assignments():
    gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, divisor=4))
    per_stage = sum(9 ** depth for depth in (2, 3, 4))  # each block: 3 kernels x 3 expansions
    assert gmgraph.space_size(gm) == per_stage ** 5 == 21_758_655_492_572_485_851
    assert math.prod(len(ops) for ops in gmgraph.space(gm).values()) == 3 ** 45  # what counting labels gives
    assert places(gm)["s1.b3.kernel"] == {("s1.b3.expand", e) for e in ("e3", "e4", "e6")}
    assert places(gm)["s1.b3.expand"] == {("s1.depth", "d3"), ("s1.depth", "d4")}  # depth 2 has no third block


def test_a_space_without_nesting_counts_every_assignment():
    gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    assert gmgraph.space_size(gm) == 5 ** 6 and set(places(gm)) == set(nb201.LABELS)


def test_a_label_under_two_decisions_counts_every_assignment():
    shared = Choice({"a": nn.Identity(), "b": nn.ReLU()}, "inner")
    net = nn.Sequential(Choice({"x": nn.Identity(), "y": nn.Sequential(shared)}, "first"),
                        Choice({"x": nn.Identity(), "y": nn.Sequential(shared)}, "second"))
    assert places(net)["inner"] == {("first", "y"), ("second", "y")}
    assert network_count(net) == 2 * 2 * 2  # which paths run it depends on two decisions: no nested count


def test_a_split_child_counts_its_own_networks():
    gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, divisor=4))
    shallow = restrict(gm, {f"s{s}.depth": ["d2"] for s in range(1, 6)})
    assert gmgraph.space_size(shallow) == 81 ** 5  # two blocks of 9 per stage
