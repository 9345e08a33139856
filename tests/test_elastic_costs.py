"""Parameters and FLOPs on elastic and nested Choices: bounds and measures against derive, arch by arch."""

import itertools

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Neg, Zero
from gmgraph.commands.show import param_range
from gmgraph.elastic import ConvView, NormView
from gmgraph.passes import derive
from gmgraph.search.cost_bounds import op_param_bounds, smallest_costs
from gmgraph.search.measures import arch_measures
from tests.test_elastic import mixed_graph

SHAPE = (3, 8, 8)


class Block(nn.Module):
    """A residual block choosing its kernel (views of one 5x5 conv) and, in the second, its width."""

    def __init__(self, index: int, channels: int = 4, widths: tuple[int, ...] = ()):
        super().__init__()
        shared = nn.Conv2d(channels, channels, 5, padding=2)
        self.kernel = Choice({f"k{k}": ConvView(shared, kernel=k) for k in (3, 5)}, f"b{index}.kernel")
        bn = nn.BatchNorm2d(channels)
        self.norm = bn
        if widths:
            expand, norm, project = nn.Conv2d(channels, max(widths), 1), nn.BatchNorm2d(max(widths)), \
                nn.Conv2d(max(widths), channels, 1, bias=False)
            self.mix = Choice({f"w{c}": nn.Sequential(ConvView(expand, out_channels=c), NormView(norm, c), nn.ReLU(),
                                                      ConvView(project, in_channels=c)) for c in widths},
                              f"b{index}.width")
        else:
            self.mix = Choice({"conv": nn.Conv2d(channels, channels, 1), "skip": nn.Identity(), "none": Zero()},
                              f"b{index}.mix")

    def forward(self, x):
        return x + self.mix(torch.relu(self.norm(self.kernel(x))))


class Nested(nn.Module):
    """A depth Choice whose blocks hold their own Choices, between a stem and a head; an op choice outside."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        blocks = [Block(1), Block(2, widths=(2, 6)), Block(3)]
        self.depth = Choice({"d3": nn.Sequential(*blocks), "d2": nn.Sequential(*blocks[:2]),
                             "d1": nn.Sequential(*blocks[:1])}, "depth")
        self.act = Choice({"relu": nn.ReLU(), "neg": Neg()}, "act")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        return self.head(self.act(self.depth(self.stem(x))))


def nested_graph() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    return gmgraph.trace(Nested()).eval()


def every_arch(gm):
    labels = gmgraph.space(gm)
    for values in itertools.product(*labels.values()):
        yield dict(zip(labels, values))


def counted_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def counted_flops(net: nn.Module) -> int:
    """Multiply-adds of the plain network's convs and linears (+1 per output with a bias), one input."""
    total = [0]

    def count(layer, inputs, out):
        per_output = layer.in_features if isinstance(layer, nn.Linear) else \
            layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        total[0] += out.numel() * (per_output + (layer.bias is not None))

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, *SHAPE))
    for handle in handles:
        handle.remove()
    return total[0]


def nested_network(arch) -> tuple:
    """What runs of ``Nested`` under ``arch``, by its construction: depth dK runs blocks 1..K only, so the labels of
    the blocks after them (two thirds of the 864 archs differ only there) choose nothing."""
    runs = int(arch["depth"][1:])
    return tuple(sorted((label, op) for label, op in arch.items()
                        if not (label[0] == "b" and label[1].isdigit() and int(label[1]) > runs)))


@pytest.fixture(scope="module")
def truth():
    """Every arch of the nested graph and of the mixed elastic graph with the counts of its derived network,
    derived and counted directly (once per network: an arch of the nested graph counts as the first arch that
    runs what it runs, see nested_network)."""
    out = {}
    for name, gm, network in (("nested", nested_graph(), nested_network), ("mixed", mixed_graph(), None)):
        counts: dict = {}
        rows = []
        for arch in every_arch(gm):
            which = network(arch) if network else tuple(arch.items())
            if which not in counts:
                net = derive(gm, arch)
                counts[which] = counted_params(net), counted_flops(net)
            rows.append((arch, *counts[which]))
        out[name] = gm, rows
    return out


