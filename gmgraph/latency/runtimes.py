"""Where a network is timed: onnxruntime (what ``best.onnx`` runs on) or torch eager on the CPU or CUDA.

Each runtime turns a model and its example inputs into a :class:`Runner` whose
``call()`` runs the model once; ``RUNTIMES`` is the table of names the rest of
gmgraph accepts::

    >>> import torch
    >>> runner = RUNTIMES["onnxruntime"](torch.nn.Linear(3, 2), (torch.randn(4, 3),), threads=1)
    >>> runner.call()[0].shape
    (4, 2)
    >>> runner.version.startswith("onnxruntime ")
    True

A module goes to onnxruntime through torch's TorchScript exporter: it takes
about a tenth of the time of the dynamo exporter that ``export_onnx`` uses, and
onnxruntime runs both files equally fast (measured on NB201 networks). The file
is checked against torch once before it is timed; where that exporter fails,
the dynamo exporter is tried.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gmgraph import module_copy
from gmgraph.errors import ConfigError, ExportError, first_line
from gmgraph.onnx_session import open_session

_OPSET = 17  # the TorchScript exporter's newest well-tested opset


@dataclass(frozen=True)
class Runner:
    """One model ready to run in one runtime.

    Attributes:
        call: runs the model once on the example inputs.
        sync: waits until the device has finished (CUDA); a no-op elsewhere.
        version: the runtime and its version, e.g. ``onnxruntime 1.32.0``.
        context: entered around a whole timing (torch: the thread count is global, set and restored there).
    """

    call: Callable[[], object]
    version: str
    sync: Callable[[], None] = lambda: None
    context: Callable[[], contextlib.AbstractContextManager] = field(default=contextlib.nullcontext)


def onnxruntime_runner(model: nn.Module | str | Path, inputs: Sequence[torch.Tensor], *, threads: int) -> Runner:
    """Run ``model`` (a module, exported here, or an ``.onnx`` path) in onnxruntime on the CPU.

    ``intra_op_num_threads=threads``, one inter-op thread, default graph optimisations.
    """
    import onnxruntime as ort

    source = model if isinstance(model, (str, Path)) else onnx_bytes(model, inputs)
    session = open_session(source, threads=threads, inter_op_threads=1,
                           cannot_load="onnxruntime cannot load the model to time", limit=200)
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise ConfigError(f"the ONNX model takes {len(names)} inputs ({', '.join(names)}), got {len(inputs)}")
    feed = {name: x.detach().cpu().numpy() for name, x in zip(names, inputs)}
    return Runner(call=lambda: session.run(None, feed), version=f"onnxruntime {ort.__version__}")


def torch_cpu_runner(model: nn.Module, inputs: Sequence[torch.Tensor], *, threads: int) -> Runner:
    """Run ``model`` in torch eager on the CPU, under ``inference_mode``, with ``threads`` threads."""
    return _torch_runner(model, inputs, threads, torch.device("cpu"))


def torch_cuda_runner(model: nn.Module, inputs: Sequence[torch.Tensor], *, threads: int) -> Runner:
    """Run ``model`` in torch eager on the current CUDA device; every timed call is synchronised."""
    if not torch.cuda.is_available():
        raise ConfigError("runtime 'torch-cuda' needs a CUDA device and torch sees none; "
                          "use runtime='onnxruntime' or 'torch-cpu'")
    runner = _torch_runner(model, inputs, threads, torch.device("cuda"))
    name = torch.cuda.get_device_name()
    return Runner(call=runner.call, version=f"{runner.version} cuda {torch.version.cuda} {name}",
                  sync=torch.cuda.synchronize, context=runner.context)


def _torch_runner(model: nn.Module, inputs: Sequence[torch.Tensor], threads: int, device: torch.device) -> Runner:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"torch runtimes time an nn.Module, not {type(model).__name__}; "
                          "an .onnx file runs in runtime='onnxruntime'")
    net = module_copy.deepcopy(model).eval().to(device)  # the caller's module keeps its mode and device
    args = tuple(x.to(device) for x in inputs)

    def call():
        with torch.inference_mode():
            return net(*args)

    @contextlib.contextmanager
    def with_threads():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return Runner(call=call, version=f"torch {torch.__version__}", context=with_threads)


RUNTIMES: dict[str, Callable[..., Runner]] = {
    "onnxruntime": onnxruntime_runner,
    "torch-cpu": torch_cpu_runner,
    "torch-cuda": torch_cuda_runner,
}
"""Runtime name -> ``factory(model, inputs, *, threads) -> Runner``."""


def check_runtime(name: object) -> str:
    """``name`` if it is a known runtime.

    Raises:
        ConfigError: naming the runtimes.

    >>> check_runtime("tflite")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: unknown runtime 'tflite'; choose one of onnxruntime, torch-cpu, torch-cuda
    """
    if not isinstance(name, str) or name not in RUNTIMES:
        raise ConfigError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    return name


def runtime_version(name: str) -> str:
    """The runtime and its version as recorded with every timing (``torch-cuda`` adds the GPU).

    A runtime added to :data:`RUNTIMES` under another name is recorded by its name.

    >>> runtime_version("torch-cpu").startswith("torch ")
    True
    """
    check_runtime(name)
    if name == "onnxruntime":
        import onnxruntime as ort

        return f"onnxruntime {ort.__version__}"
    if name == "torch-cuda" and torch.cuda.is_available():
        return f"torch {torch.__version__} cuda {torch.version.cuda} {torch.cuda.get_device_name()}"
    return f"torch {torch.__version__}" if name.startswith("torch") else name


def onnx_bytes(model: nn.Module, inputs: Sequence[torch.Tensor]) -> bytes:
    """``model`` in eval mode as a serialized ONNX model with a static shape, checked against torch.

    >>> len(onnx_bytes(torch.nn.ReLU(), (torch.randn(2, 3),))) > 0
    True

    Raises:
        ExportError: neither exporter can export it, or onnxruntime disagrees with torch.
    """
    net = module_copy.deepcopy(model).eval().cpu()
    args = tuple(x.detach().cpu() for x in inputs)
    try:
        data = _torchscript_export(net, args)
    except Exception as first:  # the legacy exporter fails on some modules; the dynamo one may not
        try:
            data = _dynamo_export(net, args)
        except Exception as exc:  # both exporters raise many types; all mean "cannot export"
            raise ExportError(f"cannot export {type(model).__name__} to time it in onnxruntime: "
                              f"{first_line(first, 200)}; dynamo exporter: {first_line(exc, 200)}") from exc
    _check_against_torch(net, args, data)
    return data


def _torchscript_export(net: nn.Module, args: tuple[torch.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "legacy exporter" deprecation notes and tracer warnings
        torch.onnx.export(net, args, buffer, dynamo=False, opset_version=_OPSET)
    return buffer.getvalue()


def _dynamo_export(net: nn.Module, args: tuple[torch.Tensor, ...]) -> bytes:
    import tempfile

    from gmgraph.onnx_export import export_onnx

    if len(args) != 1:
        raise ExportError("the dynamo fallback exports single-input models only")
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(net, args[0], Path(folder) / "model.onnx", dynamic_batch=False, check=False)
        return path.read_bytes()


def _check_against_torch(net: nn.Module, args: tuple[torch.Tensor, ...], data: bytes) -> None:
    session = open_session(data, threads=1)
    got = session.run(None, {i.name: x.numpy() for i, x in zip(session.get_inputs(), args)})
    with torch.no_grad():
        out = net(*args)
    expected = [out] if isinstance(out, torch.Tensor) else list(out)
    for want, have in zip(expected, got):
        want = want.numpy()
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        if want.shape != have.shape or not np.allclose(have, want, rtol=1e-3, atol=1e-4 * scale):
            raise ExportError(f"the ONNX model of {type(net).__name__} disagrees with torch; it cannot stand for it")


