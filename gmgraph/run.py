"""The run folder of ``gmgraph search``: the one place that writes, reads and checks it.

A finished run holds ``report.json`` (settings, split tree, leaves, search,
chosen arch, final accuracies, input shape, timings), ``arch.txt``,
``best.pt`` (the chosen network's weights and arch), ``best.onnx``,
``report.html`` and ``checkpoint.pt``. Every command that looks at a run
(``export``, ``show``, ``report``) reads it through :func:`read_report`, so a
damaged folder gives the same one clear :class:`~gmgraph.errors.RunError`
everywhere::

    >>> import tempfile
    >>> read_report(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    gmgraph.errors.RunError: ... holds no report.json; is it a finished `gmgraph search` run?
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from gmgraph.errors import CheckpointError, ConfigError, FileError, RunError
from gmgraph.files import load_tensors, save_tensors, write_text

REPORT, ARCH, BEST, ONNX, HTML, CHECKPOINT, FRONT = (
    "report.json", "arch.txt", "best.pt", "best.onnx", "report.html", "checkpoint.pt", "front.pt")

REPORT_KEYS = ("gmgraph_version", "settings", "space", "space_size", "split_tree", "leaves", "search",
               "arch", "arch_str", "final", "budget", "timings", "hardware", "input_shape", "num_classes")
"""Keys every report.json of this version holds."""

_TYPES = {"settings": dict, "split_tree": list, "leaves": list, "search": dict, "arch": dict, "final": dict,
          "budget": dict, "timings": dict, "hardware": dict, "input_shape": list, "num_classes": int, "arch_str": str}


def default_out() -> Path:
    """``runs/search-<time>``: where a run goes when ``--out`` is not given."""
    return Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")


def prepare(out: str | Path, resume: bool) -> Path:
    """Check that ``out`` can hold this run (a new run or a resumed one) and create it.

    Raises:
        ConfigError: resuming without a checkpoint, starting over an existing
            run, or a folder that cannot be written.
    """
    out = Path(out)
    if resume and not (out / CHECKPOINT).exists():
        raise ConfigError(f"--resume: no checkpoint in {out} (expected {out / CHECKPOINT})")
    if not resume and (out / CHECKPOINT).exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc
    return out


def write_report(out: str | Path, report: Mapping[str, Any], model: nn.Module | None = None) -> None:
    """Write report.json, arch.txt and (with a model) best.pt into ``out``, each atomically."""
    out = Path(out)
    write_text(out / REPORT, json.dumps(report, indent=2, default=_jsonable) + "\n")
    write_text(out / ARCH, report["arch_str"] + "\n")
    if model is not None:
        weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loads on any device
        save_tensors({"arch": dict(report["arch"]), "model": weights}, out / BEST)


def write_front(out: str | Path, points: list[tuple[Mapping[str, str], nn.Module]]) -> None:
    """Write front.pt: each Pareto-front point's arch and network (supernet weights, BN recalibrated)."""
    save_tensors({"points": [{"arch": dict(arch), "model": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
                             for arch, net in points]}, Path(out) / FRONT)


def front_point(out: str | Path, *, pick: int | None = None, max_latency_ms: float | None = None) -> tuple[int, dict]:
    """``(index, point)`` of a run's Pareto front: point ``pick``, or the most accurate within ``max_latency_ms``.

    Raises:
        RunError: the run has no front. ConfigError: no such point, a latency limit on a front
        without latency, or a limit no point meets (naming the fastest).
    """
    front = (read_report(out).get("pareto") or {}).get("front")
    if not front:
        raise RunError(f"{Path(out)} has no Pareto front: run `gmgraph search --search pareto --objectives ...`")
    if (pick is None) == (max_latency_ms is None):
        raise ConfigError("choose a front point with either --pick N or --max-latency-ms X")
    if pick is not None:
        if isinstance(pick, bool) or not isinstance(pick, int) or not 0 <= pick < len(front):
            raise ConfigError(f"--pick must be a point of the front, 0..{len(front) - 1}, got {pick!r}")
        return pick, front[pick]
    if "latency" not in front[0]["values"]:
        raise ConfigError("--max-latency-ms needs a front with latency: search with --objectives accuracy,latency")
    within = [i for i, point in enumerate(front) if point["values"]["latency"] <= max_latency_ms]
    if not within:
        fastest = min(point["values"]["latency"] for point in front)
        raise ConfigError(f"no front point is within {max_latency_ms:g} ms; the fastest takes {fastest:.4g} ms")
    first = next(iter(front[0]["values"]))  # the search's first objective (accuracy)
    best = max(within, key=lambda i: front[i]["values"][first])
    return best, front[best]


def read_report(out: str | Path) -> dict:
    """``out/report.json``, checked to be a whole report of this version.

    Raises:
        RunError: no such file, not JSON, or not a gmgraph report (naming what is missing).
    """
    path = Path(out) / REPORT
    if not path.is_file():
        raise RunError(f"{Path(out)} holds no {REPORT}; is it a finished `gmgraph search` run?")
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(report, dict):
        raise RunError(f"{path} is not a gmgraph report: it holds a {type(report).__name__}, not a table")
    missing = [k for k in REPORT_KEYS if k not in report]
    wrong = [k for k, kind in _TYPES.items() if k in report and not isinstance(report[k], kind)]
    if missing or wrong:
        detail = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                             f"wrong type: {', '.join(wrong)}" if wrong else "") if part)
        raise RunError(f"{path} is not a complete gmgraph report ({detail}); rerun `gmgraph search`")
    return report


