import doctest
import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import gmgraph.kernels as kernels
from gmgraph.errors import ConfigError
from gmgraph.kernels import reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "mode"), [(None, "auto"), ("", "auto"), ("auto", "auto"),
                                             (" Torch ", "torch"), ("TRITON", "triton")])
def test_env_var_is_parsed(monkeypatch, value, mode):
    if value is None:
        monkeypatch.delenv(kernels.ENV, raising=False)
    else:
        monkeypatch.setenv(kernels.ENV, value)
    assert kernels.requested() == mode


def test_invalid_env_var_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "cuda")
    with pytest.raises(ConfigError, match="GMGRAPH_KERNELS='cuda' is not accepted; use one of auto, triton, torch"):
        kernels.mixed_op(torch.ones(1, 1, 2, 2), [], torch.zeros(0), None, None)


def test_auto_runs_torch_on_cpu_and_triton_on_cuda(monkeypatch):
    monkeypatch.delenv(kernels.ENV, raising=False)
    assert kernels.backend(torch.ones(1)) == "torch"
    cuda_tensor = SimpleNamespace(is_cuda=True)  # no GPU here: only the dispatch rule is checked
    assert kernels.backend(cuda_tensor) == ("triton" if kernels.triton_available() else "torch")
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    assert kernels.backend(cuda_tensor) == "torch"


def test_forcing_overrides_the_device(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "triton")
    assert kernels.backend(torch.ones(1)) == "triton"
    monkeypatch.setenv(kernels.ENV, "torch")
    assert kernels.backend(SimpleNamespace(is_cuda=True)) == "torch"


def test_torch_backend_is_the_reference(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "torch")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 2, 5, 3, generator=g), torch.randn(2, 2, 5, 3, generator=g)
    args = (x, [y], torch.tensor([0.3]), torch.tensor(0.5), torch.tensor(0.2))
    assert torch.equal(kernels.mixed_op(*args), reference.mixed_op(*args))


def test_forced_triton_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "triton")
    monkeypatch.setitem(sys.modules, "gmgraph.kernels.triton_mixed_op", None)  # makes the import fail
    with pytest.raises(ConfigError, match="triton cannot be imported"):
        kernels.mixed_op(torch.ones(1, 1, 2, 2), [], torch.zeros(0), torch.ones(()), None)


@pytest.mark.skipif(not kernels.triton_available(), reason="triton is not installed")
def test_forced_triton_on_cpu_needs_the_interpreter():
    # A child process: the kernels must be defined without TRITON_INTERPRET.
    code = (
        "import torch, gmgraph.kernels as k\n"
        "try:\n"
        "    k.mixed_op(torch.ones(1, 1, 2, 2), [], torch.zeros(0), torch.ones(()), None)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"GMGRAPH_KERNELS": "triton"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ConfigError")
    assert "TRITON_INTERPRET=1" in done.stdout


def test_doctests():
    assert doctest.testmod(importlib.import_module("gmgraph.kernels")).failed == 0
