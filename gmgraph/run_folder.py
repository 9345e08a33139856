"""The run folder of ``gmgraph search``: the one place that writes, reads and checks it.

A finished run holds ``report.json`` (settings, split tree, leaves, search,
chosen arch, final accuracies, input shape, timings), ``arch.txt``,
``best.pt`` (the chosen network's weights and arch), ``best.onnx``,
``report.html``, ``checkpoint.pt`` and ``settings.json`` (every setting, which
``--resume`` takes back: :func:`resumed_settings`). Every command that looks at a run
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from gmgraph.errors import CheckpointError, ConfigError, FileError, RunError
from gmgraph.files import load_tensors, save_tensors, write_text
from gmgraph.registry import task_of

REPORT, ARCH, BEST, ONNX, HTML, CHECKPOINT, FRONT = (
    "report.json", "arch.txt", "best.pt", "best.onnx", "report.html", "checkpoint.pt", "front.pt")

DRAWINGS = ("arch.png", "split_tree.png", "training.png", "search.png", "front.png")
"""The PNGs report.html shows (those the run has), written beside it (:func:`gmgraph.report_html.draw_run`)."""

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


def check_resumable(out: str | Path, *, given_out: bool = True) -> Path:
    """``out/checkpoint.pt``, which ``--resume`` continues from; refused before any work when it is not there.

    Raises:
        ConfigError: no checkpoint (and, with ``given_out`` False, no ``--out`` named the run).
    """
    out = Path(out)
    if not (out / CHECKPOINT).exists():
        hint = "" if given_out else "; name the run's folder with --out"
        raise ConfigError(f"--resume: no checkpoint in {out} (expected {out / CHECKPOINT}){hint}")
    return out / CHECKPOINT


def finished(out: str | Path) -> bool:
    """Whether ``out`` holds a finished run (its report.json, written last of all its outputs)."""
    return (Path(out) / REPORT).is_file()


def write_settings(out: str | Path, settings: Any) -> Path:
    """``out/settings.json``: every setting of the run, which ``--resume`` takes back (:func:`resumed_settings`)."""
    from gmgraph.settings import as_dict

    return write_text(Path(out) / SETTINGS, json.dumps(as_dict(settings), indent=2) + "\n")


def resumed_settings(out: str | Path, given: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The settings a resumed run continues with, and the given flags that change them
    (``'--evaluations 9 given, the run has 4'``).

    The run's own settings come from ``out/settings.json`` (from the checkpoint for a run
    written before gmgraph kept that file); ``given`` (flag name -> value: the flags and
    config-file values of this invocation) may change only what acts after training or says
    where the run works (``--evaluations``, ``--final-epochs``, ``--device``, ``--threads``, ...).

    Raises:
        ConfigError: a given value differs from the run's in a setting that shaped its training,
            naming each such flag with the run's value and the given one.
    """
    from gmgraph.config import SearchSettings
    from gmgraph.settings import as_dict, flags, from_mapping

    out = Path(out)
    record = _flat_record(_settings_record(out))
    by_name = {f.name: f for f in flags(SearchSettings)}
    now = from_mapping(SearchSettings, {**record, **given})
    shaping = {name for name in given if _shapes_training(now, by_name[name].path)}
    then = from_mapping(SearchSettings, {**record, **{k: v for k, v in given.items() if k not in shaping}})
    plain = _flat_record(as_dict(now))
    changed = [name for name in given if plain.get(name) != record.get(name)]
    wrong = [name for name in changed if name in shaping]
    texts = _texts(then), _texts(now)

    def told(name: str) -> str:
        was = texts[0][name] if name in shaping else _text(record, name)
        return f"--{name} {texts[1][name]} given, the run has {was}"

    if wrong:
        raise ConfigError(f"--resume: {out} was trained with other settings ({'; '.join(map(told, wrong))}); leave "
                          f"{'that flag' if len(wrong) == 1 else 'those flags'} out to continue the run as it "
                          "started, or start a new run in another --out")
    return now, [told(name) for name in changed]


SETTINGS = "settings.json"


def _json(path: Path, what: str = "") -> Any:
    """``path``'s JSON, or one RunError saying the file is not readable JSON (``what`` says what it holds)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path} is not readable JSON ({exc}){what}") from exc


def _settings_record(out: Path) -> dict:
    """The run's settings as recorded: settings.json, or what its checkpoint records (older runs)."""
    path = out / SETTINGS
    if path.is_file():
        record = _json(path, "; it records the run's settings")
        if not isinstance(record, dict):
            raise RunError(f"{path} does not hold a table of settings")
        return record
    from gmgraph.train.checkpoint import load_checkpoint

    saved = load_checkpoint(out / CHECKPOINT).get("settings")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{out / CHECKPOINT} records no settings to resume with")
    return {**saved.get("run", {}), "seed": saved.get("seed", 0), "train": saved.get("train", {}),
            "fewshot": saved.get("fewshot", {})}


