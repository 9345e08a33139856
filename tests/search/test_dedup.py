"""Searches deduplicate candidates by the derived network (issue 32, item 2).

Architectures that differ only in decisions ``derive`` prunes are one network:
:mod:`gmgraph.search.canonical` says which, checked here against ``derive``
itself, and random search, evolution, NSGA-II and argmax evaluate each network
once, so a front never lists one network twice and a repeat uses up no budget.
"""

from __future__ import annotations

import pytest
import torch

import gmgraph
from gmgraph.arch import key
from gmgraph.choice import Choice
from gmgraph.passes.derive import derive
from gmgraph.search import STRATEGIES, Objective, SearchContext, evolution, nsga2, random_search
from gmgraph.search.canonical import canonical_form
from gmgraph.spaces import darts, mobilenet, nb201
from tests.latency.test_liveness import skewed_arch

SPACES = {
    "nb201": lambda: nb201.supernet(C=2, N=1),
    "darts": lambda: darts.supernet(C=2, layers=3),
    "mobilenet": lambda: mobilenet.supernet(num_classes=4, width_mult=0.1),
}

# NB201: node 1 feeds only none edges (2<-1, 3<-1), so edge 1<-0 is dead: these two derive one network
DEAD_1_0 = "|{}~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def root():
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=2, N=1))


def derived_graph(gm, arch) -> tuple:
    """``derive(gm, arch)`` as plain data: each node's name, what it runs (a Choice's chosen op) and reads."""
    labels = {n.target: gm.get_submodule(n.target).label for n in gm.graph.nodes
              if n.op == "call_module" and isinstance(gm.get_submodule(n.target), Choice)}
    plain = derive(gm, arch)
    return tuple((n.name, n.op, str(n.target), arch[labels[n.target]] if n.target in labels else "",
                  tuple(a.name for a in n.all_input_nodes)) for n in plain.graph.nodes)


