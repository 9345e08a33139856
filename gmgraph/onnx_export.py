"""``export_onnx``: a derived network as one self-contained ONNX file, checked in onnxruntime.

The file is written only once it has passed ``onnx.checker`` (full check) and
onnxruntime agrees with torch on fresh random inputs; it carries the
architecture and the gmgraph version in its metadata::

    >>> import tempfile, pathlib, torch
    >>> from torch import nn
    >>> import gmgraph
    >>> from gmgraph.choice import Choice
    >>> from gmgraph.passes import derive
    >>> supernet = gmgraph.trace(nn.Sequential(nn.Linear(4, 3), Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, "act")))
    >>> net = derive(supernet, {"act": "tanh"})
    >>> path = export_onnx(net, torch.randn(1, 4), pathlib.Path(tempfile.mkdtemp()) / "net.onnx")
    >>> read_metadata(path)["arch"]
    {'act': 'tanh'}

The exported graph takes one input named ``input`` (its first dimension, the
batch, symbolic unless ``dynamic_batch=False``) and names its outputs ``output``
(or ``output_0``, ``output_1``, ... for a tuple).

It writes a file, so it is not one of the passes (:mod:`gmgraph.passes`: a
GraphModule in, a new GraphModule out); it sits beside the onnxruntime
sessions it checks the file with (:mod:`gmgraph.onnx_session`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gmgraph import module_copy
from gmgraph.choice import Choice
from gmgraph.errors import ExportError, FileError, first_line
from gmgraph.files import atomic_write
from gmgraph.onnx_session import open_session
from gmgraph.preprocessing import PREPROCESSING_KEY  # the record's format lives beside the code that reads it

PREFIX = "gmgraph."
ARCH_KEY = PREFIX + "arch"
VERSION_KEY = PREFIX + "version"
PARETO_KEY = PREFIX + "pareto_point"
"""A Pareto-front export's point: JSON ``{"index", "values"}`` (``gmgraph export --run DIR --pick N``)."""
_JSON_KEYS = (ARCH_KEY, PREPROCESSING_KEY, PARETO_KEY)  # read_metadata decodes these
INPUT_NAME = "input"

# A protobuf message cannot exceed 2 GiB; beyond that ONNX needs external data files.
_PROTOBUF_LIMIT = 2**31 - 1


def export_onnx(
    gm: nn.Module,
    example_input: torch.Tensor,
    path: str | Path,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    check: bool = True,
    arch: Mapping[str, str] | None = None,
    metadata: Mapping[str, object] | None = None,
    atol: float = 1e-4,
) -> Path:
    """Export a derived network to ``path`` with torch's dynamo-based ONNX exporter.

    The network is exported in eval mode (from a copy: ``gm`` is not changed)
    into a single file with the weights inside. ``path`` appears only when
    every step succeeded; on failure neither it nor a temporary file is left.

    Args:
        gm: a network without Choices, e.g. the result of ``derive``.
        example_input: one input batch; only its shape (past the batch
            dimension) and dtype matter.
        path: where to write the ``.onnx`` file.
        opset: ONNX opset version of the default domain.
        dynamic_batch: export the batch dimension as symbolic (``batch``).
        check: run ``onnx.checker`` (full check) and compare onnxruntime with
            torch on random inputs (batches of 1 and 7, or the example's batch
            size when the batch is static).
        arch: the architecture to record; defaults to ``gm.meta["arch"]``,
            which ``derive`` sets.
        metadata: extra entries, stored as ``gmgraph.<key>``: a mapping or a
            list as JSON (``read_metadata`` decodes ``preprocessing``), anything
            else as ``str(value)``.
        atol: largest accepted absolute difference between onnxruntime and torch.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ExportError: the graph still holds a Choice, cannot run on the example,
            cannot be exported, fails the checker, disagrees with torch, or
            ``path`` cannot be written.

    Example:
        >>> import tempfile, pathlib, torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> export_onnx(net, torch.randn(1, 3), pathlib.Path(tempfile.mkdtemp()) / "fc.onnx").name
        'fc.onnx'
    """
    _refuse_choices(gm)
    _check_opset(opset)
    if Path(path).is_dir():  # found now rather than by os.replace after the slow export
        raise ExportError(f"cannot write {path}: it is a folder; give a file name such as {Path(path) / 'model.onnx'}")
    if not isinstance(example_input, torch.Tensor) or example_input.dim() == 0 or len(example_input) == 0:
        raise ExportError("example_input must be a tensor holding a batch of at least one input, like torch.randn(1, 3, 32, 32)")
    model = module_copy.deepcopy(gm).eval()
    n_outputs = _count_outputs(model, example_input)
    if arch is None:
        arch = getattr(gm, "meta", {}).get("arch")
    entries = _metadata(arch, metadata)

    def write(tmp: str) -> None:
        # Export inside the temporary file's lifetime: a bad path fails before the slow export.
        proto = _export(model, example_input, opset, dynamic_batch, n_outputs)
        for key, value in entries.items():
            proto.metadata_props.add(key=key, value=value)
        _write_proto(proto, tmp)
        if check:
            _check_model(tmp)
            _compare(model, tmp, example_input, dynamic_batch, atol)

    try:
        return atomic_write(path, write)
    except OSError as exc:  # FileError too: atomic_write cannot create the temp file
        raise ExportError(f"cannot write {path}: {_why_unwritable(Path(path), exc)}") from exc