def read_best(path: str | Path) -> dict:
    """A best.pt-style file ``{"arch": label -> op, "model": state dict}``, loaded without running code.

    Raises:
        CheckpointError: missing, corrupt, or not shaped like best.pt.
    """
    try:
        state = load_tensors(path)
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(state, dict) or not isinstance(state.get("arch"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f'{path} is not a best.pt-style checkpoint: expected {{"arch": ..., "model": state dict}}')
    return state


@dataclass(frozen=True)
class Shape:
    """What a network is built for: its space's size knobs and its input images."""

    space: str
    width: int
    cells: int
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]

    @classmethod
    def of_report(cls, report: Mapping[str, Any]) -> Shape:
        """The network a finished run trained (report.json records the input shape and classes)."""
        settings, shape = report["settings"], report["input_shape"]
        return cls(space=settings["space"], width=settings["width"], cells=settings["cells"],
                   num_classes=report["num_classes"], in_channels=shape[0], image_size=tuple(shape[1:]))


def build_network(shape: Shape, arch: Mapping[str, str]) -> fx.GraphModule:
    """The plain derived network of ``arch`` in ``shape.space`` (fresh weights)."""
    from gmgraph.graph import trace
    from gmgraph.passes.derive import derive
    from gmgraph.spaces import get

    model = get(shape.space).build(width=shape.width, cells=shape.cells, num_classes=shape.num_classes,
                                   in_channels=shape.in_channels)
    return derive(trace(model), arch, inherit=False)


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, hint: str) -> None:
    """``net.load_state_dict(state)`` with a one-line error that names ``path`` and what to do.

    Raises:
        CheckpointError: the weights do not fit the network.
    """
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"the weights in {path} do not fit the network ({detail}); {hint}") from exc


