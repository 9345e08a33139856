"""The OFA MobileNetV3 space: structure, nested elastic decisions, parameters, derive, codec, split, scoring."""

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, NormView, is_view
from gmgraph.errors import ArchError, SpaceError
from gmgraph.label_sizes import label_kind
from gmgraph.passes import derive, split
from gmgraph.samplers import SandwichSampler
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.spaces import get, ofa
from tests.conftest import assert_derived_matches, eval_graph


def small(**kwargs):
    return ofa.supernet(num_classes=10, width_mult=0.25, strides=ofa.strides_for(2), divisor=4, **kwargs)


@pytest.fixture(scope="module")
def gm():
    return eval_graph(small)


def batch(seed=2, n=2):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_the_space_has_depth_kernel_and_expansion_labels_of_every_stage(gm):
    space = gmgraph.space(gm)
    assert set(space) == set(ofa.LABELS) and len(space) == 5 * (1 + 4 * 2)
    for label, ops in space.items():
        kind = label.rsplit(".", 1)[1]
        assert ops == {"depth": ("d2", "d3", "d4"), "kernel": ("k3", "k5", "k7"), "expand": ("e3", "e4", "e6")}[kind]
    groups = gmgraph.graph.choices(gm)
    assert [label_kind(groups[f"s3.{name}"]) for name in ("depth", "b2.kernel", "b2.expand")] == ["depth", "kernel",
                                                                                                "width"]


def test_ofa_widths_strides_activations_and_squeeze_excite_at_width_1():
    net = ofa.supernet(num_classes=1000)
    assert net.stem[0].out_channels == 16 and net.stem[0].stride == (2, 2)
    c_in = 16
    for index, (stage, width, stride) in enumerate(zip(net.stages, ofa.WIDTHS, ofa.STRIDES), 1):
        blocks = list(stage.ops["d4"])
        assert [b.residual for b in blocks] == [False, True, True, True]
        for b, block in enumerate(blocks):
            body = block.body.ops["e6"]
            expand, depthwise = body[0], body[3].ops["k7"]
            hidden = ofa.make_divisible((c_in if b == 0 else width) * 6)
            assert (expand.out_channels, depthwise.out_channels, depthwise.conv.kernel_size) == (hidden, hidden, (7, 7))
            assert depthwise.conv.stride == ((stride, stride) if b == 0 else (1, 1))
            assert isinstance(body[2], nn.ReLU if index in (1, 2) else nn.Hardswish)
            assert isinstance(body[6], ofa.SqueezeExcite) == (index in (2, 4, 5))
            assert body[-2].conv.out_channels == width
        c_in = width
    assert net.final_expand[0].out_channels == 960 and net.classifier.in_features == 1280


