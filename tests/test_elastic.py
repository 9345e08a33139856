"""Elastic (weight-sharing) candidates: views of one tensor as ordinary Choice candidates."""

import itertools

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Neg
from gmgraph.elastic import ConvView, NormView, is_view, plain_parameters
from gmgraph.errors import SpaceError
from gmgraph.passes import derive, restrict, split
from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.scores.partition import best_partition, name_groups
from tests.conftest import assert_derived_matches, assert_onnx_parity, randomize_batchnorm

WIDTHS = (4, 6, 8)


class Mixed(nn.Module):
    """An elastic kernel, an op choice and an elastic width (conv -> BN -> conv) in one graph."""

    def __init__(self, extra_kernels: dict[str, int] | None = None):
        super().__init__()
        # The shared modules are reached only through their views: the traced graph keeps no other copy.
        stem = nn.Conv2d(3, 6, 7, padding=3)
        kernels = {f"{k}x{k}": k for k in (3, 5, 7)} | (extra_kernels or {})
        views = {k: ConvView(stem, kernel=k) for k in set(kernels.values())}
        self.kernel = Choice({name: views[k] for name, k in kernels.items()}, "kernel")
        self.act = Choice({"relu": nn.ReLU(), "neg": Neg()}, "act")
        expand, bn, project = nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 6, 1)
        self.wide = Choice({f"w{c}": ConvView(expand, out_channels=c) for c in WIDTHS}, "width")
        self.norm = Choice({f"w{c}": NormView(bn, c) for c in WIDTHS}, "width")
        self.narrow = Choice({f"w{c}": ConvView(project, in_channels=c) for c in WIDTHS}, "width")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

    def forward(self, x):
        x = self.act(self.kernel(x))
        return self.head(self.narrow(torch.relu(self.norm(self.wide(x)))) + x)


def mixed_graph(**kwargs) -> torch.fx.GraphModule:
    torch.manual_seed(0)
    gm = gmgraph.trace(Mixed(**kwargs))
    randomize_batchnorm(gm, torch.Generator().manual_seed(1))
    return gm.eval()


def batch(seed: int = 2, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_elastic_labels_are_ordinary_decisions_of_the_space():
    gm = mixed_graph()
    assert gmgraph.space(gm) == {"kernel": ("3x3", "5x5", "7x7"), "act": ("relu", "neg"),
                                 "width": ("w4", "w6", "w8")}
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(0))
    with gmgraph.use(gm, arch):
        assert gm(batch()).shape == (2, 10)


def test_a_shared_tensor_is_counted_once():
    gm = mixed_graph()
    owners = [stem(gm), gm.wide.ops["w8"].conv, gm.norm.ops["w8"].bn, gm.narrow.ops["w8"].conv, gm.head]
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for m in owners for p in m.parameters())
    # The views hold the very same tensor, not copies.
    assert gm.kernel.ops["3x3"].conv.weight is gm.kernel.ops["7x7"].conv.weight


def stem(gm) -> nn.Conv2d:
    return gm.kernel.ops["7x7"].conv


def test_every_arch_derives_to_the_supernet_path_with_sliced_plain_modules():
    gm = mixed_graph()
    x = batch()
    for values in itertools.product(*gmgraph.space(gm).values()):
        arch = dict(zip(gmgraph.space(gm), values))
        plain = assert_derived_matches(gm, arch, x)
        assert not any(is_view(m) for m in plain.modules())
        k, c = int(arch["kernel"][0]), int(arch["width"][1:])
        convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
        assert [conv.kernel_size[0] for conv in convs][:1] == [k]
        assert (convs[1].out_channels, convs[2].in_channels) == (c, c)
        assert [m.num_features for m in plain.modules() if isinstance(m, nn.BatchNorm2d)] == [c]


def test_a_derived_subnet_holds_copies_not_the_shared_tensor():
    gm = mixed_graph()
    plain = derive(gm, {"kernel": "7x7", "act": "relu", "width": "w8"})
    with torch.no_grad():
        next(plain.parameters()).add_(1.0)
    assert not any(p.data_ptr() == q.data_ptr() for p in plain.parameters() for q in gm.parameters())


def test_onnx_export_of_a_derived_elastic_subnet_matches_torch(tmp_path):
    gm = mixed_graph()
    plain = derive(gm, {"kernel": "5x5", "act": "neg", "width": "w6"})
    assert_onnx_parity(plain, batch(), tmp_path / "elastic.onnx")


def test_split_children_own_their_shared_tensor_and_start_from_the_parents_values():
    gm = mixed_graph()
    left, right = split(gm, "kernel", [["3x3"], ["5x5", "7x7"]])
    assert gmgraph.space(right)["kernel"] == ("5x5", "7x7")
    # Inside a child the views still share one tensor; across children and the parent, nothing is shared.
    assert right.kernel.ops["5x5"].conv is right.kernel.ops["7x7"].conv
    stems = [left.kernel.ops["3x3"].conv.weight, right.kernel.ops["5x5"].conv.weight, stem(gm).weight]
    assert len({w.data_ptr() for w in stems}) == 3
    assert all(torch.equal(w, stem(gm).weight) for w in stems[:2])
    before = {n: p.detach().clone() for n, p in right.named_parameters()}
    arch = {"kernel": "3x3", "act": "relu", "width": "w6"}
    with gmgraph.use(left, arch):
        left(batch()).sum().backward()
    torch.optim.SGD(left.parameters(), lr=0.1).step()
    assert not torch.equal(left.kernel.ops["3x3"].conv.weight, stem(gm).weight)  # the step moved the left child ...
    assert all(torch.equal(p, before[n]) for n, p in right.named_parameters())  # ... and nothing else
    assert torch.equal(stem(right).weight, stem(gm).weight)


