"""Split scores and zero-cost proxies on a CUDA GPU: the CPU's numbers, the caller's RNG untouched.

CPU CI checks that ``device="cpu"`` is the default and that ``device="cuda"``
is a clear error without a GPU (``tests/scores``); these run the real CUDA
path. Skipped without CUDA (see ``conftest.py``).

Run: ``python -m pytest tests/gpu/test_scores_cuda.py -q``.
"""

import copy

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice, Neg
from gmgraph.cli import main
from gmgraph.device import no_host_sync
from gmgraph.errors import ConfigError
from gmgraph.rank_job import rank
from gmgraph.scores import gradient_matching
from gmgraph.scores.gradient_matching import DISTANCES, _distances
from gmgraph.scores.metric_split import metric_distances
from gmgraph.scores.zero_cost import METRICS, zero_cost
from gmgraph.spaces import nb201

pytestmark = pytest.mark.cuda

DEVICE = torch.device("cuda")
ARCH = nb201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
# Relative tolerance of each proxy, CUDA against CPU. params/flops count shapes: exact.
# synflow runs in float64. The gradient metrics are float32 sums over every weight
# (grasp a double backward whose signed terms cancel); naswot's ReLU codes can flip
# for a pre-activation within rounding of 0, moving log|det K| by ~1/N_A.
ZERO_COST_RTOL = {"params": 0.0, "flops": 0.0, "synflow": 1e-8, "grad_norm": 1e-4, "snip": 1e-4,
                  "grasp": 1e-3, "naswot": 1e-3}


@pytest.fixture(autouse=True)
def full_float32():
    """TF32 rounds matmul and convolution inputs to 10 mantissa bits: compare in true float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def supernet(in_channels: int = 1) -> torch.fx.GraphModule:
    """The tiny NB201 supernet (C=4, N=1), initialised from CPU seed 0, on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        return gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=in_channels))


def batches(n: int = 3, channels: int = 1, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, channels, 8, 8, generator=g), torch.randint(10, (8,), generator=g)) for _ in range(n)]


def rng_states() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(DEVICE)


def assert_rng_unchanged(before: tuple[torch.Tensor, torch.Tensor]) -> None:
    cpu, cuda = rng_states()
    assert torch.equal(cpu, before[0]), "the caller's CPU RNG stream moved"
    assert torch.equal(cuda, before[1]), "the caller's CUDA RNG stream moved"


# ------------------------------------------------------------- gradient matching


# GDAS only with "cos": its hard one-hot runs every op on a GPU (weight 0, gradient 0), so the
# other decisions' unchosen ops join the compared parameters there. Appended zeros leave a
# cosine alone but not a mean (mse) or a mean over filters (per-filter-cos).
CASES = [(d, s) for d in DISTANCES for s in ("uniform", "darts")] + [("cos", "gdas")]


@pytest.mark.parametrize(("distance", "sampler"), CASES)
def test_gradient_matching_on_cuda_agrees_with_the_cpu(distance, sampler):
    cpu = supernet()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    expected = gradient_matching(cpu, "2<-1", batches(), rounds=3, distance=distance, sampler=sampler)
    # CPU batches follow the graph; the other decisions are drawn from the same CPU generator.
    got = gradient_matching(gpu, "2<-1", batches(), rounds=3, distance=distance, sampler=sampler)
    assert got.device.type == "cpu" and got.dtype == torch.float32 and got.shape == (5, 5)
    # 1 - cos near 0 loses digits to cancellation: an absolute floor besides the 1e-4 relative.
    atol = 1e-6 * float(expected.abs().max()) if distance == "mse" else 1e-5
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=atol)
    again = gradient_matching(gpu, "2<-1", batches(), rounds=3, distance=distance, sampler=sampler, device="cuda:0")
    torch.testing.assert_close(again, got, rtol=1e-5, atol=atol / 10)  # cuDNN's weight gradients may use atomics


def test_gradient_matching_on_cuda_leaves_the_graph_and_both_rng_streams_alone():
    gm = supernet().to(DEVICE)
    gm.train()
    state = {k: v.clone() for k, v in gm.state_dict().items()}
    torch.cuda.manual_seed(123)  # a caller's stream, mid-way
    torch.rand(3, device=DEVICE)
    before = rng_states()
    gradient_matching(gm, "1<-0", batches(), rounds=2)
    assert_rng_unchanged(before)
    assert all(torch.equal(state[k], v) for k, v in gm.state_dict().items())  # weights and BN statistics
    assert all(p.grad is None for p in gm.parameters())