def test_the_nested_graph_has_nested_labels_that_run_only_under_their_depth():
    gm = nested_graph()
    assert gmgraph.space(gm) == {"depth": ("d3", "d2", "d1"), "b1.kernel": ("k3", "k5"),
                                 "b1.mix": ("conv", "skip", "none"), "b2.kernel": ("k3", "k5"),
                                 "b2.width": ("w2", "w6"), "b3.kernel": ("k3", "k5"),
                                 "b3.mix": ("conv", "skip", "none"), "act": ("relu", "neg")}
    arch = dict.fromkeys(["b1.kernel", "b2.kernel", "b3.kernel"], "k3") | {
        "depth": "d1", "b1.mix": "conv", "b2.width": "w6", "b3.mix": "conv", "act": "relu"}
    assert [c.label for _, c in gmgraph.graph.active_choices(gm, arch)] == ["depth", "b1.kernel", "b1.mix", "act"]


@pytest.mark.parametrize("name", ["nested", "mixed"])
def test_show_parameter_range_is_the_fewest_and_most_any_derived_arch_has(truth, name):
    gm, rows = truth[name]
    params = [p for _, p, _ in rows]
    assert param_range(gm) == (min(params), max(params))


@pytest.mark.parametrize("name", ["nested", "mixed"])
def test_smallest_costs_are_the_least_any_derived_arch_costs(truth, name):
    gm, rows = truth[name]
    least = smallest_costs(gm, SHAPE)  # both graphs take 3x8x8 images
    assert least["params"] == pytest.approx(min(p for _, p, _ in rows) / 1e6, abs=0)
    assert least["flops"] == pytest.approx(min(f for _, _, f in rows) / 1e6, abs=0)


@pytest.mark.parametrize("name", ["nested", "mixed"])
def test_measures_are_the_derived_networks_counts(truth, name):
    gm, rows = truth[name]
    measures = arch_measures(gm, SHAPE)
    for arch, params, flops in rows[::7]:  # every 7th arch in enumeration order: each label takes every value
        assert measures["params"](arch) * 1e6 == pytest.approx(params, abs=1e-6)
        assert measures["flops"](arch) * 1e6 == pytest.approx(flops, abs=1e-6)


def test_a_view_counts_its_slice_not_the_shared_tensor():
    shared = nn.Conv2d(4, 8, 7, padding=3)
    choice = Choice({"k3": ConvView(shared, kernel=3), "k7": ConvView(shared, kernel=7)}, "k")
    assert op_param_bounds(choice) == {"k3": (4 * 8 * 9 + 8,) * 2, "k7": (4 * 8 * 49 + 8,) * 2}


def test_a_nested_label_shared_by_two_blocks_is_still_bounded():
    # Both blocks choose one label: the bounds take each block's cheapest and dearest on its own.
    def block():
        return Choice({"small": nn.Linear(2, 2), "big": nn.Linear(2, 2, bias=False)}, "inner")  # 6 vs 4: ops disagree

    first, second = block(), block()
    second.ops["small"], second.ops["big"] = nn.Linear(2, 2, bias=False), nn.Linear(2, 2)  # the other way round
    gm = gmgraph.trace(nn.Sequential(Choice({"both": nn.Sequential(first, second), "none": nn.Identity()}, "d")))
    rows = [counted_params(derive(gm, arch)) for arch in every_arch(gm)]
    low, high = param_range(gm)
    assert low <= min(rows) and high >= max(rows)
    assert (min(rows), max(rows)) == (0, 10) and (low, high) == (0, 12)


def test_on_the_ofa_space_the_parameter_bounds_are_its_smallest_and_largest_subnets():
    from gmgraph.spaces import ofa

    torch.manual_seed(0)
    gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, strides=ofa.strides_for(2), divisor=4))
    smallest, largest = (counted_params(derive(gm, arch)) for arch in (ofa.smallest(gm), ofa.largest(gm)))
    assert param_range(gm) == (smallest, largest) and largest == counted_params(gm)
    assert smallest_costs(gm, (3, 16, 16), measures=("params",))["params"] == pytest.approx(smallest / 1e6, abs=0)
