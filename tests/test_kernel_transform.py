"""OFA's kernel transform matrices: smaller kernels as learned transforms of the larger kernel's centre."""

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice
from gmgraph.elastic import ConvView, KernelTransform, plain_parameters
from gmgraph.errors import SpaceError
from gmgraph.passes import derive, split
from gmgraph.spaces import ofa
from tests.conftest import assert_derived_matches, eval_graph


def randomized(transform: KernelTransform, seed: int = 0) -> KernelTransform:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for matrix in transform.matrices.values():
            matrix.add_(0.3 * torch.randn(matrix.shape, generator=generator))
    return transform


def test_a_smaller_kernel_is_the_transformed_centre_of_the_next_larger_one():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 7, padding=3)
    transform = randomized(KernelTransform(7, (3, 5)))
    m5, m3 = transform.matrices["5"], transform.matrices["3"]
    w = conv.weight
    five = torch.einsum("oiq,pq->oip", w[:, :, 1:6, 1:6].reshape(3, 2, 25), m5).reshape(3, 2, 5, 5)
    three = torch.einsum("oiq,pq->oip", five[:, :, 1:4, 1:4].reshape(3, 2, 9), m3).reshape(3, 2, 3, 3)
    views = {k: ConvView(conv, kernel=k, transform=transform) for k in (3, 5, 7)}
    torch.testing.assert_close(views[5].weight(), five, rtol=0, atol=1e-6)
    torch.testing.assert_close(views[3].weight(), three, rtol=0, atol=1e-6)
    assert torch.equal(views[7].weight(), w)
    # The materialised conv holds the transformed kernel and computes what the view computes.
    x = torch.randn(1, 2, 9, 9)
    torch.testing.assert_close(views[3].materialize()(x), views[3](x), rtol=0, atol=1e-6)
    assert plain_parameters(views[3]) == 3 * 2 * 9 + 3


def test_the_matrices_start_as_the_identity_and_train_with_the_path_that_uses_them():
    conv = nn.Conv2d(1, 2, 7, padding=3)
    transform = KernelTransform(7, (3, 5))
    kernel = Choice({f"k{k}": ConvView(conv, kernel=k, transform=transform) for k in (3, 5, 7)}, "kernel")
    plain = Choice({f"k{k}": ConvView(conv, kernel=k) for k in (3, 5, 7)}, "kernel")
    assert sum(p.numel() for p in kernel.parameters()) == sum(p.numel() for p in conv.parameters()) + 25 ** 2 + 9 ** 2
    x = torch.randn(2, 1, 8, 8)
    touched = {}
    for op in ("k3", "k5", "k7"):
        kernel.activate(op)
        plain.activate(op)
        torch.testing.assert_close(kernel(x), plain(x), rtol=0, atol=0)
        transform.zero_grad()
        kernel(x).square().sum().backward()
        touched[op] = sorted(k for k, m in transform.matrices.items() if m.grad is not None and m.grad.abs().sum() > 0)
    assert touched == {"k3": ["3", "5"], "k5": ["5"], "k7": []}


@pytest.mark.parametrize("make, message", [
    (lambda: KernelTransform(7, (4,)), "odd sizes below"),
    (lambda: KernelTransform(5, (3, 5)), "odd sizes below"),
    (lambda: ConvView(nn.Conv2d(1, 1, 7, padding=3), kernel=5, transform=KernelTransform(7, (3,))), "5x5 view"),
    (lambda: ConvView(nn.Conv2d(1, 1, 5, padding=2), kernel=3, transform=KernelTransform(7, (3,))), "7x7 conv"),
])
def test_a_transform_that_cannot_serve_the_view_is_refused(make, message):
    with pytest.raises(SpaceError, match=message):
        make()


@pytest.fixture(scope="module")
def gm():
    graph = eval_graph(lambda: ofa.supernet(num_classes=10, width_mult=0.25, strides=ofa.strides_for(2), divisor=4,
                                            kernel_transform=True))
    for i, module in enumerate(m for m in graph.modules() if isinstance(m, KernelTransform)):
        randomized(module, seed=i)
    return graph


def test_the_ofa_supernet_holds_its_largest_subnet_plus_the_matrices(gm):
    transforms = {id(m): m for m in gm.modules() if isinstance(m, KernelTransform)}
    assert len(transforms) == 20  # one per block, shared by its 3 widths x 3 kernels
    total = sum(p.numel() for p in gm.parameters())
    largest = derive(gm, ofa.largest(gm))
    assert total == sum(p.numel() for p in largest.parameters()) + 20 * (25 ** 2 + 9 ** 2)


def test_derive_folds_the_transform_into_the_kernel(gm):
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    for arch in (ofa.smallest(gm), gmgraph.sample(gm, torch.Generator().manual_seed(2))):
        plain = assert_derived_matches(gm, arch, x)
        assert not any(isinstance(m, KernelTransform) for m in plain.modules())


def test_split_children_own_their_matrices(gm):
    left, right = split(gm, "s1.b1.kernel", [["k3"], ["k5", "k7"]])
    mine = {p.data_ptr() for m in left.modules() if isinstance(m, KernelTransform) for p in m.parameters()}
    assert len(mine) == 40 and not mine & {p.data_ptr() for p in gm.parameters()}
    assert all(torch.equal(p, q) for p, q in zip(left.parameters(), gm.parameters()))
