"""``gmgraph predict --device``: which onnxruntime execution provider runs the model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from gmgraph.cli import main
from gmgraph.errors import ConfigError
from gmgraph.inference import choose_providers, load_model

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
CPU_ONLY = ["AzureExecutionProvider", CPU]  # what the plain onnxruntime wheel lists
WITH_CUDA = ["TensorrtExecutionProvider", CUDA, CPU]  # what onnxruntime-gpu lists
HAS_CUDA = CUDA in ort.get_available_providers()


@pytest.fixture(scope="module")
def linear_model(tmp_path_factory):
    """A hand-built ONNX classifier of 1x8x8 digits into 10 classes: Flatten then Gemm."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("predict") / "linear.onnx"
    onnx.save(model, path)
    return path


# ------------------------------------------------------------- the pure choice


def test_cpu_is_the_cpu_provider_whatever_is_installed():
    assert choose_providers("cpu", CPU_ONLY) == [CPU]
    assert choose_providers("cpu", WITH_CUDA) == [CPU]


def test_auto_takes_cuda_only_when_onnxruntime_offers_it():
    assert choose_providers("auto", CPU_ONLY) == [CPU]
    assert choose_providers("auto", WITH_CUDA) == [CUDA, CPU]


def test_cuda_runs_cuda_first_then_the_cpu_for_the_rest():
    assert choose_providers("cuda", WITH_CUDA) == [CUDA, CPU]


def test_cuda_without_the_provider_names_onnxruntime_gpu():
    with pytest.raises(ConfigError, match=r"--device cuda: .*no CUDAExecutionProvider.*onnxruntime-gpu.*--device cpu"):
        choose_providers("cuda", CPU_ONLY, option="--device")  # the CLI's spelling; the library says "device"


@pytest.mark.parametrize("device", ["tpu", "gpu", "CUDA", "cuda:0", ""])
def test_unknown_devices_list_the_accepted_ones(device):
    with pytest.raises(ConfigError, match=r"is not accepted; choose one of cpu, cuda, auto"):
        choose_providers(device, WITH_CUDA)


# ------------------------------------------------------------- the command


def test_load_model_says_which_provider_runs_it(linear_model):
    assert load_model(linear_model).provider == CPU  # the library default is the CPU
    assert load_model(linear_model, "auto").provider == (CUDA if HAS_CUDA else CPU)


@pytest.mark.parametrize("device", ["cpu", "auto", None])
def test_predict_prints_the_provider_on_its_first_line(linear_model, capsys, device):
    argv = ["predict", str(linear_model), "--data", "digits", "--show", "2"]
    assert main(argv + (["--device", device] if device else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = CUDA if device == "auto" and HAS_CUDA else CPU  # default: cpu
    assert lines[0].startswith(f"model {linear_model}: input ('batch', 1, 8, 8)")
    assert lines[0].endswith(f"; provider: {expected}")
    assert lines[1] == "preprocessing: gmgraph.data.load('digits'), as in training"
    assert lines[2].split() == ["item", "label", "predicted", "confidence"]
    assert lines[-1].startswith("accuracy: ")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error of a CPU-only onnxruntime")
def test_predict_cuda_without_onnxruntime_gpu_is_one_line_and_exit_2(linear_model, capsys):
    assert main(["predict", str(linear_model), "--data", "digits", "--device", "cuda"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmgraph: error: --device cuda: ")
    assert "onnxruntime-gpu" in lines[0] and captured.out == ""


def test_predict_unknown_device_is_one_line_and_exit_2(linear_model, capsys):
    assert main(["predict", str(linear_model), "--device", "tpu"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["gmgraph: error: --device 'tpu' is not accepted; choose one of cpu, cuda, auto"]
