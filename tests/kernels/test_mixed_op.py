"""The Triton kernels against the torch reference, under Triton's interpreter (in a subprocess).

The interpreter has to be chosen before triton defines the kernels, so the
comparisons run in ``interpret_mixed_op.py`` in a child process started once
for this module; each case is asserted here. ``compile_mixed_op.py`` (run in
this process, where the kernels are defined without the interpreter) checks
that the same kernels compile for a real GPU.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernels.interpret_mixed_op import CASES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")

# float32: rounding only. Half precision: the interpreter narrows float32 to bfloat16/float16
# by truncation where torch (and the GPU) round to nearest, so results may differ by an ulp or two.
TOLERANCE = {"f32": 1e-5, "bf16": 2e-2, "f16": 2e-3}


def run_script(name: str, **env) -> dict:
    """Run ``name`` in a child process on one torch thread (its tensors are tiny: a second thread only spins, about
    3 s of CPU in the interpreter's run) and return the JSON object it prints last."""
    environ = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GMGRAPH_KERNELS")}
    environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, str(HERE / name)], env={**environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreted():
    return run_script("interpret_mixed_op.py", TRITON_INTERPRET="1", GMGRAPH_KERNELS="triton")


def test_kernels_ran_in_the_interpreter(interpreted):
    assert interpreted["interpreted"] is True
    assert interpreted["public_is_function"] is True


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_match_the_reference(interpreted, case):
    error = interpreted["cases"][case]
    assert error <= TOLERANCE[case.split("_")[0]], f"{case}: relative error {error}"


def test_output_and_gradients_are_stored_in_the_order_the_kernels_read(interpreted):
    # channels_last x: out, dx and dy channels_last (y was NCHW); a sliced x: all contiguous NCHW.
    assert interpreted["result_layouts"] == {"channels_last": [True] * 3, "sliced": [True] * 3}


def test_fused_nb201_supernet_matches_unfused_under_triton(interpreted):
    assert interpreted["nb201_fused"] <= 1e-5


def compiled_here(capsys) -> dict:
    """What ``compile_mixed_op.py`` prints, run in this process (a child costs about 1.5 s of imports): the
    kernels are imported here without the interpreter, as test_launch.py imports them; a child process
    when this one runs under ``TRITON_INTERPRET`` (the compiler needs the kernels defined without it)."""
    from tests.kernels import compile_mixed_op

    if importlib.import_module("gmgraph.kernels.triton_mixed_op").interpreted():
        return run_script("compile_mixed_op.py")
    capsys.readouterr()
    compile_mixed_op.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_kernels_compile_for_a_cuda_gpu(capsys):
    result = compiled_here(capsys)
    if "skip" in result:
        pytest.skip(result["skip"])
    builds = [("forward", 3), ("forward", 2), ("backward", 2), ("backward", 1), ("backward", 1)]
    assert [(b["arch"], b["kernel"], b["K"]) for b in result["compiled"]] == [
        (arch, *build) for arch in (80, 90) for build in builds]
    assert all(b["cubin_bytes"] > 0 for b in result["compiled"])
