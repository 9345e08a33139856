"""The Triton launch wrapper's stride handling, in plain torch: no interpreter, no GPU.

The kernels index every tensor as the flat array that starts at its
``data_ptr``. Before a launch, ``prepare`` (inputs) and ``dense`` (the upstream
gradient, in backward) must give them tensors whose flat arrays hold the
elements in the order the kernels walk: NCHW, or NHWC when ``x`` is stored
channels_last. These tests read those flat arrays (``flat``: ``as_strided`` from
``data_ptr``, exactly what a kernel sees) and compare them with the reference
values, for inputs stored in every layout of ``interpret_mixed_op.stored``.
``test_mixed_op.py`` runs the kernels themselves on the same layouts.
"""

import pytest
import torch

from gmgraph import kernels
from gmgraph.kernels import reference
from tests.kernels.interpret_mixed_op import LAYOUTS, outputs_and_grads, relative_error, stored

pytest.importorskip("triton")
launch_module = pytest.importorskip("gmgraph.kernels.triton_mixed_op")
prepare, dense, flat = launch_module.prepare, launch_module.dense, launch_module.flat

NCHW, NHWC = torch.contiguous_format, torch.channels_last
# Last two: C == 1 and H == W == 1, where the NCHW and NHWC flat arrays are the same.
SHAPES = [(2, 3, 5, 4), (1, 2, 7, 5), (2, 1, 5, 4), (2, 3, 1, 1)]
INPUT_LAYOUTS = [layout for layout in LAYOUTS if layout != "expanded"]  # inputs are not broadcast


def in_order(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``t``'s elements in the order a kernel walks them for memory format ``fmt``."""
    return (t.permute(0, 2, 3, 1) if fmt == NHWC else t).reshape(-1)


def expected_format(shape, layout: str) -> torch.memory_format:
    # A tensor dense in both orders runs as NCHW (the same flat array).
    _, c, h, w = shape
    return NHWC if layout == "channels_last" and c > 1 and h * w > 1 else NCHW


def assert_kernel_reads(t: torch.Tensor, values: torch.Tensor, fmt: torch.memory_format) -> None:
    """``t`` is dense in ``fmt`` and its flat array holds ``values`` in ``fmt``'s order."""
    assert t.shape == values.shape and t.is_contiguous(memory_format=fmt)
    dense_strides = torch.empty(values.shape, memory_format=fmt).stride()
    # Strides of size-1 dims never move a kernel's index: only the others must be dense.
    assert [s for s, n in zip(t.stride(), t.shape) if n > 1] == [s for s, n in zip(dense_strides, t.shape) if n > 1]
    assert torch.equal(flat(t), in_order(values, fmt))


def randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", INPUT_LAYOUTS)
def test_prepare_gives_the_kernels_flat_arrays_in_their_order(shape, layout):
    values = [randn(shape, seed) for seed in range(4)]
    x = stored(values[0], layout)
    # The ys in x's layout and in others: each one is copied to x's order if it is not in it.
    ys = [stored(values[1], layout), stored(values[2], "nchw"), stored(values[3], "channels_last")]
    launch = prepare(x, ys, torch.ones(3), None, torch.ones(()))
    fmt = expected_format(shape, layout)
    assert launch.channels_last == (fmt == NHWC) and launch.memory_format == fmt
    assert_kernel_reads(launch.x, values[0], fmt)
    for y, want in zip(launch.ys, values[1:]):
        assert_kernel_reads(y, want, fmt)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_inputs_already_in_order_are_not_copied(layout):
    x, y = stored(randn((2, 3, 5, 4), 0), layout), stored(randn((2, 3, 5, 4), 1), layout)
    launch = prepare(x, [y], torch.ones(1), torch.ones(()), None)
    assert launch.x is x and launch.ys[0] is y


@pytest.mark.parametrize("layout", ["channels_last", "permuted", "sliced", "as_strided"])
def test_an_input_launched_without_prepare_would_be_read_wrongly(layout):
    # The control for the tests above: the flat array of the raw input is not NCHW order
    # (sliced and as_strided ones read nan from memory between elements).
    values = randn((2, 3, 5, 4), 0)
    assert not torch.equal(flat(stored(values, layout)), in_order(values, NCHW))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", [NCHW, NHWC], ids=["nchw", "channels_last"])
def test_backward_reads_the_upstream_gradient_in_the_order_of_x(shape, layout, fmt):
    values = randn(shape, 0)
    g = stored(values, layout)
    if layout == "expanded":  # a broadcast gradient: its values are those of the broadcast
        values = g.clone()
    assert_kernel_reads(dense(g, fmt), values, fmt)
    assert launch_module._empty(g, fmt).is_contiguous(memory_format=fmt)


def test_weights_are_packed_in_float32_with_zeros_for_absent_terms():
    x = torch.randn(1, 1, 3, 3, dtype=torch.bfloat16)
    w_param = torch.tensor([0.5, 0.25], dtype=torch.bfloat16)
    launch = prepare(x, [x, x], w_param, None, torch.tensor(2.0))
    assert launch.w.dtype == torch.float32 and launch.w.tolist() == [0.5, 0.25, 0.0, 2.0]
    assert (launch.has_skip, launch.has_pool) == (False, True)


@pytest.mark.parametrize("layout", INPUT_LAYOUTS)
@pytest.mark.parametrize("grad_layout", LAYOUTS)
def test_torch_path_matches_the_reference_on_strided_inputs_and_gradients(monkeypatch, layout, grad_layout):
    # What ``mixed_op`` runs on CPU; the Triton path on the same layouts is in test_mixed_op.py.
    monkeypatch.setenv(kernels.ENV, "torch")
    shape = (2, 3, 5, 4)

    def inputs(how):
        x = stored(randn(shape, 0), how).requires_grad_()
        ys = [stored(randn(shape, 1 + k), how).requires_grad_() for k in range(2)]
        weights = [torch.tensor([0.3, -0.7]), torch.tensor(0.5), torch.tensor(-1.5)]
        return x, ys, *(w.requires_grad_() for w in weights)

    upstream = randn(shape, 9)
    results = []
    for fn, how, grad in ((kernels.mixed_op, layout, stored(upstream, grad_layout)),
                          (reference.mixed_op, "nchw", stored(upstream, grad_layout).contiguous())):
        x, ys, *weights = inputs(how)
        results.append(outputs_and_grads(fn, x, ys, *weights, [x, *ys, *weights], grad))
    assert relative_error(*results) <= 1e-5
