"""measure: timings, their spread and stability, the runtimes, and bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gmgraph.errors import ConfigError
from gmgraph.latency import LatencyError, measure, measure_model
from gmgraph.latency.measure import time_runs
from gmgraph.latency.runtimes import Runner
from gmgraph.onnx_export import export_onnx
from tests.latency.fake_runtime import OVERHEAD, leaf_cost


def test_a_fake_runtime_is_timed_exactly_and_the_conditions_are_recorded(fake):
    t = measure(nn.Linear(4, 3), (4,), runtime="fake", batch=2, warmup=3, runs=7)
    assert t.median_ms == pytest.approx((OVERHEAD + leaf_cost(nn.Linear(4, 3))) * 1e3, rel=1e-9)
    assert (t.runtime, t.version, t.threads, t.batch, t.warmup, t.runs, t.attempts, t.clock) == (
        "fake", "fake 1.0", 1, 2, 3, 7, 1, "cpu")
    assert t.spread == pytest.approx(0.0, abs=1e-6) and t.stable
    assert fake.calls == 3 + 7


def test_spread_is_the_interquartile_range_over_the_median(fake):
    fake.noise = [0.0, 1e-3, 2e-3, 3e-3, 4e-3]  # samples: c, c+1, c+2, c+3, c+4 ms
    t = measure_model(nn.ReLU(), (torch.ones(1, 2),), runtime="fake", warmup=0, runs=5, max_spread=100.0)
    c = (OVERHEAD + leaf_cost(nn.ReLU())) * 1e3
    assert t.median_ms == pytest.approx(c + 2)
    assert t.spread == pytest.approx(2 / (c + 2))  # q75 - q25 = (c+3) - (c+1)


def test_an_unstable_timing_is_repeated_then_reported(fake):
    fake.noise = [0.0, 5e-3]  # every other call 5 ms slower: spread ~1
    t = measure_model(nn.ReLU(), (torch.ones(1, 2),), runtime="fake", warmup=0, runs=4, attempts=3, max_spread=0.1)
    assert not t.stable and t.attempts == 3 and t.spread > 0.1
    assert fake.calls == 3 * 4
    with pytest.raises(LatencyError, match=r"unstable after 3 attempts: spread .* > max_spread 0.1"):
        measure_model(nn.ReLU(), (torch.ones(1, 2),), runtime="fake", warmup=0, runs=4, require_stable=True)


def test_a_second_attempt_that_is_stable_is_the_one_reported(fake):
    fake.noise = [0.0, 5e-3, 0.0, 5e-3] + [0.0] * 4  # attempt 1 swings, attempt 2 is quiet
    t = measure_model(nn.ReLU(), (torch.ones(1, 2),), runtime="fake", warmup=0, runs=4, attempts=3)
    assert t.stable and t.attempts == 2 and t.spread == pytest.approx(0.0, abs=1e-6)


def test_onnxruntime_times_a_module_and_an_onnx_file(tmp_path):
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    t = measure(net, (8,), batch=3, runs=5, max_spread=10.0)
    assert t.runtime == "onnxruntime" and t.version.startswith("onnxruntime ") and t.batch == 3 and t.median_ms > 0
    path = export_onnx(net, torch.randn(1, 8), tmp_path / "net.onnx")
    from_file = measure(path, runs=5, max_spread=10.0, batch=2)  # the input shape is read from the file
    assert from_file.batch == 2 and from_file.median_ms > 0


def test_torch_cpu_sets_its_threads_only_while_timing():
    before = torch.get_num_threads()
    t = measure(nn.Linear(4, 4), (4,), runtime="torch-cpu", threads=2, runs=3, max_spread=10.0)
    assert t.version.startswith("torch ") and t.clock == "wall" and t.threads == 2
    assert torch.get_num_threads() == before


def test_time_runs_reads_the_clock_around_each_call():
    ticks = iter(range(100))
    samples = time_runs(Runner(call=lambda: None, version="x"), warmup=2, runs=3, clock=lambda: next(ticks))
    assert samples == [1000.0, 1000.0, 1000.0]  # one tick (second) per call, in ms


@pytest.mark.parametrize("kwargs, message", [
    ({"runs": -1}, "runs must be a positive integer, got -1"),
    ({"runs": 0}, "runs must be a positive integer, got 0"),
    ({"warmup": -2}, "warmup must be an integer of 0 or more, got -2"),
    ({"threads": -1}, "threads must be a positive integer, got -1"),
    ({"threads": 1.5}, "threads must be a positive integer, got 1.5"),
    ({"batch": 0}, "batch must be a positive integer, got 0"),
    ({"attempts": 0}, "attempts must be a positive integer, got 0"),
    ({"max_spread": 0}, "max_spread must be a positive number"),
    ({"runtime": "tflite"}, "unknown runtime 'tflite'; choose one of onnxruntime, torch-cpu, torch-cuda"),
    ({"clock": "sundial"}, "unknown clock 'sundial'; choose one of auto, wall, cpu"),
    ({"clock": "cpu", "threads": 2}, "clock='cpu' times the calling thread only"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        measure(nn.ReLU(), (4,), **kwargs)


@pytest.mark.parametrize("shape", [(), (0, 3), (-1,), "1x8x8", None, (2.0,)])
def test_bad_input_shapes_are_refused(shape):
    with pytest.raises(ConfigError, match="input_shape must be the shape of one input without the batch"):
        measure(nn.ReLU(), shape)


def test_an_onnx_file_runs_only_in_onnxruntime(tmp_path):
    with pytest.raises(ConfigError, match="an .onnx file runs in runtime='onnxruntime', not 'torch-cpu'"):
        measure(tmp_path / "net.onnx", (4,), runtime="torch-cpu")
    with pytest.raises(ConfigError, match="no ONNX model at"):
        measure(tmp_path / "missing.onnx")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_cuda_synchronises_and_records_the_gpu():
    t = measure(nn.Linear(64, 64), (64,), runtime="torch-cuda", batch=8, runs=5, max_spread=10.0)
    assert t.clock == "wall" and "cuda" in t.version and t.median_ms > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA device")
def test_torch_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="runtime 'torch-cuda' needs a CUDA device"):
        measure(nn.ReLU(), (4,), runtime="torch-cuda")