def _flat_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A nested settings record (settings.json, report.json's ``settings``) by flag name, the flags' fields only."""
    from gmgraph.config import SearchSettings
    from gmgraph.settings import flags

    out = {}
    for f in flags(SearchSettings):
        node: Any = record
        for part in f.path:
            node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
        if node is not _MISSING:
            out[f.name] = node
    return out


_MISSING = object()


def _text(record: Mapping[str, Any], name: str) -> str:
    """A recorded value as typed on the command line."""
    from gmgraph.settings import flag_text

    return flag_text(record.get(name))


def _texts(settings: Any) -> dict[str, str]:
    """Flag name -> the value as typed on the command line (``none`` for an unset optional one)."""
    from gmgraph.settings import flags, to_flags

    typed = to_flags(settings)
    given = {flag[2:]: text for flag, text in zip(typed[::2], typed[1::2])}
    return {f.name: given.get(f.name, "none") for f in flags(type(settings))}


def _shapes_training(settings: Any, path: tuple[str, ...]) -> bool:
    """Whether the field at ``path`` is one a resume must keep: what the checkpoint's training depended on."""
    if path[0] == "fewshot" or path == ("seed",):
        return True
    if path[0] == "train":
        return path[1] in settings.train.shaping()
    return len(path) == 1 and path[0] in settings.shaping()


def write_report(out: str | Path, report: Mapping[str, Any], model: nn.Module | None = None) -> None:
    """Write report.json, arch.txt and (with a model) best.pt into ``out``, each atomically."""
    out = Path(out)
    write_text(out / REPORT, json.dumps(report, indent=2, default=_jsonable) + "\n")
    write_text(out / ARCH, report["arch_str"] + "\n")
    if model is not None:
        save_tensors(best_record(report, model), out / BEST)


def best_record(report: Mapping[str, Any], model: nn.Module) -> dict:
    """best.pt's content: the chosen arch, the network's weights, and what rebuilds the network and
    prepares its images without the run's report.json (``gmgraph export --checkpoint best.pt``).

    Keys: ``arch`` (label -> op), ``model`` (state dict, on the CPU), ``network``
    (:meth:`Shape.as_record`: space, width, cells, classes, input channels and size) and ``data``
    (the dataset's name and the ``image_size`` its loader resized to, or None).
    """
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loads on any device
    settings = report["settings"]
    return {"arch": dict(report["arch"]), "model": weights, "network": Shape.of_report(report).as_record(),
            "data": {"name": settings.get("data"), "image_size": settings.get("image_size")}}


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
    report = _json(path)
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
        state = load_tensors(path, "network file")
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(state, dict) or not isinstance(state.get("arch"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f'{path} is not a best.pt-style checkpoint: expected {{"arch": ..., "model": state dict}}')
    return state


def best_shape(state: Mapping[str, Any], path: str | Path) -> Shape | None:
    """The network a best.pt records (:func:`best_record`); None for one written before gmgraph stored it.

    Raises:
        CheckpointError: a ``network`` entry that is not a whole record.
    """
    record = state.get("network")
    if record is None:
        return None
    try:
        return Shape.of_record(record)
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} records its network in a form this gmgraph does not read ({exc}); "
                              "export with --run DIR, or pass --width/--cells/--num-classes/--in-channels/"
                              "--image-size") from exc


