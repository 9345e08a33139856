"""``derive`` splices a chosen candidate marked :func:`in_parent` into the Choice's parent, under its own keys."""

from collections import OrderedDict

import torch
from torch import nn

import gmgraph
from gmgraph.passes import derive, split
from gmgraph.passes.derive import in_parent


class Stage(nn.Module):
    """A parent that is not a Sequential: a flat list inside ``body``, then a head reading ``body``'s output."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.body(x))


def blocks(keys, marked=True):
    torch.manual_seed(0)
    layers = OrderedDict((key, nn.Sequential(nn.Linear(4, 4), nn.Tanh())) for key in keys)
    items = list(layers.items())
    ops = {f"d{n}": nn.Sequential(OrderedDict(items[:n])) for n in range(len(items), 0, -1)}
    return {op: in_parent(seq) if marked else seq for op, seq in ops.items()}


def supernet(marked=True, first="1"):
    keys = [str(int(first) + i) for i in range(3)]
    body = nn.Sequential(OrderedDict([("0", nn.Linear(4, 4)), (first, gmgraph.Choice(blocks(keys, marked), "depth")),
                                      ("9", nn.ReLU())]))
    return gmgraph.trace(Stage(body))


def x() -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(1))


def weights(net: nn.Module) -> list[str]:
    return sorted(key for key in net.state_dict() if key.endswith("weight"))


def path_output(gm, arch):
    with torch.no_grad(), gmgraph.use(gm, arch):
        return gm(x())


def test_the_chosen_blocks_go_back_under_their_own_keys_and_compute_the_supernet_path():
    gm = supernet()
    for op, kept in (("d3", ["1", "2", "3"]), ("d2", ["1", "2"]), ("d1", ["1"])):
        plain = derive(gm, {"depth": op})
        assert weights(plain) == sorted(["body.0.weight", "head.weight"] + [f"body.{k}.0.weight" for k in kept])
        with torch.no_grad():
            assert torch.equal(plain(x()), path_output(gm, {"depth": op}))
        assert not any(isinstance(m, gmgraph.Choice) for m in plain.modules())


def test_prune_false_and_fresh_weights_keep_the_same_keys():
    gm = supernet()
    kept = derive(gm, {"depth": "d2"}, prune=False, inherit=False)
    assert weights(kept) == ["body.0.weight", "body.1.0.weight", "body.2.0.weight", "head.weight"]
    kept.load_state_dict(derive(gm, {"depth": "d2"}).state_dict())
    with torch.no_grad():
        assert torch.equal(kept(x()), path_output(gm, {"depth": "d2"}))


def test_an_unmarked_sequential_candidate_stays_under_the_choices_name():
    plain = derive(supernet(marked=False), {"depth": "d2"})
    assert weights(plain) == ["body.0.weight", "body.1.1.0.weight", "body.1.2.0.weight", "head.weight"]


def test_a_key_that_is_taken_keeps_the_candidate_nested():
    # the Choice sits at "8" but its blocks are "8", "9", "10": "9" names the ReLU, so nothing is spliced
    gm = supernet(first="8")
    plain = derive(gm, {"depth": "d3"})
    assert weights(plain) == ["body.0.weight", "body.8.10.0.weight", "body.8.8.0.weight", "body.8.9.0.weight",
                              "head.weight"]
    with torch.no_grad():
        assert torch.equal(plain(x()), path_output(gm, {"depth": "d3"}))


def test_split_children_keep_the_mark():
    gm = supernet()
    deep, shallow = split(gm, "depth", [["d3"], ["d2", "d1"]])
    assert weights(derive(shallow, {"depth": "d2"})) == ["body.0.weight", "body.1.0.weight", "body.2.0.weight",
                                                         "head.weight"]
    assert weights(derive(deep, {"depth": "d3"}))[-2:] == ["body.3.0.weight", "head.weight"]
