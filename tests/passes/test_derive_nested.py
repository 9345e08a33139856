"""Nested Choices (a Choice whose candidates hold Choices): space, use, sample, derive, restrict, split."""

import itertools

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Neg, Zero
from gmgraph.elastic import ConvView, NormView, is_view
from gmgraph.errors import ArchError
from gmgraph.graph import active_choices
from gmgraph.passes import derive, restrict, split
from gmgraph.sampler_table import make_sampler
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm

C, WIDTHS, KERNELS = 4, (4, 8), (3, 5)


class Block(nn.Module):
    """A residual MBConv whose depthwise conv is an expansion Choice of kernel Choices (views of one conv),
    plus a tail Choice of an identity, a zero and a parameter-free op."""

    def __init__(self, name: str):
        super().__init__()
        expand, bn = nn.Conv2d(C, max(WIDTHS), 1), nn.BatchNorm2d(max(WIDTHS))
        depthwise = nn.Conv2d(max(WIDTHS), max(WIDTHS), max(KERNELS), padding=max(KERNELS) // 2,
                              groups=max(WIDTHS))
        project = nn.Conv2d(max(WIDTHS), C, 1)
        label = f"{name}.expand"
        self.expand = Choice({f"e{c}": ConvView(expand, out_channels=c) for c in WIDTHS}, label)
        self.norm = Choice({f"e{c}": NormView(bn, c) for c in WIDTHS}, label)
        self.depthwise = Choice({f"e{c}": Choice({f"k{k}": ConvView(depthwise, kernel=k, out_channels=c)
                                                  for k in KERNELS}, f"{name}.kernel") for c in WIDTHS}, label)
        self.project = Choice({f"e{c}": ConvView(project, in_channels=c) for c in WIDTHS}, label)
        self.tail = Choice({"skip": nn.Identity(), "zero": Zero(), "neg": Neg()}, f"{name}.tail")

    def forward(self, x):
        y = self.project(torch.relu(self.depthwise(torch.relu(self.norm(self.expand(x))))))
        return x + self.tail(y)