def test_blocks_nest_kernel_choices_inside_expansion_choices_inside_the_depth_choice(gm):
    stage = gm.get_submodule("stages.1")
    d2, d3, d4 = (stage.ops[f"d{d}"] for d in (2, 3, 4))
    assert all(a is b for a, b in zip(d4, d3)) and all(a is b for a, b in zip(d4, d2)) and len(d2) == 2
    block = d4[1]
    kernels = [block.body.ops[e][3] for e in ("e3", "e4", "e6")]
    assert all(isinstance(k, Choice) and k.label == "s2.b2.kernel" for k in kernels)
    # Every kernel view of every width runs ONE shared depthwise conv; every width view ONE expand conv and BN.
    assert len({id(view.conv) for k in kernels for view in k.ops.values()}) == 1
    assert len({id(block.body.ops[e][0].conv) for e in ("e3", "e4", "e6")}) == 1
    assert all(isinstance(block.body.ops[e][1], NormView) for e in ("e3", "e4", "e6"))
    # SE squeezes to a quarter of the hidden width, sliced with it.
    se = block.body.ops["e3"][6]
    assert (se.reduce.in_channels, se.reduce.out_channels) == (block.body.ops["e3"][0].out_channels,
                                                              ofa.make_divisible(se.reduce.in_channels // 4, 4))


@pytest.mark.parametrize("build", [small, lambda: ofa.supernet(num_classes=1000)], ids=["small", "ofa-1.0"])
def test_the_supernet_holds_exactly_the_parameters_of_its_largest_subnet(build):
    gm = gmgraph.trace(build())
    largest = derive(gm, ofa.largest(gm))
    total = sum(p.numel() for p in gm.parameters())
    assert sum(p.numel() for p in largest.parameters()) == total
    assert set(ofa.largest(gm).values()) == {"d4", "k7", "e6"} and set(ofa.smallest(gm).values()) == {"d2", "k3",
                                                                                                    "e3"}
    smallest = derive(gm, ofa.smallest(gm))
    assert sum(p.numel() for p in smallest.parameters()) < total / 2


def test_sampled_archs_derive_to_the_supernet_path_with_no_choice_or_view_left(gm):
    generator = torch.Generator().manual_seed(0)
    x = batch()
    for arch in [ofa.largest(gm), ofa.smallest(gm)] + [gmgraph.sample(gm, generator) for _ in range(4)]:
        plain = assert_derived_matches(gm, arch, x)
        assert not any(isinstance(m, Choice) or is_view(m) for m in plain.modules())
        depthwise = [m for name, m in plain.named_modules()
                     if name.startswith("stages.") and isinstance(m, nn.Conv2d) and m.groups > 1]
        expected = [int(arch[f"s{s}.b{b}.kernel"][1:]) for s in range(1, 6)
                    for b in range(1, int(arch[f"s{s}.depth"][1:]) + 1)]
        assert [m.kernel_size[0] for m in depthwise] == expected


def test_the_text_codec_round_trips_what_runs(gm):
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(1))
    text = get("ofa").to_str(arch)
    assert len(text.split("/")) == 5 and text == ofa.to_str(ofa.parse(text))
    back = ofa.parse(text)
    assert list(back) == list(ofa.LABELS)
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(derive(gm, back)(x), derive(gm, arch)(x), rtol=0, atol=0)


@pytest.mark.parametrize("text, message", [
    ("d4:k7e6,k7e6,k7e6,k7e6", "names 1 stage"),
    ("d5:k7e6,k7e6,k7e6,k7e6/" * 4 + "d2:k3e3,k3e3,-,-", "d<depth>"),
    ("d2:k7e6,k9e6,-,-/" * 4 + "d2:k3e3,k3e3,-,-", "block 2 'k9e6'"),
    ("d2:k7e6,-,-,-/" * 4 + "d2:k3e3,k3e3,-,-", "'-' only past the depth"),
])
def test_bad_arch_texts_say_what_is_wrong(text, message):
    with pytest.raises(ArchError, match=message):
        ofa.parse(text)


def test_bad_strides_are_refused():
    with pytest.raises(SpaceError, match="stride-2 layers"):
        ofa.strides_for(6)
    with pytest.raises(SpaceError, match="each 1 or 2"):
        ofa.supernet(strides=(2, 2, 3, 1, 1, 1))


def test_split_on_a_kernel_label_gives_children_their_own_shared_tensors(gm):
    left, right = split(gm, "s2.b3.kernel", [["k3"], ["k5", "k7"]])
    assert gmgraph.space(right)["s2.b3.kernel"] == ("k5", "k7") and gmgraph.space(left)["s2.b3.kernel"] == ("k3",)
    for child in (left, right):
        assert sum(p.numel() for p in child.parameters()) == sum(p.numel() for p in gm.parameters())
        assert not {p.data_ptr() for p in child.parameters()} & {p.data_ptr() for p in gm.parameters()}
        assert all(torch.equal(p, q) for p, q in zip(child.parameters(), gm.parameters()))
    arch = {**ofa.largest(gm), "s2.b3.kernel": "k5"}
    assert_derived_matches(right, arch, batch())


def test_gradient_matching_scores_a_kernel_the_drawn_depth_would_leave_off():
    gm = eval_graph(small).train()
    generator = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 3, 16, 16, generator=generator), torch.randint(10, (4,), generator=generator))
               for _ in range(3)]
    # s1.b4 runs only at depth d4: every round forces it on, so no round scores three equal gradients (without
    # that, a round drawing d2 or d3, two thirds of them, would score 0 for every pair).
    for seed in range(3):
        distances = gradient_matching(gm, "s1.b4.kernel", batches[seed:], rounds=1, seed=seed)
        assert distances[0, 1] > 1e-4 and distances[1, 2] > 1e-4 and distances[0, 2] > 1e-4


def test_the_sandwich_paths_are_the_largest_and_smallest_subnets(gm):
    largest, smallest, _ = SandwichSampler(gm, random=1).step_archs()
    assert largest == ofa.largest(gm) and smallest == ofa.smallest(gm)
    assert largest["s1.b1.kernel"] == "k7" and smallest["s1.depth"] == "d2"


