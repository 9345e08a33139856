import doctest
import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gmgraph.errors import ChoiceError
from gmgraph.kernels.reference import check_inputs, mixed_op, mixed_op_loop, pool3x3

SHAPES = [(1, 1, 7, 5), (2, 3, 4, 4), (1, 2, 1, 1), (1, 1, 1, 6), (2, 1, 5, 7)]


def inputs(shape, k, *, skip=True, pool=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype).requires_grad_()
    ys = [torch.randn(shape, generator=g).to(dtype).requires_grad_() for _ in range(k)]
    w_param = torch.randn(k, generator=g).requires_grad_()
    w_skip = torch.randn((), generator=g).requires_grad_() if skip else None
    w_pool = torch.randn((), generator=g).requires_grad_() if pool else None
    return x, ys, w_param, w_skip, w_pool


def value_and_grads(fn, args, seed=1):
    x, ys, w_param, w_skip, w_pool = args
    out = fn(*args)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    leaves = [t for t in (x, *ys, w_param, w_skip, w_pool) if t is not None]
    grads = torch.autograd.grad(out, leaves, upstream, allow_unused=True)
    return [out, *grads]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [0, 1, 3])
def test_reference_matches_the_naive_loop(shape, k):
    args = inputs(shape, k)
    for got, want in zip(value_and_grads(mixed_op, args), value_and_grads(mixed_op_loop, args)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    k=st.integers(0, 4), skip=st.booleans(), pool=st.booleans(), seed=st.integers(0, 1000),
)
def test_reference_matches_the_naive_loop_on_any_shape(shape, k, skip, pool, seed):
    args = inputs(shape, k, skip=skip, pool=pool, seed=seed)
    torch.testing.assert_close(mixed_op(*args), mixed_op_loop(*args), rtol=1e-5, atol=1e-6)


def test_loop_pooling_is_the_nb201_pooling():
    x = torch.randn(2, 3, 7, 5, generator=torch.Generator().manual_seed(0))
    expected = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)(x)
    got = mixed_op_loop(x, [], torch.zeros(0), None, torch.tensor(1.0))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(pool3x3(x), expected, rtol=0, atol=0)
    # wide enough for gmgraph.pooling's channels-last route, and a channel slice (strided): torch's bits,
    # forward and backward (the older conv route's backward added in another order)
    generator = torch.Generator().manual_seed(1)
    wide = torch.randn(2, 40, 9, 7, generator=generator)[:, 4:36]
    upstream = torch.randn(2, 32, 9, 7, generator=generator)
    grads = []
    for pool in (pool3x3, nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)):
        leaf = wide.detach().clone().requires_grad_()
        out = pool(leaf)
        out.backward(upstream)
        grads.append((out.detach(), leaf.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_corner_of_the_pooling_averages_four_pixels():
    x = torch.arange(35.0).reshape(1, 1, 7, 5)
    out = mixed_op(x, [], torch.zeros(0), None, torch.tensor(1.0))
    assert out[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 5 + 6) / 4)
    assert out[0, 0, 3, 2].item() == pytest.approx(x[0, 0, 2:5, 1:4].mean().item())


def test_half_precision_sums_in_float32_and_rounds_once():
    x, ys, w_param, w_skip, w_pool = inputs((1, 2, 7, 5), 3, dtype=torch.bfloat16)
    got = mixed_op(x, ys, w_param, w_skip, w_pool)
    exact = mixed_op(x.float(), [y.float() for y in ys], w_param, w_skip, w_pool)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, exact.bfloat16())


def test_absent_terms_get_no_gradient_but_zero_weights_do():
    x, ys, w_param, _, _ = inputs((1, 1, 4, 4), 1)
    zero = torch.zeros((), requires_grad=True)
    out = mixed_op(x, ys, w_param, zero, None)
    (grad_zero,) = torch.autograd.grad(out.sum(), [zero])
    assert grad_zero.item() == pytest.approx(x.sum().item(), rel=1e-5)
    out = mixed_op(x, ys, w_param, None, None)
    assert torch.autograd.grad(out.sum(), [x], allow_unused=True) == (None,)


def test_no_terms_give_zeros_shaped_like_the_input():
    x = torch.randn(1, 2, 3, 3)
    out = mixed_op(x, [], torch.zeros(0), None, None)
    assert torch.equal(out, torch.zeros_like(x))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(x=torch.ones(2, 3, 4)), "NCHW"),
        (dict(x=torch.ones(1, 1, 2, 2, dtype=torch.int64)), "floating-point"),
        (dict(w_param=torch.ones(2)), "1 candidate outputs but w_param of shape \\(2,\\)"),
        (dict(ys=[torch.ones(1, 1, 2, 3)]), "shaped and typed like the input"),
        (dict(ys=[torch.ones(1, 1, 2, 2, dtype=torch.float64)]), "shaped and typed like the input"),
        (dict(w_skip=torch.ones(2)), "w_skip must be a one-element tensor"),
    ],
)
def test_bad_inputs_are_clear_errors(change, message):
    args = dict(x=torch.ones(1, 1, 2, 2), ys=[torch.ones(1, 1, 2, 2)], w_param=torch.ones(1),
                w_skip=torch.ones(()), w_pool=None)
    args.update(change)
    with pytest.raises(ChoiceError, match=message):
        check_inputs(**args)
    with pytest.raises(ChoiceError, match=message):
        mixed_op(**args)


def test_doctests():
    assert doctest.testmod(importlib.import_module("gmgraph.kernels.reference")).failed == 0
