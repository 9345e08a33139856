"""Canonical forms on nested Choices: decisions inside the chosen op count, those of left-off blocks do not."""

import itertools

import torch

import gmgraph
from gmgraph.arch import key
from gmgraph.passes import derive
from gmgraph.search.canonical import canonical_form
from tests.passes.test_derive_nested import all_archs, batch, nested_graph


def test_nested_decisions_of_the_chosen_op_change_the_network_and_left_off_ones_do_not():
    gm = nested_graph()
    canonical = canonical_form(gm)
    base = {"depth": "d1", "b1.expand": "e8", "b1.kernel": "k5", "b1.tail": "neg",
            "b2.expand": "e8", "b2.kernel": "k5", "b2.tail": "neg"}
    # Block 2 does not run at depth d1: its decisions are set to their first ops.
    assert canonical(base) == {**base, "b2.expand": "e4", "b2.kernel": "k3", "b2.tail": "skip"}
    for label in ("b1.expand", "b1.kernel", "b1.tail"):
        other = {**base, label: gmgraph.space(gm)[label][0]}
        assert canonical(other) != canonical(base)
    assert canonical({**base, "depth": "d2"})["b2.kernel"] == "k5"


def test_archs_with_equal_canonical_forms_derive_equal_networks():
    gm = nested_graph()
    canonical = canonical_form(gm)
    x = batch()
    groups: dict[str, list] = {}
    for arch in all_archs(gm):
        groups.setdefault(key(canonical(arch)), []).append(arch)
    # 2 depths: d2 runs 2 x 2 x 2 x 3 decisions per block, d1 one block's 12.
    assert len(groups) == 12 * 12 + 12
    with torch.no_grad():
        for archs in itertools.islice(groups.values(), 0, None, 17):
            outputs = [derive(gm, arch)(x) for arch in archs[:3]]
            assert all(torch.equal(outputs[0], out) for out in outputs[1:])