@dataclass(frozen=True)
class Shape:
    """What a network is built for: its space's size knobs and its input images."""

    space: str
    width: int
    cells: int
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    kernel_transform: bool = False
    rules: str | None = None  # --rules that made a user's model (--model) a supernet

    def supernet(self) -> nn.Module:
        """The (untraced) supernet of this shape: the space, or a user's model with its rules, as the run built it.

        >>> from gmgraph.graph import space, trace
        >>> list(space(trace(Shape("nb201", 4, 1, 10, 3, (8, 8)).supernet())))[:2]
        ['1<-0', '2<-0']
        """
        from gmgraph.spaces import get

        return get(self.space, self.rules).make(self.width, self.cells, self.num_classes, self.in_channels,
                                                kernel_transform=self.kernel_transform)

    @classmethod
    def of_report(cls, report: Mapping[str, Any]) -> Shape:
        """The network a finished run trained: :meth:`of_settings` of the settings report.json records (read
        as ``--resume`` reads settings.json) for the input shape and classes it records.

        Raises:
            RunError: the report's settings or input do not describe a network this gmgraph builds.
        """
        from gmgraph.config import SearchSettings
        from gmgraph.settings import from_mapping

        try:
            settings = from_mapping(SearchSettings, _flat_record(report["settings"]))
            return cls.of_settings(settings, report["input_shape"], report["num_classes"])
        except (ConfigError, TypeError, ValueError) as exc:
            raise RunError(f"{REPORT} does not describe a network this gmgraph builds ({exc})") from exc

    @classmethod
    def of_settings(cls, settings: Any, input_shape: Sequence[int], num_classes: int) -> Shape:
        """The network ``settings`` (a :class:`~gmgraph.config.SearchSettings`) build for ``num_classes`` and
        images of ``input_shape`` (channels, height, width): the settings that shape the run
        (:meth:`~gmgraph.config.SearchSettings.shaping`) that are fields of a Shape, and the input's size.

        >>> from gmgraph.config import SearchSettings
        >>> shape = Shape.of_settings(SearchSettings(width=4, cells=1, image_size=12), [1, 12, 12], 10)
        >>> shape.space, shape.width, shape.cells, shape.num_classes, shape.in_channels, shape.image_size
        ('nb201', 4, 1, 10, 1, (12, 12))
        >>> shape.kernel_transform
        False
        """
        names = {f.name for f in fields(cls)}
        knobs = {name: value for name, value in settings.shaping().items() if name in names}
        return cls.of_record({**knobs, "num_classes": num_classes, "in_channels": input_shape[0],
                              "image_size": list(input_shape[1:])})  # the input's size, not the resize setting

    def as_record(self) -> dict:
        """Plain data for a checkpoint (best.pt); :meth:`of_record` reads it back. ``kernel_transform`` and
        ``rules`` are written only when set (a record without them, as every record before the settings, builds
        without).

        >>> Shape("nb201", 4, 1, 10, 1, (16, 16)).as_record()["image_size"]
        [16, 16]
        >>> Shape("ofa", 4, 1, 10, 1, (8, 8), kernel_transform=True).as_record()["kernel_transform"]
        True
        """
        record = {"space": self.space, "width": self.width, "cells": self.cells, "num_classes": self.num_classes,
                  "in_channels": self.in_channels, "image_size": list(self.image_size)}
        optional = {"kernel_transform": True} if self.kernel_transform else {}
        return {**record, **optional, **({"rules": self.rules} if self.rules else {})}

    @classmethod
    def of_record(cls, record: Mapping[str, Any]) -> Shape:
        """The shape :meth:`as_record` wrote.

        Raises:
            KeyError, TypeError, ValueError: not such a record.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"expected a table, got {type(record).__name__}")
        size = tuple(record["image_size"])
        counts = [record[k] for k in ("width", "cells", "num_classes", "in_channels")] + list(size)
        transform = record.get("kernel_transform", False)  # absent from records written before the setting
        rules = record.get("rules")  # absent unless a user's model was made a supernet by rules
        if not isinstance(record["space"], str) or len(size) != 2 or not isinstance(transform, bool) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in counts):
            raise ValueError(f"not a network record: {dict(record)}")
        return cls(space=record["space"], width=record["width"], cells=record["cells"],
                   num_classes=record["num_classes"], in_channels=record["in_channels"], image_size=size,
                   kernel_transform=transform, rules=rules if isinstance(rules, str) else None)


def build_network(shape: Shape, arch: Mapping[str, str]) -> fx.GraphModule:
    """The plain derived network of ``arch`` in ``shape.space`` (fresh weights)."""
    from gmgraph.graph import trace
    from gmgraph.passes.derive import derive

    return derive(trace(shape.supernet()), arch, inherit=False)


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, hint: str) -> None:
    """``net.load_state_dict(state)`` with a one-line error that names ``path`` and what to do.

    Raises:
        CheckpointError: the weights do not fit the network.
    """
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {path} do not fit the network ({_misfit(net, state)}); {hint}") from exc


def _misfit(net: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """How ``state`` misses ``net``'s weights, counted, with one example (torch lists every key).

    >>> _misfit(nn.Linear(2, 3), {"weight": torch.zeros(3, 4), "scale": torch.zeros(1)})
    '1 missing, 1 unexpected, 1 of another shape (e.g. weight: 3x4 in the file, 3x2 in the network)'
    """
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(getattr(state[k], "shape", ()))]
    parts = [f"{len(keys)} {what}" for keys, what in ((missing, "missing"), (unexpected, "unexpected"),
                                                      (shaped, "of another shape")) if keys]
    if shaped:
        k = shaped[0]
        parts[-1] += f" (e.g. {k}: {_dims(state[k])} in the file, {_dims(own[k])} in the network)"
    return ", ".join(parts) or "weights torch could not load"


def _dims(tensor: Any) -> str:
    return "x".join(str(d) for d in getattr(tensor, "shape", ())) or "a scalar"


def export_run(out: str | Path, dest: str | Path | None = None, *, opset: int = 18, pick: int | None = None,
               max_latency_ms: float | None = None) -> Path:
    """Export a finished run's chosen network, with its trained weights, to ONNX (or a Pareto-front point).

    The network is rebuilt from ``out/report.json`` (space, sizes, input
    shape, classes) and ``out/best.pt`` (arch and weights). The file's
    metadata records the run's dataset, its task (``gmgraph predict`` predicts for it
    wherever the file goes) and how its images were prepared
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
    from gmgraph.onnx_export import export_onnx

    out = Path(out)
    report = read_report(out)
    shape = Shape.of_report(report)
    settings = report["settings"]
    train = settings.get("train") if isinstance(settings.get("train"), Mapping) else {}
    metadata: dict[str, Any] = {"space": shape.space, "data": str(settings.get("data")),
                                "task": task_of(train.get("task"), settings.get("data"))}
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
    prepared = _preprocessing(report["settings"].get("data"), shape, image_size=report["settings"].get("image_size"))
    if prepared is not None:
        metadata["preprocessing"] = prepared
    return export_onnx(net, example, Path(dest) if dest is not None else default, opset=opset,
                       arch=best["arch"], metadata=metadata)


