"""``measure``: the end-to-end latency of a network on a runtime, with how far to trust it.

A timing is the median of ``runs`` calls after ``warmup`` untimed ones; its
spread is the interquartile range over the median. One thread on the CPU is
timed by the calling thread's CPU time (``clock="auto"``): onnxruntime and torch
run a single-threaded model inline on that thread, so on an idle machine it
equals the wall time, and on a shared one it leaves out the time the thread
waited for a core (wall time there swings by 2x from call to call). More
threads, and CUDA, are timed by the wall clock. A spread above
``max_spread`` repeats the timing (up to ``attempts`` times); a timing that
stays unstable comes back marked ``stable=False`` (or raises with
``require_stable=True``), so no caller uses it unknowingly::

    >>> import torch
    >>> t = measure(torch.nn.Linear(8, 8), (8,), batch=4, warmup=2, runs=5, max_spread=10.0)
    >>> (t.runtime, t.threads, t.batch, t.runs, t.clock, t.stable)
    ('onnxruntime', 1, 4, 5, 'cpu', True)
    >>> t.median_ms > 0
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gmgraph.config import check_positive_int
from gmgraph.errors import ConfigError, LatencyError
from gmgraph.latency.runtimes import RUNTIMES, Runner, check_runtime


@dataclass(frozen=True)
class Timing:
    """One latency measurement and the conditions it was taken in.

    Attributes:
        median_ms: median milliseconds per call of the timed runs.
        spread: (75th - 25th percentile) / median of the timed runs.
        stable: ``spread <= max_spread``; an unstable timing must not be used unknowingly.
        attempts: how many timings were taken (each of ``warmup`` + ``runs`` calls); the one reported
            is the first stable one, else the one with the smallest spread.
        clock: ``cpu`` (the calling thread's CPU time) or ``wall``.
    """

    median_ms: float
    spread: float
    stable: bool
    runtime: str
    version: str
    threads: int
    batch: int
    warmup: int
    runs: int
    attempts: int
    max_spread: float
    clock: str


def measure(
    net_or_path: nn.Module | str | Path,
    input_shape: Sequence[int] | None = None,
    *,
    runtime: str = "onnxruntime",
    threads: int = 1,
    batch: int = 1,
    warmup: int = 5,
    runs: int = 20,
    max_spread: float = 0.1,
    attempts: int = 3,
    require_stable: bool = False,
    clock: str = "auto",
    seed: int = 0,
) -> Timing:
    """Time ``net_or_path`` end to end on one random batch of shape ``(batch, *input_shape)``.

    Args:
        net_or_path: a network (e.g. ``derive(gm, arch)``) or the path of an ``.onnx`` file.
        input_shape: one input without the batch dimension, e.g. ``(1, 8, 8)``; for an ``.onnx``
            file it may be left out when the file's input shape is static past the batch.
        runtime: a name of :data:`~gmgraph.latency.runtimes.RUNTIMES`.
        threads: intra-op threads of onnxruntime, or torch's thread count while timing.
        batch: the batch size of the timed input.
        warmup, runs: untimed and timed calls of one attempt.
        max_spread: the largest interquartile range / median accepted as stable.
        attempts: timings taken at most while the spread stays above ``max_spread``.
        require_stable: raise instead of returning an unstable timing.
        clock: ``cpu``, ``wall``, or ``auto``: ``cpu`` for one thread on the CPU, else ``wall``.
        seed: seeds the random input.

    Raises:
        ConfigError: a bad argument (named, with what is accepted).
        LatencyError: with ``require_stable``, when every attempt was unstable.
        ExportError: the network cannot be exported to (or run in) onnxruntime.

    >>> measure(torch.nn.ReLU(), (3,), threads=0)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: threads must be a positive integer, got 0
    """
    check_runtime(runtime)
    for name, value in (("threads", threads), ("batch", batch)):
        check_positive_int(name, value)
    if isinstance(net_or_path, (str, Path)):
        if runtime != "onnxruntime":
            raise ConfigError(f"an .onnx file runs in runtime='onnxruntime', not {runtime!r}; "
                              "give torch runtimes the nn.Module")
        input_shape = _onnx_input_shape(Path(net_or_path), input_shape)
    elif not isinstance(net_or_path, nn.Module):
        raise ConfigError(f"measure takes an nn.Module or an .onnx path, got {type(net_or_path).__name__}")
    shape = check_shape(input_shape)
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed))
    return measure_model(net_or_path, (x,), runtime=runtime, threads=threads, warmup=warmup, runs=runs,
                         max_spread=max_spread, attempts=attempts, require_stable=require_stable, clock=clock)


def measure_model(
    model: nn.Module | str | Path,
    inputs: Sequence[torch.Tensor],
    *,
    runtime: str = "onnxruntime",
    threads: int = 1,
    warmup: int = 5,
    runs: int = 20,
    max_spread: float = 0.1,
    attempts: int = 3,
    require_stable: bool = False,
    clock: str = "auto",
) -> Timing:
    """:func:`measure` on given example inputs (several for a model with several inputs).

    >>> class Add(torch.nn.Module):
    ...     def forward(self, a, b):
    ...         return a + b
    >>> measure_model(Add(), (torch.ones(2, 3), torch.ones(2, 3)), runtime="torch-cpu", runs=3).batch
    2
    """
    check_timing(warmup=warmup, runs=runs, max_spread=max_spread, attempts=attempts, threads=threads)
    clock = resolve_clock(clock, check_runtime(runtime), threads)
    runner = RUNTIMES[runtime](model, inputs, threads=threads)
    return measure_runner(runner, batch=int(inputs[0].shape[0]), runtime=runtime, threads=threads, warmup=warmup,
                          runs=runs, max_spread=max_spread, attempts=attempts, require_stable=require_stable,
                          clock=clock)


def measure_runner(
    runner: Runner,
    *,
    batch: int,
    runtime: str,
    threads: int,
    warmup: int,
    runs: int,
    max_spread: float,
    attempts: int,
    clock: str,
    require_stable: bool = False,
) -> Timing:
    """Time a ready :class:`~gmgraph.latency.runtimes.Runner` (made by ``RUNTIMES[runtime]`` with ``threads``),
    e.g. to time one model again and again without exporting it each time.

    >>> from gmgraph.latency.runtimes import Runner
    >>> measure_runner(Runner(call=lambda: None, version="none"), batch=1, runtime="torch-cpu", threads=1,
    ...                warmup=0, runs=3, max_spread=1e9, attempts=1, clock="cpu").version
    'none'
    """
    check_timing(warmup=warmup, runs=runs, max_spread=max_spread, attempts=attempts, threads=threads)
    clock = resolve_clock(clock, check_runtime(runtime), threads)
    best, attempt = (float("nan"), float("inf")), 0
    while attempt < attempts and not best[1] <= max_spread:
        attempt += 1
        samples = np.asarray(time_runs(runner, warmup=warmup, runs=runs, clock=CLOCKS[clock]), dtype=float)
        median = float(np.median(samples))
        q25, q75 = np.percentile(samples, [25, 75])
        spread = float((q75 - q25) / median) if median > 0 else float("inf")
        if spread < best[1] or attempt == 1:
            best = (median, spread)
    median, spread = best
    timing = Timing(median_ms=median, spread=spread, stable=spread <= max_spread, runtime=runtime,
                    version=runner.version, threads=threads, batch=batch, warmup=warmup,
                    runs=runs, attempts=attempt, max_spread=max_spread, clock=clock)
    if require_stable and not timing.stable:
        raise LatencyError(
            f"the timing stayed unstable after {attempt} attempts: spread (IQR/median) {spread:.3f} > "
            f"max_spread {max_spread:g} (median {median:.4f} ms); the machine is busy: retry when it is "
            "idle, raise runs or attempts, or allow a larger max_spread")
    return timing


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""Clock name -> seconds function: ``wall`` elapsed time, ``cpu`` the calling thread's CPU time."""


def resolve_clock(clock: str, runtime: str, threads: int) -> str:
    """The clock a timing uses: ``auto`` is ``cpu`` for one thread on a CPU runtime, else ``wall``.

    >>> resolve_clock("auto", "onnxruntime", 1), resolve_clock("auto", "onnxruntime", 4)
    ('cpu', 'wall')

    Raises:
        ConfigError: an unknown clock, or ``cpu`` where it does not measure the latency.
    """
    if clock not in ("auto", *CLOCKS):
        raise ConfigError(f"unknown clock {clock!r}; choose one of auto, {', '.join(CLOCKS)}")
    if clock == "auto":
        return "cpu" if threads == 1 and runtime != "torch-cuda" else "wall"
    if clock == "cpu" and (threads != 1 or runtime == "torch-cuda"):
        raise ConfigError("clock='cpu' times the calling thread only: use it with threads=1 on a CPU runtime, "
                          "else clock='wall'")
    return clock


def time_runs(runner: Runner, *, warmup: int, runs: int, clock=time.perf_counter) -> list[float]:
    """Milliseconds (by ``clock``, in seconds) of each of ``runs`` calls of ``runner`` after ``warmup``
    untimed ones: the one place that reads a clock.

    >>> from gmgraph.latency.runtimes import Runner
    >>> len(time_runs(Runner(call=lambda: None, version="none"), warmup=1, runs=3))
    3
    """
    with runner.context():
        for _ in range(warmup):
            runner.call()
        runner.sync()
        times = []
        for _ in range(runs):
            start = clock()
            runner.call()
            runner.sync()
            times.append((clock() - start) * 1e3)
    return times


def check_timing(*, warmup: int, runs: int, max_spread: float, attempts: int, threads: int = 1) -> None:
    """Raise ConfigError naming the first bad timing setting.

    >>> check_timing(warmup=0, runs=-1, max_spread=0.1, attempts=1)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: runs must be a positive integer, got -1
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an integer of 0 or more, got {warmup!r}")
    for name, value in (("runs", runs), ("attempts", attempts), ("threads", threads)):
        check_positive_int(name, value)
    if isinstance(max_spread, bool) or not isinstance(max_spread, (int, float)) or not max_spread > 0:
        raise ConfigError(f"max_spread must be a positive number (IQR / median, e.g. 0.1), got {max_spread!r}")


def check_shape(shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints (one input without its batch dimension).

    >>> check_shape([1, 8, 8])
    (1, 8, 8)
    """
    if (not isinstance(shape, (tuple, list, torch.Size)) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ConfigError(f"input_shape must be the shape of one input without the batch dimension, "
                          f"positive integers such as (1, 8, 8); got {shape!r}")
    return tuple(shape)


def _onnx_input_shape(path: Path, given: Sequence[int] | None) -> Sequence[int] | None:
    """``given``, or the file's first input shape past the batch when it is static."""
    if given is not None:
        return given
    if not path.is_file():
        raise ConfigError(f"no ONNX model at {path}")
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    dims = proto.graph.input[0].type.tensor_type.shape.dim[1:]
    if not dims or any(not d.HasField("dim_value") for d in dims):
        raise ConfigError(f"{path} has a symbolic input shape; give input_shape, e.g. (3, 32, 32)")
    return tuple(int(d.dim_value) for d in dims)
