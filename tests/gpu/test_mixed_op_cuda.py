"""The Triton mixed-op kernels compiled for a CUDA GPU, against the torch reference.

On a GPU nothing copies a tensor or hides its strides, so these are the
checks of the kernels and of their launch wrapper's layouts (NCHW,
channels_last, permuted, sliced, offset, broadcast gradients) that CPU CI can
only approximate (``tests/kernels`` runs the kernels in Triton's interpreter
and the wrapper in plain torch). Skipped without CUDA (see ``conftest.py``).

Run: ``python -m pytest tests/gpu -q`` (without ``TRITON_INTERPRET``).
"""

import importlib

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph import kernels
from gmgraph.choice import Zero
from gmgraph.kernels import reference
from gmgraph.passes import fuse
from tests.kernels.interpret_mixed_op import outputs_and_grads, relative_error, stored

pytestmark = pytest.mark.cuda

# A 1x1 image (every pooling window is the pixel alone), a few blocks with ragged
# rows, and one long odd-sized image.
SHAPES = [(1, 1, 1, 1), (2, 3, 1, 1), (7, 3, 17, 19), (1, 1, 127, 129)]
# float32: rounding only. Half precision: the kernels sum in float32 and round once to
# the half type, within an ulp of the largest value (bfloat16 2**-8, float16 2**-11).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


@pytest.fixture(autouse=True)
def compiled_kernels(monkeypatch):
    """The Triton module, compiled (not interpreted), forced for every call of ``kernels.mixed_op``."""
    pytest.importorskip("triton")
    module = importlib.import_module("gmgraph.kernels.triton_mixed_op")
    if module.interpreted():
        pytest.fail("TRITON_INTERPRET=1 is set: the GPU tests must run the compiled kernels; unset it")
    monkeypatch.setenv(kernels.ENV, "triton")
    return module


def run(shape, k, *, skip=True, pool=True, dtype=torch.float32, layout="nchw", ys_layout=None,
        grad_layout="nchw", seed=0):
    """(error, Triton output) for one case, every input and the upstream gradient on the GPU.

    The reference runs in float64 on the same values. The output and the
    gradients of ``x`` and ``ys`` are compared relative to their largest
    magnitude (``relative_error``). A weight gradient is one long sum
    (``sum(g * y)`` over every element) whose float32 rounding error scales
    with the magnitudes of its terms, not with its result (which cancellation
    can make small): it is compared relative to ``sum(|g| * |y|)``.
    """
    g = torch.Generator().manual_seed(seed)
    layouts = [layout, *[ys_layout or layout] * k]
    x, *ys = (stored(torch.randn(shape, generator=g).to(dtype).cuda(), how).requires_grad_() for how in layouts)
    weights = [t if t is None else t.cuda().requires_grad_() for t in (
        torch.randn(k, generator=g), torch.randn((), generator=g) if skip else None,
        torch.randn((), generator=g) if pool else None)]
    upstream = stored(torch.randn(shape, generator=g).to(dtype).cuda(), grad_layout)
    assert kernels.backend(x) == "triton"
    got = outputs_and_grads(kernels.mixed_op, *arguments([x, *ys, *weights, upstream], k))
    exact = [None if t is None else t.detach().double().contiguous().requires_grad_(t.requires_grad)
             for t in (x, *ys, *weights, upstream)]
    want = outputs_and_grads(reference.mixed_op, *arguments(exact, k))
    scale = outputs_and_grads(reference.mixed_op, *arguments([None if t is None else t.abs() for t in exact], k))
    tensors = k + 2  # the output, dx and the dys; then the weight gradients
    sums = [((a.double() - b).abs() / c.clamp_min(1e-30)).nan_to_num(nan=float("inf")).max().item()
            for a, b, c in zip(got[tensors:], want[tensors:], scale[tensors:]) if b.numel()]
    return max([relative_error(got[:tensors], want[:tensors]), *sums]), got[0]


