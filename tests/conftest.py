"""Shared fixtures: small seeded NB201 graphs."""

from __future__ import annotations

import contextlib
import gc
import sys
from typing import TYPE_CHECKING

import pytest

import gmgraph  # light: its submodules (and torch) load on first use

if TYPE_CHECKING:
    import torch


def pytest_configure(config) -> None:
    """Every process that runs tests: torch on one thread, and torch's ONNX registry built once.

    Not the controller of ``pytest -n``: it runs no test, and importing torch there (about 2 s) held back
    the start of the workers.
    """
    if config.getoption("numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import torch

    # The suite runs tiny networks: one thread avoids OpenMP start-up and contention costs
    # that dominate at these sizes on a 2-core machine.
    torch.set_num_threads(1)
    _reuse_the_onnx_registry()


def _reuse_the_onnx_registry() -> None:
    """torch's ONNX exporter rebuilds its table of ATen-to-ONNX functions (about 0.4 s) on every export;
    the suite exports a few dozen networks, so each worker builds it once per opset and hands out that one.

    Safe because only ``custom_translation_table`` (which gmgraph never passes) adds to a registry after it
    is built. If torch moves the function, the suite just runs at the old speed.
    """
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    build = getattr(_registration.ONNXRegistry, "from_torchlib", None)
    if build is None:
        return
    built: dict = {}

    def from_torchlib(cls, *args, **kwargs):
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = build.__func__(cls, *args, **kwargs)
        return built[key]

    _registration.ONNXRegistry.from_torchlib = classmethod(from_torchlib)


def pytest_collection_finish(session) -> None:
    """Keep the cycle collector's full passes rare and off what collection built.

    A worker holds about 570,000 objects after collecting (torch, the test modules, the items), and the tests
    leave cyclic garbage behind (fx graphs, modules): with CPython's defaults the collector took 22 s of each
    worker's 4 minutes, mostly in about 55 full passes that walked everything. Frozen objects are never
    walked again, and a full pass now waits for 100 younger passes instead of 10: the collector took about
    10 s per worker, and half the suite in one process ran in 151 s instead of 164 s (two runs each, A/B
    alternated; a worker's peak memory stayed under 3.5 GB). A young pass every 10,000 allocations instead
    of 700 took that half from 134/141 s to 130/132 s. Garbage is still collected, only later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 100)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config) -> None:
    """A ``pytest -n`` worker leaves without tearing its interpreter down, once everything of pytest's is done.

    By then the worker has reported every result (xdist's ``workerfinished``) and pytest's own unconfigure
    hooks have run (the unraisable-exception check's last collection included). What is left is Python
    freeing each of the worker's objects one by one, which the controller waited for: about 2 s at the end
    of ``make test``. ``atexit`` handlers still run (temporary folders, loggers), streams are flushed.
    """
    if not hasattr(config, "workerinput"):
        return
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def pytest_collection_modifyitems(items) -> None:
    """The files holding an end-to-end test (``@pytest.mark.e2e``, the suite's slowest) run first.

    ``make test`` hands each worker whole files in collection order (``--no-loadscope-reorder``; xdist's own
    order, most tests first, left the one 9 s test of ``test_cli_ofa.py`` for last: one worker ran it alone
    while the other had finished). Slow files first leave short ones to even out the end. Within a file the
    order stays as written.
    """
    slow = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: item.path not in slow)


def live_as_forked_child(stdout_path, stderr_path, env: dict[str, str], body) -> None:
    """The whole life of a process forked from a test: fds 1 and 2 (so torch's and gloo's own messages too) and
    ``sys.stdout``/``sys.stderr`` write to the two files (one file when the paths are equal), ``env`` is set,
    ``body()`` runs, and the process exits with its return value (1, the traceback printed, if it raises),
    without tearing down what it inherited from pytest.

    Forked, not started afresh: the child has torch and the test's imports already (a fresh interpreter spent
    about 2 s of CPU on them)::

        fork.Process(target=live_as_forked_child, args=(log, log, {"RANK": "0"}, lambda: main(args))).start()
    """
    import os
    import traceback

    first = open(stdout_path, "w", buffering=1)  # open until the process ends
    second = first if os.path.abspath(stderr_path) == os.path.abspath(stdout_path) else open(stderr_path, "w",
                                                                                              buffering=1)
    os.dup2(first.fileno(), 1)
    os.dup2(second.fileno(), 2)
    sys.stdout, sys.stderr = first, second
    os.environ.update(env)
    code = 1
    try:
        code = body()
    except BaseException:
        traceback.print_exc()
    first.flush()
    second.flush()
    os._exit(code)


@contextlib.contextmanager
def users_module(folder, monkeypatch, name: str, text: str):
    """A user's Python module ``name`` (source ``text``) in ``folder``, which becomes the current folder and the
    first place imports look, as a user's project is; the module is forgotten afterwards. Yields ``folder``."""
    (folder / f"{name}.py").write_text(text)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield folder
    finally:
        sys.modules.pop(name, None)


def randomize_batchnorm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every BN non-trivial running statistics (and affine params) so that eval-mode
    comparisons are not comparisons of identities."""
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)


def eval_graph(build) -> torch.fx.GraphModule:
    """Trace ``build()`` under seed 0, give its BNs random statistics (seed 1), eval mode."""
    import torch

    torch.manual_seed(0)
    gm = gmgraph.trace(build())
    randomize_batchnorm(gm, torch.Generator().manual_seed(1))
    return gm.eval()


@pytest.fixture
def tiny_nb201() -> torch.fx.GraphModule:
    """NB201 supernet with C=4, N=1 (fast), seeded, eval mode."""
    from gmgraph.spaces import nb201

    return eval_graph(lambda: nb201.supernet(C=4, N=1))


def assert_derived_matches(gm: torch.fx.GraphModule, arch, x: torch.Tensor, *, atol: float = 1e-6):
    """``derive(gm, arch)`` holds no Choice and computes what the supernet computes on the path
    ``arch`` (``with gmgraph.use(gm, arch): gm(x)``) to within ``atol`` (rtol 0); returns it.

    ``atol`` is the float32 slack of re-associated sums (folded identities, removed zero edges).
    """
    import torch

    from gmgraph.passes import derive

    plain = derive(gm, arch)
    assert not any(isinstance(m, gmgraph.Choice) for m in plain.modules()), "a Choice survived derive"
    with torch.no_grad():
        with gmgraph.use(gm, arch):
            expected = gm(x)
        got = plain(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    return plain


def assert_onnx_parity(net: torch.nn.Module, x: torch.Tensor, path) -> None:
    """Export with gmgraph's exporter, then compare onnxruntime with torch on ``x`` (1e-4)."""
    import onnxruntime as ort
    import torch

    from gmgraph.onnx_export import export_onnx

    net = net.eval()
    export_onnx(net, x, path, dynamic_batch=False)  # a fixed batch exports twice as fast
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = net(x)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


def tiny_search(out, data: str, **overrides) -> None:
    """A short but real ``gmgraph search`` into ``out`` (NB201 C=4 N=1, 2 epochs, GM splits at 1, uniform sampler).

    ``overrides`` replace flags (``final_epochs=1`` is ``--final-epochs 1``). No report.html unless
    ``html="true"``: its drawings take half a second and the tests read report.json.
    """
    from gmgraph.cli import main

    flags = {"data": data, "method": "gm", "sampler": "uniform", "width": 4, "cells": 1, "epochs": 2, "split_at": 1,
             "rounds": 1, "evaluations": 3,
             "final_epochs": 0, "steps_per_epoch": 2, "bn_batches": 1, "html": "false", **overrides}
    if flags["method"] == "oneshot":  # one supernet: --split-at would be refused
        flags.pop("split_at")
    argv = [part for name, value in flags.items() for part in (f"--{name.replace('_', '-')}", str(value))]
    assert main(["search", *argv, "--quiet", "--out", str(out)]) == 0


# One finished tiny search per test session, shared by the xdist workers (the first to ask runs it under a file
# lock, the others read its folder), for the tests that only read a run's outputs: each of them used to run its own
# (about 10 s each).
FINISHED_SEARCH_ARGV = ["search", "--data", "synthetic", "--method", "gm", "--sampler", "uniform", "--width", "4",
                        "--cells", "1", "--epochs", "3",
                        "--split-at", "1,2", "--rounds", "1", "--evaluations", "4", "--final-epochs", "1",
                        "--steps-per-epoch", "2", "--bn-batches", "1", "--batch-size", "16"]


class FinishedSearch:
    """A finished ``gmgraph search`` (``argv``, without ``--out``): its folder and what it printed."""

    def __init__(self, out, argv: list[str], stdout: str, stderr: str):
        self.out, self.argv, self.stdout, self.stderr = out, argv, stdout, stderr

    def copy(self, to):
        """A copy of the run's folder at ``to``, for a test that writes into it (the shared one stays as run)."""
        import shutil

        shutil.copytree(self.out, to)
        return to


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, request) -> FinishedSearch:
    """NB201 C=4 N=1 on synthetic 3x32x32 data: 3 epochs split at 1 and 2 (4 leaves, 7 supernet-epochs),
    4 evaluations, 1 final epoch; printed as a user sees it (not --quiet). Read it; copy it to write."""
    import contextlib
    import io
    import json

    from filelock import FileLock

    from gmgraph.cli import main

    # Under xdist the base temp's parent is this session's and every worker's; alone, the base temp is the session's.
    worker = hasattr(request.config, "workerinput")  # an xdist worker (also works with -p no:xdist)
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    folder = shared / "finished-search"
    with FileLock(str(shared / "finished-search.lock")):
        printed = folder / "printed.json"
        if not printed.exists():
            stdout, stderr = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main([*FINISHED_SEARCH_ARGV, "--out", str(folder / "run")])
            assert code == 0, stderr.getvalue()[-2000:]
            printed.write_text(json.dumps({"stdout": stdout.getvalue(), "stderr": stderr.getvalue()}))
        texts = json.loads(printed.read_text())
    return FinishedSearch(folder / "run", list(FINISHED_SEARCH_ARGV), texts["stdout"], texts["stderr"])