def _front_weights(path: Path, index: int, point: Mapping[str, Any]) -> dict:
    try:
        state = load_tensors(path, "Pareto-front file")
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc
    points = state.get("points") if isinstance(state, dict) else None
    if not isinstance(points, list) or index >= len(points) or points[index].get("arch") != point["arch"]:
        raise CheckpointError(f"{path} does not hold front point {index} of the run's report.json")
    return points[index]


def best_metadata(state: Mapping[str, Any], shape: Shape) -> dict:
    """What an ONNX export of a best.pt records: its space and, when the file names them (:func:`best_record`),
    its dataset and how the images were prepared.

    >>> best_metadata({"data": {"name": "digits16", "image_size": None}}, Shape("nb201", 4, 1, 10, 1, (16, 16)))["preprocessing"]["size"]
    [16, 16]
    """
    metadata: dict[str, Any] = {"space": shape.space}
    data = state.get("data")
    if isinstance(data, Mapping) and isinstance(data.get("name"), str):
        metadata["data"] = data["name"]
        size = data.get("image_size")
        prepared = _preprocessing(data["name"], shape, image_size=size if isinstance(size, int) else None)
        if prepared is not None:
            metadata["preprocessing"] = prepared
    return metadata


def _preprocessing(name: object, shape: Shape, *, image_size: int | None = None) -> dict | None:
    """How the run's data loader prepared the images the network was trained on (``gmgraph search``
    loads its dataset at native channels and at ``image_size``, or native size); None for a dataset
    this gmgraph does not know."""
    from gmgraph import data
    from gmgraph.errors import DataError

    try:
        prepared = data.preprocessing(str(name), image_size=image_size, shape=(shape.in_channels, *shape.image_size))
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


OUTPUTS = (REPORT, ARCH, BEST, ONNX, HTML, FRONT)
"""What one ``gmgraph search`` invocation writes at its end (report.html's drawings besides)."""

STAGING = ".outputs-next"


@contextlib.contextmanager
def replacing_outputs(out: str | Path) -> Iterator[Path]:
    """A folder for one invocation's outputs, which replace those of ``out`` as a set when the block ends.

    The outputs are written into ``out/.outputs-next/``; then the folder's earlier outputs are
    removed (report.json first) and the new ones moved in with ``os.replace`` (report.json last).
    So a kill at any moment leaves earlier outputs or new ones, never some of each, and a folder
    without report.json reads as an unfinished run, which ``--resume`` completes. An error inside
    the block discards the new outputs and keeps the earlier ones. The caller holds the folder
    (:func:`claim`), so a staging folder found at the start is a killed invocation's and goes.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> with replacing_outputs(out) as staging:
        ...     _ = write_text(staging / REPORT, "{}")
        >>> sorted(p.name for p in out.iterdir())
        ['report.json']
    """
    out = Path(out)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    new = [p.name for p in staging.iterdir() if p.is_file()]
    for name in dict.fromkeys((REPORT, *OUTPUTS, *DRAWINGS, *new)):  # report.json first: unfinished from here
        (out / name).unlink(missing_ok=True)
    for name in sorted(new, key=lambda name: name == REPORT):  # report.json last: finished from here
        os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)