def test_the_builder_sets_width_and_downsampling_from_width_and_cells():
    net = get("ofa").build(width=16, cells=5, num_classes=10, in_channels=1)
    assert net.stem[0].out_channels == 16 and net.stem[0].in_channels == 1
    assert [s.ops["d4"][0].body.ops["e3"][3].ops["k3"].conv.stride[0] for s in net.stages] == list(ofa.STRIDES)
    small_net = get("ofa").build(width=4, cells=1, num_classes=10, in_channels=1)
    assert small_net.stem[0].stride == (2, 2)
    assert [s.ops["d4"][0].body.ops["e3"][3].ops["k3"].conv.stride[0] for s in small_net.stages] == [1] * 5
    assert isinstance(small_net.stages[0].ops["d2"][0].body.ops["e3"][0], ConvView)


def test_progressive_shrinking_unlocks_kernels_then_depths_then_expansions(gm):
    from gmgraph.shrinking import ShrinkSchedule

    schedule = ShrinkSchedule("full:1,kernel:1,depth:1+1,width:1", gmgraph.graph.choices(gm))
    labels = ("s3.b2.kernel", "s3.depth", "s3.b2.expand")
    allowed = [tuple(schedule.allowed(epoch)[label] for label in labels) for epoch in range(5)]
    assert allowed == [
        (("k7",), ("d4",), ("e6",)),
        (("k3", "k5", "k7"), ("d4",), ("e6",)),
        (("k3", "k5", "k7"), ("d3", "d4"), ("e6",)),
        (("k3", "k5", "k7"), ("d2", "d3", "d4"), ("e6",)),
        (("k3", "k5", "k7"), ("d2", "d3", "d4"), ("e3", "e4", "e6")),
    ]


def test_bn_recalibration_of_a_subnet_runs_on_its_sliced_copies_and_leaves_the_shared_statistics(gm):
    from gmgraph.search.evaluation import evaluate, recalibrate_bn

    arch = {**gmgraph.sample(gm, torch.Generator().manual_seed(4)), "s1.b1.expand": "e4"}
    buffers = {name: b.clone() for name, b in gm.named_buffers()}
    generator = torch.Generator().manual_seed(5)
    calib = [(torch.randn(8, 3, 16, 16, generator=generator), torch.randint(10, (8,), generator=generator))]
    val = [(torch.randn(8, 3, 16, 16, generator=generator), torch.randint(10, (8,), generator=generator))]
    accuracy = evaluate(gm, arch, val, calib_loader=calib, bn_batches=1)
    assert all(torch.equal(b, buffers[name]) for name, b in gm.named_buffers())
    plain = derive(gm, arch)
    recalibrate_bn(plain, calib)
    with torch.no_grad():
        expected = (plain.eval()(val[0][0]).argmax(1) == val[0][1]).float().mean().item()
    assert accuracy == expected
    # The derived BN has the subnet's sliced width and statistics of its own, not the supernet's.
    norm = plain.get_submodule("stages.0")[0].body[1]
    shared = gm.get_submodule("stages.0").ops["d4"][0].body.ops["e3"][1].bn
    assert (norm.num_features, shared.num_features) == (16, 24)
    assert not torch.equal(norm.running_mean, shared.running_mean[:norm.num_features])


def test_sorting_channels_keeps_the_widest_subnet_and_puts_the_most_important_channels_first():
    gm = eval_graph(small)
    x = batch()
    archs = [ofa.largest(gm), {**ofa.largest(gm), **{label: "k3" for label in ofa.LABELS if "kernel" in label}}]
    with torch.no_grad():
        before = [derive(gm, arch)(x) for arch in archs]
    block = gm.get_submodule("stages.1").ops["d4"][1].body  # stage 2: a block with SE
    wide, narrow = block.ops["e6"], block.ops["e3"]
    project, excite = wide[-2].conv, wide[6].expand.conv
    kept = narrow[-2].in_channels  # the hidden channels e3 runs: the first ones
    was = project.weight.abs().sum((0, 2, 3))[:kept].sum()
    assert ofa.sort_channels(gm) == 20
    with torch.no_grad():
        for arch, out in zip(archs, before):  # e6 everywhere: every channel runs, in another order
            torch.testing.assert_close(derive(gm, arch)(x), out, rtol=0, atol=1e-5)
    importance = project.weight.abs().sum((0, 2, 3))
    assert torch.equal(importance, importance.sort(descending=True).values)
    squeeze = excite.weight.abs().sum((0, 2, 3))
    assert torch.equal(squeeze, squeeze.sort(descending=True).values)
    # The narrowest expansion (a view of the same modules) now runs the block's most important channels.
    assert narrow[-2].conv is project and importance[:kept].sum() > was
    assert torch.equal(importance[:kept], importance.topk(kept).values)