class Net(nn.Module):
    """A stem, a stage whose depth Choice holds two nested blocks, and a head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, C, 3, padding=1)
        blocks = nn.Sequential(Block("b1"), Block("b2"))
        self.depth = Choice({"d2": blocks, "d1": blocks[:1]}, "depth")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, 3))

    def forward(self, x):
        return self.head(self.depth(self.stem(x)))


def nested_graph() -> torch.fx.GraphModule:
    torch.manual_seed(0)
    gm = gmgraph.trace(Net())
    randomize_batchnorm(gm, torch.Generator().manual_seed(1))
    return gm.eval()


def batch(seed: int = 2) -> torch.Tensor:
    return torch.randn(2, 2, 6, 6, generator=torch.Generator().manual_seed(seed))


def all_archs(gm):
    labels = gmgraph.space(gm)
    for values in itertools.product(*labels.values()):
        yield dict(zip(labels, values))


def test_space_use_and_sample_see_the_nested_choices():
    gm = nested_graph()
    assert gmgraph.space(gm) == {"depth": ("d2", "d1"), "b1.expand": ("e4", "e8"), "b1.kernel": ("k3", "k5"),
                                 "b1.tail": ("skip", "zero", "neg"), "b2.expand": ("e4", "e8"),
                                 "b2.kernel": ("k3", "k5"), "b2.tail": ("skip", "zero", "neg")}
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(0))
    assert set(arch) == set(gmgraph.space(gm))
    with gmgraph.use(gm, arch):
        assert gm(batch()).shape == (2, 3)
    sampler = make_sampler("uniform", gm, seed=0)
    with sampler.context():
        assert set(sampler.last_arch) == set(gmgraph.space(gm))
        assert gm(batch()).shape == (2, 3)


def test_active_choices_follow_the_chosen_ops():
    gm = nested_graph()
    arch = {"depth": "d1", "b1.expand": "e8", "b1.kernel": "k3", "b1.tail": "neg",
            "b2.expand": "e4", "b2.kernel": "k5", "b2.tail": "skip"}
    labels = {choice.label for _, choice in active_choices(gm, arch)}
    assert labels == {"depth", "b1.expand", "b1.kernel", "b1.tail"}


def test_archs_derive_to_the_supernet_path_with_no_choice_or_view_left():
    gm = nested_graph()
    x = batch()
    for arch in itertools.islice(all_archs(gm), 0, None, 5):  # 29 of the 144, every op of every label among them
        plain = assert_derived_matches(gm, arch, x)
        assert not any(isinstance(m, Choice) or is_view(m) for m in plain.modules())
        depthwise = [m for m in plain.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
        blocks = 2 if arch["depth"] == "d2" else 1
        expected = [(int(arch[f"b{i}.kernel"][1:]), int(arch[f"b{i}.expand"][1:])) for i in range(1, blocks + 1)]
        assert [(m.kernel_size[0], m.out_channels) for m in depthwise] == expected


def test_derive_copies_only_the_chosen_ops_and_keeps_identity_and_zero_as_modules():
    gm = nested_graph()
    arch = {"depth": "d2", "b1.expand": "e4", "b1.kernel": "k5", "b1.tail": "skip",
            "b2.expand": "e8", "b2.kernel": "k3", "b2.tail": "zero"}
    plain = derive(gm, arch)
    first, second = plain.depth[0], plain.depth[1]
    assert isinstance(first.tail, nn.Identity) and isinstance(second.tail, Zero)
    assert isinstance(first.depthwise, nn.Conv2d) and first.depthwise.weight.shape == (4, 1, 5, 5)
    # expand (4x4 + 4), BN (2 x 4), depthwise (4 x 25 + 4), project (4 x 4 + 4), for the first block.
    assert sum(p.numel() for p in first.parameters()) == 20 + 8 + 104 + 20
    assert not any(p.data_ptr() == q.data_ptr() for p in plain.parameters() for q in gm.parameters())


def test_a_derived_nested_subnet_exports_to_onnx(tmp_path):
    gm = nested_graph()
    arch = {"depth": "d2", "b1.expand": "e8", "b1.kernel": "k3", "b1.tail": "neg",
            "b2.expand": "e4", "b2.kernel": "k5", "b2.tail": "zero"}
    assert_onnx_parity(derive(gm, arch), batch(), tmp_path / "nested.onnx")


def test_split_on_an_inner_label_gives_children_that_own_their_tensors_and_inherit_values():
    gm = nested_graph()
    left, right = split(gm, "b1.kernel", [["k3"], ["k5"]])
    assert gmgraph.space(left)["b1.kernel"] == ("k3",) and gmgraph.space(right)["b1.kernel"] == ("k5",)
    for child in (left, right):
        # Every inner kernel Choice of the label lost the other op; the other labels are untouched.
        for e in ("e4", "e8"):
            assert len(child.depth.ops["d2"][0].depthwise.ops[e].ops) == 1
        assert gmgraph.space(child)["b2.kernel"] == ("k3", "k5")
        # The child's views share ONE copy of the depthwise conv, with the parent's values, and no tensor
        # is shared with the parent.
        convs = {id(v.conv) for c in child.depth.ops["d2"][0].depthwise.ops.values() for v in c.ops.values()}
        assert len(convs) == 1
        assert not {p.data_ptr() for p in child.parameters()} & {p.data_ptr() for p in gm.parameters()}
        assert sum(p.numel() for p in child.parameters()) == sum(p.numel() for p in gm.parameters())
        # (the same tensors in the same order, some reached under another op name)
        assert all(torch.equal(p, q) for p, q in zip(child.parameters(), gm.parameters()))
    x = batch()
    for arch in all_archs(right):
        with torch.no_grad(), gmgraph.use(gm, arch):
            expected = gm(x)
        torch.testing.assert_close(assert_derived_matches(right, arch, x)(x), expected, rtol=0, atol=0)


def test_restrict_on_depth_keeps_the_blocks_a_kept_depth_still_runs():
    gm = nested_graph()
    child = restrict(gm, {"depth": ["d1"]})
    assert list(child.depth.ops) == ["d1"]
    # Block 1 is held by d1 and kept with its nested decisions; block 2 ran only under d2 and is gone.
    assert set(gmgraph.space(child)) == {"depth", "b1.expand", "b1.kernel", "b1.tail"}
    arch = {"depth": "d1", "b1.expand": "e8", "b1.kernel": "k5", "b1.tail": "neg"}
    plain = assert_derived_matches(child, arch, batch())
    with torch.no_grad(), gmgraph.use(gm, {**arch, "b2.expand": "e4", "b2.kernel": "k3", "b2.tail": "skip"}):
        torch.testing.assert_close(plain(batch()), gm(batch()), rtol=0, atol=0)


def test_a_child_that_lost_labels_remembers_them_and_derives_an_arch_of_the_root():
    gm = nested_graph()
    child = restrict(gm, {"depth": ["d1"]})
    assert child.meta["dropped_labels"] == {"b2.expand": ("e4", "e8"), "b2.kernel": ("k3", "k5"),
                                            "b2.tail": ("skip", "zero", "neg")}
    grandchild = restrict(child, {"b1.kernel": ["k5"]})
    assert set(grandchild.meta["dropped_labels"]) == {"b2.expand", "b2.kernel", "b2.tail"}
    root_arch = {"depth": "d1", "b1.expand": "e4", "b1.kernel": "k5", "b1.tail": "skip",
                 "b2.expand": "e8", "b2.kernel": "k3", "b2.tail": "neg"}
    x = batch()
    with torch.no_grad(), gmgraph.use(gm, root_arch):
        expected = gm(x)
    for graph in (child, grandchild):
        torch.testing.assert_close(derive(graph, root_arch)(x), expected, rtol=0, atol=0)
    with pytest.raises(ArchError, match="unknown label"):  # a label the root never had is still an error
        derive(child, {**root_arch, "b3.kernel": "k3"})


def test_restrict_keeps_an_inner_op_that_a_kept_outer_op_still_holds():
    gm = nested_graph()
    # Dropping d2 must not drop block 1 (d1 holds it); dropping e4 must keep the kernel views of e8.
    child = restrict(gm, {"depth": ["d1"], "b1.expand": ["e8"]})
    inner = child.depth.ops["d1"][0].depthwise.ops["e8"]
    assert list(inner.ops) == ["k3", "k5"] and all(isinstance(v, ConvView) for v in inner.ops.values())
    assert inner.ops["k3"].conv is inner.ops["k5"].conv