def export_run(out: str | Path, dest: str | Path | None = None, *, opset: int = 18, pick: int | None = None,
               max_latency_ms: float | None = None) -> Path:
    """Export a finished run's chosen network, with its trained weights, to ONNX (or a Pareto-front point).

    The network is rebuilt from ``out/report.json`` (space, sizes, input
    shape, classes) and ``out/best.pt`` (arch and weights). The file's
    metadata records the run's dataset and how its images were prepared
    (:func:`gmgraph.data.preprocessing`), which ``gmgraph predict --images`` applies.

    Args:
        out: the run folder.
        dest: the .onnx file to write (default ``out/best.onnx``).
        opset: ONNX opset version.
        pick, max_latency_ms: export point ``pick`` of the run's Pareto front, or its most
            accurate point within ``max_latency_ms`` (:func:`front_point`), with the supernet's
            weights from ``out/front.pt``, instead of the chosen arch (default ``out/front-<N>.onnx``).

    Raises:
        RunError: no readable report. CheckpointError: best.pt missing or not
        fitting. ExportError: export or its check in onnxruntime failed.

    Example:
        >>> export_run("runs/search-1")  # doctest: +SKIP
        PosixPath('runs/search-1/best.onnx')
    """
    from gmgraph.passes.onnx import export_onnx

    out = Path(out)
    report = read_report(out)
    shape = Shape.of_report(report)
    metadata: dict[str, Any] = {"space": shape.space, "data": str(report["settings"].get("data"))}
    source, default = out / BEST, out / ONNX
    if pick is None and max_latency_ms is None:
        best = read_best(source)
    else:
        index, point = front_point(out, pick=pick, max_latency_ms=max_latency_ms)
        best, source, default = _front_weights(out / FRONT, index, point), out / FRONT, out / f"front-{index}.onnx"
        metadata["pareto_point"] = {"index": index, "values": point["values"]}
    net = build_network(shape, best["arch"])
    load_weights(net, best["model"], source, hint=f"the run's {REPORT} and {source.name} disagree")
    example = torch.zeros(1, shape.in_channels, *shape.image_size)
    prepared = _preprocessing(report["settings"].get("data"), shape)
    if prepared is not None:
        metadata["preprocessing"] = prepared
    return export_onnx(net, example, Path(dest) if dest is not None else default, opset=opset,
                       arch=best["arch"], metadata=metadata)


def _front_weights(path: Path, index: int, point: Mapping[str, Any]) -> dict:
    try:
        state = load_tensors(path)
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc
    points = state.get("points") if isinstance(state, dict) else None
    if not isinstance(points, list) or index >= len(points) or points[index].get("arch") != point["arch"]:
        raise CheckpointError(f"{path} does not hold front point {index} of the run's report.json")
    return points[index]


def _preprocessing(name: object, shape: Shape) -> dict | None:
    """How the run's data loader prepared the images the network was trained on (``gmgraph search``
    loads its dataset at native size and channels); None for a dataset this gmgraph does not know."""
    from gmgraph import data
    from gmgraph.errors import DataError

    try:
        prepared = data.preprocessing(str(name), shape=(shape.in_channels, *shape.image_size))
    except DataError:
        return None
    if prepared["size"] is None:  # imagefolder: the files set the size; the network says what it was
        prepared["size"] = list(shape.image_size)
    return prepared


def _jsonable(value):
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


LOCK = ".gmgraph.lock"


@contextlib.contextmanager
def claim(out: str | Path, resume: bool) -> Iterator[Path]:
    """:func:`prepare` and :func:`locked` for the length of a run; a run refused before it wrote a
    file leaves no folder behind (the folders this call created are removed again).

    Raises:
        ConfigError, RunError: as :func:`prepare` and :func:`locked`.
    """
    out = Path(out)
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        with locked(prepare(out, resume)):
            yield out
    except BaseException:
        if created is not None and created.is_dir() and not any(p.is_file() for p in created.rglob("*")):
            shutil.rmtree(created, ignore_errors=True)
        raise


@contextlib.contextmanager
def locked(out: str | Path) -> Iterator[Path]:
    """Hold the run folder ``out`` for this process: a second run into it is refused.

    The lock is a file holding ``pid@host``, created exclusively and removed on
    any exit; a lock whose process is gone (same host, no such pid) is stale and
    taken over, so a killed run never blocks its own ``--resume``.

    Raises:
        RunError: another live process holds ``out``.
    """
    path = Path(out) / LOCK
    me = f"{os.getpid()}@{socket.gethostname()}"
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None or not _stale(holder):
                raise RunError(f"{Path(out)} is in use by another gmgraph run (process {holder or 'unknown'}); "
                               "wait for it to finish or choose another --out") from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        break
    try:
        yield path
    finally:
        if _read_lock(path) == me:
            path.unlink(missing_ok=True)


def _read_lock(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _stale(holder: str) -> bool:
    """True when ``pid@host`` names a process of this host that no longer runs."""
    pid, _, host = holder.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's run (a shared folder): never taken over
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