class DropToy(nn.Module):
    """Dropout draws from the CUDA stream of the device it runs on."""

    def __init__(self):
        super().__init__()
        self.a = Choice({"id": nn.Identity(), "neg": Neg()}, "a")
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.drop(self.a(x)))


def test_dropout_inside_gradient_matching_does_not_move_the_callers_cuda_stream():
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)
        gm = gmgraph.trace(DropToy()).to(DEVICE).train()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(6, 16, generator=g), torch.randint(3, (6,), generator=g)) for _ in range(2)]
    before = rng_states()
    d = gradient_matching(gm, "a", data, rounds=2, shared=["head.weight"])
    assert torch.isfinite(d).all()
    assert_rng_unchanged(before)


def test_a_device_other_than_the_graphs_is_refused():
    with pytest.raises(ConfigError, match=r"gm\.to\('cpu'\)"):
        gradient_matching(supernet().to(DEVICE), "1<-0", batches(), rounds=1, device="cpu")
    with pytest.raises(ConfigError, match=r"gm\.to\('cuda:0'\)"):
        gradient_matching(supernet(), "1<-0", batches(), rounds=1, device="cuda")


@pytest.mark.parametrize("distance", DISTANCES)
def test_the_distances_of_a_round_never_read_the_gpu_back(distance):
    g = torch.Generator(device=DEVICE).manual_seed(0)
    per_child = [[torch.randn(4, 3, 3, 3, device=DEVICE, generator=g), torch.randn(4, device=DEVICE, generator=g)]
                 for _ in range(3)]
    torch.cuda.synchronize()
    with no_host_sync(DEVICE):
        out = _distances(per_child, distance)
    assert out.device.type == "cuda" and out.dtype == torch.float64
    cpu = _distances([[t.cpu() for t in child] for child in per_child], distance)
    torch.testing.assert_close(out.cpu(), cpu, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------- zero-cost proxies


@pytest.mark.parametrize("metric", METRICS)
def test_zero_cost_on_cuda_agrees_with_the_cpu(metric):
    cpu = supernet(in_channels=3)
    batch = batches(1, channels=3)[0]
    expected = zero_cost(cpu, ARCH, metric, batch, seed=1)
    moved = zero_cost(cpu, ARCH, metric, batch, seed=1, device="cuda")  # a CPU supernet scored on the GPU
    resident = zero_cost(copy.deepcopy(cpu).to(DEVICE), ARCH, metric, batch, seed=1)  # default: the graph's device
    for got in (moved, resident):
        assert isinstance(got, float)
        assert got == pytest.approx(expected, rel=ZERO_COST_RTOL[metric], abs=0.0)


def test_zero_cost_on_cuda_leaves_the_callers_rng_streams_alone():
    gm = supernet(in_channels=3).to(DEVICE)
    torch.cuda.manual_seed(7)
    torch.rand(3, device=DEVICE)
    before = rng_states()
    for metric in METRICS:
        zero_cost(gm, ARCH, metric, batches(1, channels=3)[0], seed=5)  # seeds the scoring streams inside
    assert_rng_unchanged(before)


def test_metric_distances_on_cuda_agree_with_the_cpu():
    cpu = supernet(in_channels=3)
    data = batches(2, channels=3)
    expected = metric_distances(cpu, "1<-0", "synflow", data, n_children=2)
    got = metric_distances(cpu, "1<-0", "synflow", data, n_children=2, device="cuda")
    torch.testing.assert_close(got, expected, rtol=1e-8, atol=0.0)


# ------------------------------------------------------------- gmgraph rank


def test_rank_on_cuda_agrees_with_the_cpu_and_says_where_it_ran(tmp_path, capsys):
    on_cpu = rank("synflow", n=4, width=4, cells=1, progress=False, device="cpu")
    on_gpu = rank("synflow", n=4, width=4, cells=1, progress=False, device="cuda")
    assert on_gpu.device == f"cuda:{torch.cuda.current_device()}"
    assert [r["arch_str"] for r in on_gpu.rows] == [r["arch_str"] for r in on_cpu.rows]
    for a, b in zip(on_gpu.rows, on_cpu.rows):
        assert a["score"] == pytest.approx(b["score"], rel=1e-8)
    argv = ["rank", "--metric", "params", "--sample", "3", "--quiet", "--csv", str(tmp_path / "r.csv")]
    assert main([*argv, "--device", "auto"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"device: cuda:{torch.cuda.current_device()} (")