def read_metadata(path: str | Path) -> dict:
    """The ``gmgraph.*`` metadata of an exported file, without the prefix; ``arch`` and ``preprocessing`` decoded.

    ``preprocessing`` (:func:`gmgraph.data.preprocessing`) is present only in a
    file that knows its data: ``gmgraph export --run`` and a search's best.onnx.

    Example:
        >>> read_metadata("no/such/model.onnx")
        Traceback (most recent call last):
        ...
        gmgraph.errors.ExportError: no ONNX model at no/such/model.onnx
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"no ONNX model at {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError; any failure means "not ONNX"
        raise ExportError(f"{path} is not an ONNX model: {exc}") from exc
    out: dict = {}
    for prop in proto.metadata_props:
        if prop.key.startswith(PREFIX):
            out[prop.key[len(PREFIX):]] = json.loads(prop.value) if prop.key in _JSON_KEYS else prop.value
    return out


def _refuse_choices(gm: nn.Module) -> None:
    labels = sorted({m.label for m in gm.modules() if isinstance(m, Choice)})
    if labels:
        raise ExportError(
            f"the graph still holds Choice layers (decisions {labels}); derive an architecture first: "
            "gmgraph.passes.derive(gm, arch) returns a plain network to export"
        )


def _count_outputs(model: nn.Module, example: torch.Tensor) -> int:
    """Run the model once: a wrong example shape fails here, with a clear message."""
    try:
        with torch.no_grad():
            out = model(example)
    except Exception as exc:  # any failure means the example does not fit the model
        raise ExportError(
            f"the network cannot run on an example input of shape {tuple(example.shape)}: {first_line(exc)}"
        ) from exc
    return len(_as_tensors(out))


def _as_tensors(out) -> list[torch.Tensor]:
    tensors = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, (tuple, list)) else None
    if tensors is None or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ExportError(f"the network must return a tensor or a tuple of tensors, not {type(out).__name__}")
    return tensors


def _metadata(arch: Mapping[str, str] | None, extra: Mapping[str, object] | None) -> dict[str, str]:
    import gmgraph

    entries = {VERSION_KEY: gmgraph.__version__}
    if arch is not None:
        entries[ARCH_KEY] = json.dumps(dict(arch))
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping):
            text = json.dumps(dict(value))
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value))
        else:
            text = str(value)
        entries[key if key.startswith(PREFIX) else PREFIX + key] = text
    return entries


def _export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool, n_outputs: int):
    """The ONNX ModelProto of ``model`` (weights inside, exporter optimisations on)."""
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specialises a dimension of size 1 to a constant; trace with 2.
        if len(example) == 1:
            example = torch.cat([example, example])
        dynamic_shapes = ({0: torch.export.Dim("batch")},)
    names = ["output"] if n_outputs == 1 else [f"output_{i}" for i in range(n_outputs)]
    try:
        with _quiet_stderr():  # the exporter prints warnings and whole graphs there; the error says what matters
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, dynamic_shapes=dynamic_shapes,
                input_names=[INPUT_NAME], output_names=names, external_data=False,
                verbose=False, report=False,
            )
        proto = program.model_proto
    except Exception as exc:  # the exporter raises many types; all mean "cannot export"
        raise ExportError(f"torch.onnx.export could not export {type(model).__name__}: {_export_reason(exc)}") from exc
    import onnx

    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:  # the exporter converts quietly, or falls back to its own opset when it cannot
        raise ExportError(f"asked for opset {opset} but the exporter wrote opset {written}; "
                          f"use an opset from {MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    return proto


MIN_OPSET = 18
"""The oldest opset torch's dynamo exporter writes itself (older ones go through a lossy converter)."""


