"""live_nodes replays derive: the Choices and sums it keeps are exactly those left in the derived graph."""

from __future__ import annotations

import operator

import pytest
import torch

import gmgraph
from gmgraph.choice import Choice
from gmgraph.liveness import dataflow, live_nodes
from gmgraph.passes.derive import derive
from gmgraph.spaces import darts, mobilenet, nb201

SPACES = {
    "nb201": lambda: nb201.supernet(C=2, N=1),
    "darts": lambda: darts.supernet(C=2, layers=3),
    "mobilenet": lambda: mobilenet.supernet(num_classes=4, width_mult=0.1),
}


def skewed_arch(gm, generator: torch.Generator) -> dict:
    """A random arch that picks ``none``/``zero`` (where allowed) with probability 0.6: many dead ops."""
    arch = {}
    for label, ops in gmgraph.space(gm).items():
        empty = [op for op in ops if op in ("none", "zero")]
        if empty and torch.rand(1, generator=generator) < 0.6:
            arch[label] = empty[0]
        else:
            arch[label] = ops[int(torch.randint(len(ops), (1,), generator=generator))]
    return arch


def kept_by_derive(gm, arch) -> tuple[list[str], int]:
    """(targets of the Choices left in derive(gm, arch), number of additions left)."""
    plain = derive(gm, arch)
    choice_targets = {n.target for n in gm.graph.nodes
                      if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Choice)}
    kept = sorted(n.target for n in plain.graph.nodes if n.op == "call_module" and n.target in choice_targets)
    sums = sum(1 for n in plain.graph.nodes if n.op == "call_function" and n.target in (operator.add, torch.add))
    return kept, sums


@pytest.mark.parametrize("name", list(SPACES))
def test_live_nodes_agree_with_derive(name):
    gm = gmgraph.trace(SPACES[name]())
    flow = dataflow(gm)
    target = {n.name: n.target for n in gm.graph.nodes}
    generator = torch.Generator().manual_seed(0)
    for i in range(8):
        arch = skewed_arch(gm, generator) if i % 2 else gmgraph.sample(gm, generator)
        live = live_nodes(flow, arch)
        kept, sums = kept_by_derive(gm, arch)
        assert sorted(target[n] for n in live.choices) == kept, (name, arch)
        assert len(live.sums) == sums, (name, arch)


def test_an_nb201_node_whose_edges_out_are_all_none_is_dead_with_what_feeds_it():
    flow = dataflow(gmgraph.trace(nb201.supernet(C=2, N=1)))
    labels = {n["name"]: n["label"] for n in flow if n["kind"] == "choice"}
    # node 1 = conv(node 0) feeds only none edges (2<-1, 3<-1): 1<-0 is dead in every cell;
    # node 2 = avg_pool(node 0) feeds 3<-2 = conv1x1: both live, as is 3<-0.
    arch = nb201.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|")
    live = live_nodes(flow, arch)
    assert sorted({labels[n] for n in live.choices}) == ["2<-0", "3<-0", "3<-2"]
    assert len(live.choices) == 3 * 3  # three cells
    everything_dead = live_nodes(flow, {label: "none" for label in nb201.LABELS})
    assert len(everything_dead.choices) == 3  # a sum of zeros keeps one zero per cell (it keeps the shape)


def test_sources_follow_folded_identities():
    flow = dataflow(gmgraph.trace(nb201.supernet(C=2, N=1)))
    choices = [n for n in flow if n["kind"] == "choice"]
    arch = nb201.parse("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_1x1~2|")
    live = live_nodes(flow, arch)
    for cell in range(3):  # each cell's six Choices come in LABELS order
        edges = dict(zip(nb201.LABELS, choices[6 * cell: 6 * cell + 6]))
        assert edges["2<-1"]["inputs"] == [edges["1<-0"]["name"]]  # in the supernet: node 1
        # derived: node 1 is the identity of node 0, so the pool reads the cell's input
        assert live.sources[edges["2<-1"]["name"]] == edges["1<-0"]["inputs"][0]
        assert live.sources[edges["3<-2"]["name"]] == edges["2<-1"]["name"]