@pytest.mark.parametrize("name", list(SPACES))
def test_two_archs_are_one_network_exactly_when_derive_gives_one_graph(name):
    gm = gmgraph.trace(SPACES[name]())
    canonical, space = canonical_form(gm), gmgraph.space(gm)
    generator = torch.Generator().manual_seed(0)
    same = differ = 0
    for _ in range(2 if name == "nb201" else 1):  # derive is slow on the larger spaces
        arch = skewed_arch(gm, generator)
        graph, network = derived_graph(gm, arch), canonical.network(arch)
        labels = list(space)[:: max(1, len(space) // 4)]  # neighbours: one decision changed, each way
        for label in labels:
            for op in space[label]:
                other = {**arch, label: op}
                equal = derived_graph(gm, other) == graph
                assert (canonical.network(other) == network) == equal, (name, label, op)
                assert (canonical(other) == canonical(arch)) == equal, (name, label, op)
                same, differ = same + equal, differ + (not equal)
    assert same > 2 and differ > 2  # both kinds met


def test_the_canonical_arch_derives_the_same_network_with_pruned_decisions_at_the_first_op(root):
    canonical = canonical_form(root)
    archs = [nb201.parse(DEAD_1_0.format(op)) for op in nb201.OPS]
    assert len({key(canonical(arch)) for arch in archs}) == 1
    chosen = canonical(archs[3])
    assert chosen == nb201.parse(DEAD_1_0.format("none")) and canonical(chosen) == chosen
    assert derived_graph(root, chosen) == derived_graph(root, archs[3])


def test_node_aliases_that_meet_in_a_sum_are_one_network(root):
    # node 1 = node 0 (skip); node 2 = skip(node 0) + none(node 1) or none(node 0) + skip(node 1): both node 0
    canonical = canonical_form(root)
    a = nb201.parse("|skip_connect~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    b = nb201.parse("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    assert derived_graph(root, a) == derived_graph(root, b)
    assert canonical(a) == canonical(b) == a  # the first met stands for the network


def networks_of(canonical, archs) -> list:
    return [canonical.network(arch) for arch in archs]


def test_random_search_evaluates_distinct_networks_and_counts_them(root):
    canonical, space = canonical_form(root), gmgraph.space(root)
    scored = []
    r = random_search(space, lambda arch: scored.append(arch) or 0.5, n=300, seed=1, canonical=canonical)
    networks = networks_of(canonical, scored)
    assert len(set(networks)) == len(networks) == r.evaluations == len(r.history) == 300
    assert all(canonical(arch) == arch for arch in scored)  # each evaluated as its canonical arch


def test_evolution_spends_its_whole_budget_on_distinct_networks(root):
    canonical, space = canonical_form(root), gmgraph.space(root)
    # fitness by live conv count: many archs tie, and children of a good parent often repeat a network

    def convs(arch):
        return float(sum(op.startswith("nor_conv") for _, op, _ in canonical.network(arch)))

    scored = []
    r = evolution(space, lambda arch: scored.append(arch) or convs(arch), population=10, sample_size=5,
                  cycles=90, seed=0, canonical=canonical)
    networks = networks_of(canonical, scored)
    assert len(set(networks)) == len(networks) == r.evaluations == len(r.history) == 100


def test_a_pareto_front_lists_each_network_once(root):
    # the objectives see only the network: archs differing in pruned decisions tie on both, as in the issue
    canonical, space = canonical_form(root), gmgraph.space(root)

    def params(arch):
        return float(sum(p.numel() for p in derive(root, arch).parameters()))

    def depth(arch):
        return float(len(canonical.network(arch)))

    objectives = [Objective("depth", depth, "max"), Objective("params", params, "min")]
    r = nsga2(space, objectives, budget=120, population=20, seed=0, canonical=canonical)
    front_networks = networks_of(canonical, [arch for arch, _ in r.front])
    assert len(set(front_networks)) == len(front_networks) > 1
    assert len(set(networks_of(canonical, [arch for arch, _ in r.history]))) == r.evaluations == 120


def test_argmax_scores_a_network_two_leaves_share_once(root):
    canonical, space = canonical_form(root), gmgraph.space(root)
    archs = [nb201.parse(DEAD_1_0.format(op)) for op in ("nor_conv_3x3", "avg_pool_3x3")]
    leaves = []
    for arch in archs:  # each leaf's alphas pick its arch
        alphas = {label: torch.tensor([1.0 if op == arch[label] else 0.0 for op in ops]) for label, ops in space.items()}
        leaves.append((alphas, space))
    scored = []
    found = STRATEGIES["argmax"](SearchContext(space, lambda arch: scored.append(arch) or 0.5, alphas=leaves,
                                               canonical=canonical))
    assert scored == [archs[0]] and found.evaluations == 1


def test_without_a_canonical_form_every_arch_is_its_own_network():
    space = {"a": ("x", "y"), "b": ("u", "v")}
    assert random_search(space, lambda arch: 0.0, n=4).evaluations == 4
    assert STRATEGIES["random"](SearchContext(space, lambda arch: 0.0, evaluations=4)).evaluations == 4


def test_canonical_forms_are_remembered(root):
    # a replay of derive's rules per decision it tries to free, never a derived network; then remembered
    canonical = canonical_form(root)
    calls = []
    replay = canonical.network
    canonical.network = lambda arch: calls.append(1) or replay(arch)
    arch = nb201.parse(DEAD_1_0.format("nor_conv_3x3"))
    first = canonical(arch)
    replays = len(calls)
    assert 1 <= replays <= len(nb201.LABELS) + 1
    assert canonical(arch) == first and len(calls) == replays


# A Pareto run through the command offers each network once on its front: tests/test_hardware_aware.py
# (test_a_pareto_run_offers_each_network_once_on_its_front), on the Pareto search it runs for its own tests.