def _check_opset(opset: object) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(f"opset must be an integer from {MIN_OPSET} to {newest} (this onnx), got {opset!r}")


def _write_proto(proto, tmp: str) -> None:
    size = proto.ByteSize()
    if size > _PROTOBUF_LIMIT:
        raise ExportError(
            f"the model takes {size / 2**30:.1f} GiB; a single-file ONNX model must stay under 2 GiB "
            "(export_onnx does not write external data files)"
        )
    Path(tmp).write_bytes(proto.SerializeToString())


def _check_model(tmp: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(tmp, full_check=True)
    except Exception as exc:  # ValidationError, or shape inference errors under full_check
        raise ExportError(f"the exported model fails onnx.checker: {first_line(exc)}") from exc


def _compare(model: nn.Module, tmp: str, example: torch.Tensor, dynamic_batch: bool, atol: float) -> None:
    """Raise ExportError unless onnxruntime matches torch on fresh inputs."""
    session = _session(tmp)
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 7) if dynamic_batch else (len(example),):
        x = _random_like(example, batch, generator)
        with torch.no_grad():
            expected = [t.numpy() for t in _as_tensors(model(x))]
        try:
            got = session.run(None, {INPUT_NAME: x.numpy()})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot run the exported model at batch {batch}: {first_line(exc)}") from exc
        _check_outputs(expected, got, batch, atol)


def _session(tmp: str):
    return open_session(tmp, threads=torch.get_num_threads(), cannot_load="onnxruntime cannot load the exported model")


def _random_like(example: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    shape = (batch, *example.shape[1:])
    if example.is_floating_point():
        return torch.randn(shape, generator=generator).to(example.dtype)
    # Integer inputs (ids, labels) need valid values: resample rows of the example.
    return example[torch.randint(len(example), (batch,), generator=generator)]


def _check_outputs(expected: Sequence[np.ndarray], got: Sequence[np.ndarray], batch: int, atol: float) -> None:
    if len(expected) != len(got):
        raise ExportError(f"onnxruntime returns {len(got)} outputs, torch {len(expected)} (batch {batch})")
    for i, (want, have) in enumerate(zip(expected, got)):
        if want.shape != have.shape:
            raise ExportError(
                f"output {i} at batch {batch}: onnxruntime shape {have.shape} differs from torch shape {want.shape}"
            )
        diff = float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64)), initial=0.0))
        if not diff <= atol:  # `not <=` also catches NaN
            raise ExportError(
                f"onnxruntime disagrees with torch on output {i} at batch {batch}: "
                f"max |onnx - torch| = {diff:.3g} > atol {atol:g}"
            )


def _why_unwritable(path: Path, exc: BaseException) -> str:
    # mkdir under a file says only "File exists"; name the culprit instead.
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{parent} is not a folder"
    cause = exc.__cause__ if isinstance(exc, FileError) and exc.__cause__ else exc
    return getattr(cause, "strerror", None) or str(cause)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED_AT = re.compile(r'The following call raised this error:\s*\n\s*File "([^"]+)", line (\d+)[^\n]*\n\s*(.+)')


def _export_reason(exc: BaseException) -> str:
    """One line: the deepest cause's first line, and the user's code line that raised it when torch names it."""
    text = _ANSI.sub("", str(exc))
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    reason = first_line(root) if root is not exc else first_line(exc)
    where = _RAISED_AT.search(text)
    if where:
        reason += f" (at {Path(where.group(1)).name}:{where.group(2)}: {where.group(3).strip()})"
    return _ANSI.sub("", reason)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the exporter: its log records (warnings with whole graphs in them) and what it writes
    to file descriptor 2 from C++ go nowhere while it runs."""
    sys.stderr.flush()
    saved, disabled = os.dup(2), logging.root.manager.disable
    logging.disable(logging.WARNING)
    with tempfile.TemporaryFile() as scratch, contextlib.redirect_stderr(io.StringIO()):
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            logging.disable(disabled)