def arguments(tensors, k):
    """``outputs_and_grads``' arguments from ``[x, *ys, w_param, w_skip, w_pool, upstream]``."""
    x, ys, weights, upstream = tensors[0], tensors[1:k + 1], tensors[k + 1:-1], tensors[-1]
    leaves = [t for t in (x, *ys, *weights) if t is not None]
    return (x, ys, *weights, leaves, upstream)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize(("skip", "pool"), [(True, True), (True, False), (False, True), (False, False)],
                         ids=["skip+pool", "skip", "pool", "params_only"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_float32_matches_the_reference(shape, k, skip, pool, layout):
    # channels_last inputs with an NCHW upstream gradient: the case first measured wrong on an H100.
    error, _ = run(shape, k, skip=skip, pool=pool, layout=layout)
    assert error <= 1e-5


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("k", [0, 3])
def test_half_precision_matches_the_reference(shape, dtype, layout, k):
    error, _ = run(shape, k, dtype=dtype, layout=layout, grad_layout=layout)
    assert error <= TOLERANCE[dtype]


@pytest.mark.parametrize("layout", ["channels_last", "permuted", "sliced", "as_strided"])
@pytest.mark.parametrize("grad_layout", ["nchw", "channels_last", "permuted", "sliced", "as_strided", "expanded"])
def test_strided_inputs_and_upstream_gradients(layout, grad_layout):
    error, _ = run((7, 3, 17, 19), 2, layout=layout, grad_layout=grad_layout)
    assert error <= 1e-5


@pytest.mark.parametrize(("layout", "ys_layout"), [("channels_last", "nchw"), ("nchw", "channels_last"),
                                                   ("channels_last", "sliced")])
def test_inputs_in_different_layouts(layout, ys_layout):
    error, _ = run((7, 3, 17, 19), 3, layout=layout, ys_layout=ys_layout, grad_layout="channels_last")
    assert error <= 1e-5


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_int64_indices(compiled_kernels, monkeypatch, layout):
    # Chosen for 2**31 elements or more; forced here on a small tensor.
    launch_shape = compiled_kernels._launch_shape
    monkeypatch.setattr(compiled_kernels, "_launch_shape", lambda t: (launch_shape(t)[0], True))
    error, _ = run((7, 3, 17, 19), 2, layout=layout)
    assert error <= 1e-5


@pytest.mark.parametrize(("layout", "fmt"), [("channels_last", torch.channels_last),
                                             ("sliced", torch.contiguous_format)])
def test_the_output_is_stored_in_the_order_of_x(layout, fmt):
    _, out = run((7, 3, 17, 19), 1, layout=layout)
    assert out.is_contiguous(memory_format=fmt)


def nb201_like_choice():
    return gmgraph.Choice({
        "none": Zero(), "skip_connect": nn.Identity(),
        "nor_conv_1x1": nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8)),
        "nor_conv_3x3": nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)),
        "avg_pool_3x3": nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    }, "e")


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
def test_fused_choice_matches_the_unfused_one_without_a_host_sync(memory_format):
    torch.manual_seed(0)
    gm = gmgraph.trace(nn.Sequential(nb201_like_choice())).cuda().to(memory_format=memory_format).train()
    fused = fuse(gm)
    x = torch.randn(4, 8, 16, 16, device="cuda").to(memory_format=memory_format)
    alphas = torch.randn(5, device="cuda")
    values = []
    for graph, sync_mode in ((gm, "default"), (fused, "default"), (fused, "error")):
        inp, a = x.clone().requires_grad_(), alphas.clone().requires_grad_()
        # A hard one-hot with a straight-through gradient, as gdas samples: the unfused
        # Choice reads it back to skip zero weights; the fused one must not read anything.
        soft = a.softmax(0)
        hard = torch.zeros_like(soft).index_fill(0, torch.tensor([3], device="cuda"), 1.0)
        torch.cuda.set_sync_debug_mode(sync_mode)  # "error": a device-to-host wait raises
        try:
            with gmgraph.use_weights(graph, {"e": hard - soft.detach() + soft}):
                out = graph(inp)
            grads = torch.autograd.grad(out.square().sum(), [inp, a])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        values.append([out.detach(), *grads])
    for got in values[1:]:
        error = relative_error(got, values[0])
        assert error <= 1e-4  # convolutions may use TF32; both graphs run the same ones
