"""The one way gmgraph opens an ONNX model in onnxruntime: providers, threads and options in one place.

Export checks (:mod:`gmgraph.onnx_export`), latency timing (:mod:`gmgraph.latency.runtimes`) and
``gmgraph predict`` all open their sessions here, so they log alike (errors only: the CLI's output stays
readable) and a model onnxruntime cannot load is one clear gmgraph error::

    >>> open_session(b"not onnx", cannot_load="onnxruntime cannot load the model")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ExportError: onnxruntime cannot load the model: ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmgraph.errors import ExportError, GmGraphError, first_line

CPU = ("CPUExecutionProvider",)
"""The providers of a CPU session."""


def open_session(
    model: str | Path | bytes,
    *,
    providers: Sequence[str] = CPU,
    threads: int | None = None,
    inter_op_threads: int | None = None,
    cannot_load: str | None = None,
    error: type[GmGraphError] = ExportError,
    limit: int | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path or the serialized bytes).

    Args:
        providers: onnxruntime execution providers, best first (default: the CPU).
        threads: intra-op threads (None: onnxruntime's default, one per core).
        inter_op_threads: inter-op threads (None: onnxruntime's default).
        cannot_load: the start of the message when onnxruntime cannot load ``model``: it is raised as
            ``error`` with the first line of onnxruntime's own (at most ``limit`` characters).
            None: onnxruntime's exception goes up as it is.

    Log severity is errors only.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: keep the CLI's output readable
    if threads is not None:
        options.intra_op_num_threads = threads
    if inter_op_threads is not None:
        options.inter_op_num_threads = inter_op_threads
    source = model if isinstance(model, bytes) else str(model)
    if cannot_load is None:
        return ort.InferenceSession(source, options, providers=list(providers))
    try:
        return ort.InferenceSession(source, options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise error(f"{cannot_load}: {first_line(exc, limit)}") from exc
