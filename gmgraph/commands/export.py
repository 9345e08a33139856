"""``gmgraph export``: an architecture, or a search run's result, as a verified ONNX file.

Two sources::

    $ gmgraph export --space nb201 --arch "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|" \\
          --checkpoint best.pt --out model.onnx
    $ gmgraph export --run runs/search-1        # writes runs/search-1/best.onnx

From Python, :func:`export_run` does the second; it is how a search run gets
its ``best.onnx``::

    >>> from gmgraph.commands.export import export_run
    >>> export_run("runs/search-1")  # doctest: +SKIP
    PosixPath('runs/search-1/best.onnx')
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx

from gmgraph.errors import ArchError, CheckpointError, ConfigError
from gmgraph.train.checkpoint import load_tensors

# NB201's CIFAR-10 network (C=16, N=5, 3x32x32, 10 classes) when neither flags nor a run say otherwise.
_DEFAULTS = {"num_classes": 10, "in_channels": 3, "image_size": 32, "width": 16, "cells": 5}


@dataclass(frozen=True)
class Shape:
    """What a network is built for: its space's size knobs and its input images."""

    space: str
    width: int
    cells: int
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]


def add_parser(sub) -> None:
    from gmgraph.spaces import REGISTRY

    p = sub.add_parser(
        "export", help="export an architecture to ONNX, verified in onnxruntime",
        description="Derive an architecture (or take a search run's result with its weights) and write it as "
                    "one self-contained ONNX file, checked with onnx.checker and compared with torch in onnxruntime.")
    p.add_argument("--run", type=Path, metavar="DIR", help="a `gmgraph search` output folder: export its chosen "
                   "architecture with its weights (DIR/best.pt); default --out DIR/best.onnx")
    p.add_argument("--space", choices=tuple(REGISTRY), help="search space (default nb201)")
    p.add_argument("--arch", help="architecture string of --space (optional with --checkpoint, which holds one)")
    p.add_argument("--checkpoint", type=Path, help='weights: a best.pt-style file {"arch": ..., "model": state dict}; '
                   "without it the network is freshly initialised")
    for flag, text in (("--num-classes", "outputs of the classifier"), ("--in-channels", "channels of the input"),
                       ("--image-size", "height and width of the input"), ("--width", "channels of the first stage"),
                       ("--cells", "cells per stage")):
        p.add_argument(flag, type=int, help=f"{text} (default {_DEFAULTS[flag[2:].replace('-', '_')]})")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--out", type=Path, help="the .onnx file to write (required unless --run)")
    p.set_defaults(func=_run_export)


def export_run(run_dir: str | Path, out: str | Path | None = None, *, opset: int = 18) -> Path:
    """Export a finished search run's chosen network, with its weights, to ONNX.

    Rebuilds the network from ``run_dir/report.json`` (space, width, cells; the
    input shape and class count come from loading the run's data) and loads
    the weights of ``run_dir/best.pt``.

    Args:
        run_dir: the ``--out`` folder of ``gmgraph search``.
        out: where to write; defaults to ``run_dir/best.onnx``.
        opset: ONNX opset version.

    Returns:
        The path written.

    Raises:
        ConfigError: ``run_dir`` holds no readable report.json.
        CheckpointError: best.pt is missing, corrupt or does not fit the network.
        DataError: the run's data cannot be loaded (to read its input shape).
        ExportError: export or verification failed.

    Example:
        >>> export_run("runs/search-1")  # doctest: +SKIP
        PosixPath('runs/search-1/best.onnx')
    """
    from gmgraph.passes.onnx import export_onnx

    run_dir = Path(run_dir)
    settings = _read_settings(run_dir)
    shape = _run_shape(settings)
    best = _read_best(run_dir / "best.pt")
    net = _network(shape, best["arch"])
    _load_weights(net, best["model"], run_dir / "best.pt", hint="the run's report.json and best.pt disagree")
    example = torch.zeros(1, shape.in_channels, *shape.image_size)
    path = Path(out) if out is not None else run_dir / "best.onnx"
    return export_onnx(net, example, path, opset=opset, arch=best["arch"],
                       metadata={"space": shape.space, "data": str(settings.get("data"))})


def _run_export(args: argparse.Namespace) -> int:
    from gmgraph.passes.onnx import read_metadata

    if args.run is not None:
        _refuse_with_run(args)
        path = export_run(args.run, args.out, opset=args.opset)
        meta = read_metadata(path)  # report what the file says it holds
        print(f"wrote {path}: {_arch_line(meta['space'], meta['arch'])} with the weights of "
              f"{args.run / 'best.pt'}; {_VERIFIED}")
        return 0
    if args.out is None:
        raise ConfigError("--out is required (the .onnx file to write), unless --run is given")
    space = args.space or "nb201"
    arch = _parse_arch(space, args.arch) if args.arch is not None else None
    best = _read_best(args.checkpoint) if args.checkpoint is not None else None
    arch = _agree(arch, best, args.checkpoint)
    shape = _flag_shape(args, space)
    path = _export_space(shape, arch, best, args.checkpoint, args.out, args.opset)
    source = f"the weights of {args.checkpoint}" if best else "freshly initialised weights (pass --checkpoint for trained ones)"
    print(f"wrote {path}: {_arch_line(shape.space, arch)} with {source}; {_VERIFIED}")
    return 0


