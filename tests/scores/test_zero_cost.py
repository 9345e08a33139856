"""Tests of gmgraph.scores.zero_cost (zero-cost proxies on a derived copy)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import gmgraph
from gmgraph.choice import Choice, Neg
from gmgraph.errors import ConfigError, DataError
from gmgraph.nasbench import nb201 as table
from gmgraph.passes.derive import derive
from gmgraph.scores.zero_cost import DATA_FREE, METRICS, zero_cost
from gmgraph.spaces import nb201

ARCH = nb201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")


def image_batch(n: int = 8, seed: int = 0, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(10, (n,), generator=g)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions gain nothing from threads, and busy-waiting OpenMP threads on a
    loaded CI machine made these tests 10x slower; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nb201_c16() -> torch.fx.GraphModule:
    """The full-size NB201 supernet (C=16, N=5) for comparisons with the table."""
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=16, N=5))


# ------------------------------------------------------------- tiny models


class Mlp(nn.Module):
    """Linear -> Choice(tanh | neg) -> Linear: small enough for a full Hessian."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5)
        self.act = Choice({"tanh": nn.Tanh(), "neg": Neg()}, "act")
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ReluToy(nn.Module):
    """Linear(2 -> 3) with fixed weights followed by a ReLU written in one of several ways."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.fc = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        self.relu = nn.ReLU()
        # A ReLU inside a chosen op: a leaf module in the derived graph.
        self.inner = Choice({"seq": nn.Sequential(nn.Identity(), nn.ReLU())}, "inner")
        self.head = Choice({"id": nn.Identity(), "neg": Neg()}, "head")

    def forward(self, x):
        h = self.fc(x)
        if self.how == "module":
            h = self.relu(h)
        elif self.how == "nested":
            h = self.inner(h)
        elif self.how == "function":
            h = F.relu(h)
        elif self.how == "method":
            h = h.relu()
        return self.head(h)


def mlp_graph() -> torch.fx.GraphModule:
    torch.manual_seed(3)
    return gmgraph.trace(Mlp()).double()


def mlp_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    return torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(3, (6,), generator=g)


def mlp_loss_and_params(gm: torch.fx.GraphModule, arch: dict, x, y):
    """Manual forward of the chosen path (no derive, no zero_cost code)."""
    params = [gm.fc1.weight, gm.fc1.bias, gm.fc2.weight, gm.fc2.bias]
    act = torch.tanh if arch["act"] == "tanh" else torch.neg
    loss = F.cross_entropy(F.linear(act(F.linear(x, *params[:2])), *params[2:]), y)
    return loss, params


# ------------------------------------------------------------- generic properties


@pytest.mark.parametrize("metric", METRICS)
def test_every_metric_is_a_finite_deterministic_float(tiny_nb201, metric):
    batch = image_batch()
    first = zero_cost(tiny_nb201, ARCH, metric, batch)
    second = zero_cost(tiny_nb201, ARCH, metric, batch)
    assert isinstance(first, float)
    assert math.isfinite(first)
    assert first == second


def test_zero_cost_never_mutates_the_supernet_or_the_global_rng(tiny_nb201):
    gm = tiny_nb201
    gm.get_submodule("cells.0").train()  # mixed training flags must survive as they are
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    flags = {name: m.training for name, m in gm.named_modules()}
    running = {label: "skip_connect" for label in nb201.LABELS}
    rng = torch.get_rng_state()
    with gmgraph.use(gm, running):
        for metric in METRICS:
            zero_cost(gm, ARCH, metric, image_batch(), seed=5)
        modes = {m.active for group in gmgraph.choices(gm).values() for m in group}
    assert torch.equal(torch.get_rng_state(), rng)
    assert modes == {"skip_connect"}
    assert all(m.active is None and m.weights is None for g in gmgraph.choices(gm).values() for m in g)
    after = gm.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert all(p.grad is None for p in gm.parameters())
    assert {name: m.training for name, m in gm.named_modules()} == flags


def test_gradient_metrics_work_inside_no_grad(tiny_nb201):
    batch = image_batch()
    expected = zero_cost(tiny_nb201, ARCH, "snip", batch)
    with torch.no_grad():
        assert zero_cost(tiny_nb201, ARCH, "snip", batch) == expected


@pytest.mark.parametrize("metric", DATA_FREE)
def test_data_free_metrics_ignore_the_values_of_the_batch(tiny_nb201, metric):
    x1, y1 = image_batch(8, seed=1)
    x2, y2 = image_batch(2, seed=2)
    assert zero_cost(tiny_nb201, ARCH, metric, (x1, y1)) == zero_cost(tiny_nb201, ARCH, metric, (x2 * 5 + 3, y2))


def test_seed_controls_randomness_inside_the_network():
    torch.manual_seed(0)
    gm = gmgraph.trace(nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), Choice({"id": nn.Identity()}, "a"),
                                     nn.Linear(16, 3)))
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    scores = [zero_cost(gm, {"a": "id"}, "grad_norm", (x, y), seed=s) for s in (0, 0, 1)]
    assert scores[0] == scores[1] != scores[2]


# ------------------------------------------------------------- hand-checked values


def test_grad_norm_and_snip_match_manual_autograd():
    gm, (x, y) = mlp_graph(), mlp_batch()
    for arch in ({"act": "tanh"}, {"act": "neg"}):
        loss, params = mlp_loss_and_params(gm, arch, x, y)
        grads = torch.autograd.grad(loss, params)
        grad_norm = sum(g.norm().item() for g in grads)
        snip = sum((p * g).abs().sum().item() for p, g in zip(params, grads))
        assert zero_cost(gm, arch, "grad_norm", (x, y)) == pytest.approx(grad_norm, rel=1e-12)
        assert zero_cost(gm, arch, "snip", (x, y)) == pytest.approx(snip, rel=1e-12)


def test_grasp_matches_an_explicit_hessian():
    gm, (x, y) = mlp_graph(), mlp_batch()
    arch = {"act": "tanh"}
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    shapes = [gm.get_parameter(n).shape for n in names]
    theta = torch.cat([gm.get_parameter(n).detach().reshape(-1) for n in names])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        chunks = flat.split([math.prod(s) for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        with gmgraph.use(gm, arch):
            return F.cross_entropy(functional_call(gm, params, (x,)), y)

    g = torch.autograd.functional.jacobian(loss_of, theta)
    hessian = torch.autograd.functional.hessian(loss_of, theta)
    expected = -(theta @ (hessian @ g)).item()
    assert expected != 0
    assert zero_cost(gm, arch, "grasp", (x, y)) == pytest.approx(expected, rel=1e-10)


def test_synflow_of_linear_then_batchnorm_has_a_closed_form():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), Choice({"id": nn.Identity()}, "a"))
    bn = net[1]
    with torch.no_grad():  # running stats that synflow must ignore (they are reset on the copy)
        bn.running_mean.copy_(torch.tensor([5.0, -3.0, 1.0]))
        bn.running_var.copy_(torch.tensor([9.0, 0.1, 4.0]))
        bn.weight.copy_(torch.tensor([-0.5, 2.0, 1.5]))
        bn.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    gm = gmgraph.trace(net)
    w, b = net[0].weight.detach().double().abs(), net[0].bias.detach().double().abs()
    gamma, beta = bn.weight.detach().double().abs(), bn.bias.detach().double().abs()
    s = math.sqrt(1 + bn.eps)
    z = w.sum(1) + b  # Linear output on an all-ones input
    # R = Σ_i (|γ_i| z_i / s + |β_i|): ∂R/∂W_ij = ∂R/∂b_i = |γ_i|/s, ∂R/∂γ_i = z_i/s, ∂R/∂β_i = 1
    expected = ((w * gamma[:, None]).sum() + (b * gamma).sum() + (gamma * z).sum()) / s + beta.sum()
    x = torch.randn(7, 4)
    assert zero_cost(gm, {"a": "id"}, "synflow", (x, None)) == pytest.approx(expected.item(), rel=1e-12)


@pytest.mark.parametrize("how", ["module", "nested", "function", "method"])
def test_naswot_equals_the_hand_computed_kernel(how):
    gm = gmgraph.trace(ReluToy(how))
    x = torch.tensor([[1.0, 1.0], [1.0, -2.0], [-1.0, 2.0]])  # codes 111, 100, 011
    # K[i, j] = 3 - Hamming: [[3, 1, 2], [1, 3, 0], [2, 0, 3]], det = 27 - 3 - 12 = 12
    arch = {"head": "neg", **({"inner": "seq"} if how == "nested" else {})}  # untraced modules are dropped
    score = zero_cost(gm, arch, "naswot", (x, torch.zeros(3, dtype=torch.long)))
    assert score == pytest.approx(math.log(12.0), rel=1e-12)


def test_naswot_of_identical_codes_is_minus_infinity():
    gm = gmgraph.trace(ReluToy("module"))
    x = torch.tensor([[1.0, 1.0], [2.0, 3.0]])  # both all-positive codes: K = [[3, 3], [3, 3]]
    arch = {"head": "id"}
    assert zero_cost(gm, arch, "naswot", (x, torch.zeros(2, dtype=torch.long))) == -math.inf


def test_flops_of_small_layers():
    gm = gmgraph.trace(nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),                      # 4x6x6 outputs x 27 MACs + 144 bias
        nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False),  # 6x6x6 outputs x 18 MACs
        nn.ConvTranspose2d(6, 2, 2, stride=2),             # 216 inputs x 2x2x2 MACs + 2x12x12 bias
        nn.Flatten(), nn.Linear(288, 5),                     # 288 x 5 MACs + 5 bias
        Choice({"id": nn.Identity()}, "a"),
    ))
    expected = (144 * 27 + 144) + 216 * 18 + (216 * 8 + 288) + (288 * 5 + 5)
    x = torch.randn(4, 3, 8, 8)
    assert zero_cost(gm, {"a": "id"}, "flops", (x, None)) == expected


# ------------------------------------------------------------- NAS-Bench-201 figures


def test_params_is_the_size_of_the_derived_network(tiny_nb201):
    for seed in range(3):
        arch = gmgraph.sample(tiny_nb201, torch.Generator().manual_seed(seed))
        for prune in (True, False):
            derived = derive(tiny_nb201, arch, prune=prune)
            expected = sum(p.numel() for p in derived.parameters())
            assert zero_cost(tiny_nb201, arch, "params", None, prune=prune) == expected
            assert expected == nb201.count_params(arch, C=4, N=1, prune=prune)


def test_params_and_flops_match_the_nb201_table(nb201_c16):
    x = torch.zeros(1, 3, 32, 32)
    for i, arch in enumerate(table.sample(20, seed=0)):
        flops = zero_cost(nb201_c16, arch, "flops", (x, None), prune=False)
        assert flops == pytest.approx(table.flops(arch) * 1e6, rel=1e-5), nb201.to_str(arch)
        if i < 4:
            params = zero_cost(nb201_c16, arch, "params", None, prune=False)
            assert params == pytest.approx(table.params(arch) * 1e6, rel=1e-5), nb201.to_str(arch)


def test_flops_closed_form_of_the_nb201_table(nb201_c16):
    """All-none = 7.78305 MFLOPs (stem, residual blocks, classifier with bias); a 3x3 conv
    edge adds 15 x 2.359296 M MACs, a 1x1 conv edge 15 x 0.262144 M; BN and pooling add 0."""
    x = torch.zeros(1, 3, 32, 32)
    base = {label: "none" for label in nb201.LABELS}
    assert zero_cost(nb201_c16, base, "flops", (x, None), prune=False) == 7_783_050
    for op, extra in [("nor_conv_3x3", 35_389_440), ("nor_conv_1x1", 3_932_160), ("avg_pool_3x3", 0)]:
        arch = {**base, "1<-0": op}  # a dead edge: counted with prune=False, as in the table
        assert zero_cost(nb201_c16, arch, "flops", (x, None), prune=False) == 7_783_050 + extra
        assert zero_cost(nb201_c16, arch, "flops", (x, None)) == 7_783_050


# ------------------------------------------------------------- errors


def test_unknown_metric_names_the_accepted_ones(tiny_nb201):
    with pytest.raises(ConfigError, match=r"unknown zero-cost metric 'jacov'; accepted: synflow, grad_norm, "
                                          r"snip, grasp, naswot, params, flops"):
        zero_cost(tiny_nb201, ARCH, "jacov", image_batch())


def test_malformed_batches_are_data_errors(tiny_nb201):
    x, y = image_batch()
    with pytest.raises(DataError, match=r"batch must be a pair \(x, y\)"):
        zero_cost(tiny_nb201, ARCH, "snip", x)
    with pytest.raises(DataError, match=r"at least 2 dimensions\), got shape \(8,\)"):
        zero_cost(tiny_nb201, ARCH, "synflow", (y, y))
    with pytest.raises(DataError, match="metric 'snip' needs integer labels y"):
        zero_cost(tiny_nb201, ARCH, "snip", (x, None))


# ------------------------------------------------------------- device


@pytest.mark.parametrize("metric", METRICS)
def test_an_explicit_cpu_device_is_the_default(tiny_nb201, metric):
    batch = image_batch()
    default = zero_cost(tiny_nb201, ARCH, metric, batch, seed=2)
    assert zero_cost(tiny_nb201, ARCH, metric, batch, seed=2, device="cpu") == default
    assert zero_cost(tiny_nb201, ARCH, metric, batch, seed=2, device=torch.device("cpu")) == default


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_config_error_that_names_the_cpu(tiny_nb201):
    with pytest.raises(ConfigError, match="--device cpu"):
        zero_cost(tiny_nb201, ARCH, "synflow", image_batch(), device="cuda")
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda, cuda:N"):
        zero_cost(tiny_nb201, ARCH, "synflow", image_batch(), device="gpu")