def test_restrict_keeps_a_view_that_a_dropped_name_also_holds():
    gm = mixed_graph(extra_kernels={"small": 3})  # "small" is the very view "3x3" is
    child = restrict(gm, {"kernel": ["3x3", "7x7"]})
    assert isinstance(child.kernel.ops["3x3"], ConvView)
    assert_derived_matches(child, {"kernel": "3x3", "act": "relu", "width": "w4"}, batch())


def test_gradient_matching_groups_identical_values_together():
    gm = mixed_graph(extra_kernels={"small": 3})
    assert gmgraph.space(gm)["kernel"] == ("3x3", "5x5", "7x7", "small")
    generator = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 3, 8, 8, generator=generator), torch.randint(10, (4,), generator=generator))
               for _ in range(2)]
    distances = gradient_matching(gm.train(), "kernel", batches, rounds=2)
    # Identical gradients: 1 - cosine is 0 up to the float64 rounding of the quotient (1.1e-16 under the
    # portable kernels, exactly 0 under AVX-512), far below a real difference.
    assert distances[0, 3] <= 1e-12 and distances[0, 2] > 1e-3
    partition, _ = best_partition(distances)
    groups = name_groups(partition, gmgraph.space(gm)["kernel"])
    assert any({"3x3", "small"} <= set(group) for group in groups)


def test_a_norm_view_trains_its_channels_as_a_bn_of_that_width_would():
    bn = nn.BatchNorm2d(8)
    small = nn.BatchNorm2d(5)
    view = NormView(bn, 5).train()
    x = torch.randn(4, 5, 3, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(view(x), small(x))
    torch.testing.assert_close(bn.running_mean[:5], small.running_mean)
    assert torch.equal(bn.running_mean[5:], torch.zeros(3)) and int(bn.num_batches_tracked) == 1


def test_a_depthwise_view_slices_its_channels_together():
    dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
    view = ConvView(dw, kernel=3, out_channels=6)
    x = torch.randn(1, 6, 7, 7)
    plain = view.materialize()
    assert (plain.groups, plain.in_channels, plain.kernel_size, plain.padding) == (6, 6, (3, 3), (1, 1))
    torch.testing.assert_close(plain(x), view(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: ConvView(nn.Conv2d(2, 2, 5, padding=2), kernel=4), "must be odd"),
    (lambda: ConvView(nn.Conv2d(2, 2, 3, padding=1), kernel=5), "at most"),
    (lambda: ConvView(nn.Conv2d(2, 4, 3, padding=1), out_channels=5), "from 1 to 4"),
    (lambda: ConvView(nn.Conv2d(4, 4, 3, padding=1, groups=2), out_channels=2), "grouped conv"),
    (lambda: ConvView(nn.Conv2d(2, 2, 5, padding=0), kernel=3), "negative padding"),
    (lambda: NormView(nn.Linear(2, 2)), "BatchNorm"),
])
def test_views_the_shared_module_cannot_give_are_refused(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


def test_plain_parameters_counts_what_derive_makes():
    gm = mixed_graph()
    arch = {"kernel": "5x5", "act": "relu", "width": "w6"}
    plain = derive(gm, arch, prune=False)
    chosen = [choice.ops[arch[choice.label]] for group in gmgraph.graph.choices(gm).values() for choice in group]
    outside = sum(p.numel() for p in gm.head.parameters())
    assert sum(plain_parameters(op) for op in chosen) + outside == sum(p.numel() for p in plain.parameters())
    assert plain_parameters(nn.BatchNorm2d(3, affine=False)) == 6 == plain_parameters(
        NormView(nn.BatchNorm2d(5, affine=False), 3))


def elastic_trainer():
    from torch.utils.data import DataLoader, TensorDataset

    from gmgraph.train.loop import SupernetTrainer

    gm = mixed_graph().train()
    generator = torch.Generator().manual_seed(4)
    data = TensorDataset(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(10, (8,), generator=generator))
    return SupernetTrainer(gm, (DataLoader(data, batch_size=4), DataLoader(data, batch_size=4)), seed=0,
                           total_epochs=2)


def test_the_training_engine_trains_the_shared_tensors():
    trainer = elastic_trainer()
    before = stem(trainer.gm).weight.detach().clone()
    trainer.train_epoch(quiet=True)
    assert not torch.equal(stem(trainer.gm).weight, before)
    assert int(trainer.gm.norm.ops["w8"].bn.num_batches_tracked) == 2  # one shared BN, two steps


def test_fork_continues_training_a_child_of_an_elastic_split():
    trainer = elastic_trainer()
    trainer.train_epoch(quiet=True)
    _, right = split(trainer.gm, "kernel", [["3x3"], ["5x5", "7x7"]])
    child = trainer.fork(right)
    assert len(child.optimizer.state_dict()["state"]) == len(list(right.parameters()))
    parent = dict(trainer.gm.named_parameters(remove_duplicate=False))
    for name, p in right.named_parameters():  # the shared tensor too, known in the child by another name
        momentum = child.optimizer.state[p]["momentum_buffer"]
        assert torch.equal(momentum, trainer.optimizer.state[parent[name]]["momentum_buffer"])
    child.train_epoch(quiet=True)