_VERIFIED = "checked with onnx.checker and matched torch in onnxruntime at batch 1 and 7 (max |diff| <= 1e-4)"


def _export_space(shape: Shape, arch: dict, best: dict | None, checkpoint: Path | None, out: Path, opset: int) -> Path:
    from gmgraph.passes.onnx import export_onnx

    with torch.random.fork_rng():  # fresh weights are seeded, without touching the caller's RNG
        torch.manual_seed(0)
        net = _network(shape, arch)
    if best is not None:
        _load_weights(net, best["model"], checkpoint,
                      hint="pass the --width/--cells/--num-classes/--in-channels the model was trained with")
    example = torch.zeros(1, shape.in_channels, *shape.image_size)
    return export_onnx(net, example, out, opset=opset, arch=arch, metadata={"space": shape.space})


def _refuse_with_run(args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--space", args.space), ("--arch", args.arch), ("--checkpoint", args.checkpoint),
                                      ("--num-classes", args.num_classes), ("--in-channels", args.in_channels),
                                      ("--image-size", args.image_size), ("--width", args.width),
                                      ("--cells", args.cells)) if value is not None]
    if given:
        raise ConfigError(f"--run takes the architecture, weights and shapes from the run; drop {', '.join(given)}")


def _flag_shape(args: argparse.Namespace, space: str) -> Shape:
    values = {}
    for name, default in _DEFAULTS.items():
        value = getattr(args, name)
        value = default if value is None else value
        if value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        values[name] = value
    size = values.pop("image_size")
    return Shape(space=space, image_size=(size, size), **values)


def _read_settings(run_dir: Path) -> dict:
    report = run_dir / "report.json"
    if not report.is_file():
        raise ConfigError(f"{run_dir} is not a finished gmgraph search run: no {report}")
    try:
        settings = json.loads(report.read_text())["settings"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{report} is not a gmgraph report (no readable 'settings'): {exc}") from exc
    return settings


def _run_shape(settings: Mapping) -> Shape:
    """The network a run trained: sizes from its settings, input and classes from its data."""
    from gmgraph import data

    # report.json does not store the input shape; loading the data is the source of truth.
    loaders = data.load(settings["data"], root=settings.get("data_root"), batch_size=1)
    info = data.info(loaders)
    return Shape(space=settings["space"], width=settings["width"], cells=settings["cells"],
                 num_classes=info.num_classes, in_channels=info.shape[0], image_size=info.shape[1:])


def _network(shape: Shape, arch: Mapping[str, str]) -> fx.GraphModule:
    from gmgraph.graph import trace
    from gmgraph.passes.derive import derive
    from gmgraph.spaces import get

    model = get(shape.space).build(width=shape.width, cells=shape.cells, num_classes=shape.num_classes,
                                   in_channels=shape.in_channels)
    return derive(trace(model), arch, inherit=False)


def _read_best(path: Path) -> dict:
    """A best.pt-style checkpoint: ``{"arch": label -> op, "model": state dict}``, loaded without running code."""
    state = load_tensors(path)
    if not isinstance(state, dict) or not isinstance(state.get("arch"), dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f'{path} is not a best.pt-style checkpoint: expected {{"arch": ..., "model": state dict}}')
    return state


def _load_weights(net: torch.nn.Module, state: dict, path: Path, hint: str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"the weights in {path} do not fit the network ({detail}); {hint}") from exc


def _parse_arch(space: str, text: str) -> dict:
    from gmgraph.spaces import get

    spec = get(space)
    if spec.parse is not None:
        return spec.parse(text)
    try:  # spaces without their own codec use report.arch_line's `label=op;label=op`
        return dict(part.split("=", 1) for part in text.split(";") if part)
    except ValueError:
        raise ArchError(f"--arch {text!r}: expected label=op pairs separated by ';'") from None


def _agree(arch: dict | None, best: dict | None, checkpoint: Path | None) -> dict:
    if arch is None and best is None:
        raise ConfigError("give --arch (an architecture string), --checkpoint (a best.pt with one) or --run DIR")
    if arch is not None and best is not None and dict(best["arch"]) != arch:
        raise ConfigError(f"--arch differs from the architecture stored in {checkpoint} ({best['arch']}); "
                          "drop --arch to use the checkpoint's")
    return dict(arch if arch is not None else best["arch"])


def _arch_line(space: str, arch: Mapping[str, str]) -> str:
    from gmgraph.spaces import get

    spec = get(space)
    return spec.to_str(arch) if spec.to_str is not None else ";".join(f"{k}={v}" for k, v in arch.items())
