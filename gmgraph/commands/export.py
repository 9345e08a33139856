"""``gmgraph export``: an architecture, or a search run's result, as a verified ONNX file.

Two sources::

    $ gmgraph export --space nb201 --arch "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|" \\
          --checkpoint best.pt --out model.onnx
    $ gmgraph export --run runs/search-1        # writes runs/search-1/best.onnx

From Python, :func:`gmgraph.run_folder.export_run` does the second; it is how a
search run gets its ``best.onnx``. A run's ``best.pt`` records its network's
space, sizes and data (:func:`gmgraph.run_folder.best_record`), so the first needs no
size flags for it; a best.pt written before gmgraph recorded them takes
``--width/--cells/--num-classes/--in-channels/--image-size``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gmgraph import registry
from gmgraph.commands import HELP
from gmgraph.errors import ConfigError

if TYPE_CHECKING:
    from gmgraph.run_folder import Shape

# NB201's CIFAR-10 network (C=16, N=5, 3x32x32, 10 classes) when neither flags nor a run say otherwise.
_DEFAULTS = {"num_classes": 10, "in_channels": 3, "image_size": 32, "width": 16, "cells": 5}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help=HELP["export"],
        description="Derive an architecture (or take a search run's result with its weights) and write it as "
                    "one self-contained ONNX file, checked with onnx.checker and compared with torch in onnxruntime.")
    p.add_argument("--run", type=Path, metavar="DIR", help="a `gmgraph search` output folder: export its chosen "
                   "architecture with its weights (DIR/best.pt); default --out DIR/best.onnx")
    p.add_argument("--space", choices=tuple(registry.SPACES), help="search space (default nb201)")
    p.add_argument("--arch", help="architecture string of --space (optional with --checkpoint, which holds one)")
    p.add_argument("--checkpoint", type=Path, help='weights: a best.pt-style file {"arch": ..., "model": state dict}; '
                   "a best.pt of `gmgraph search` also records its network's space, sizes and data, so no size "
                   "flag is needed; without --checkpoint the network is freshly initialised")
    for flag, text in (("--num-classes", "outputs of the classifier"), ("--in-channels", "channels of the input"),
                       ("--image-size", "height and width of the input"), ("--width", "channels of the first stage"),
                       ("--cells", "cells per stage")):
        p.add_argument(flag, type=int, help=f"{text} (default {_DEFAULTS[flag[2:].replace('-', '_')]})")
    p.add_argument("--pick", type=int, metavar="N", help="with --run of a Pareto search: export point N of its front "
                   "(supernet weights, BN recalibrated; default --out DIR/front-N.onnx)")
    p.add_argument("--max-latency-ms", type=float, metavar="X", help="with --run of a Pareto search over latency: "
                   "export its most accurate front point predicted within X ms")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--out", type=Path, help="the .onnx file to write (required unless --run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gmgraph.onnx_export import read_metadata
    from gmgraph.run_folder import BEST, FRONT, best_shape, export_run, read_best
    from gmgraph.spaces import arch_to_str, parse_arch

    if args.run is not None:
        _refuse_with_run(args)
        path = export_run(args.run, args.out, opset=args.opset, pick=args.pick, max_latency_ms=args.max_latency_ms)
        meta = read_metadata(path)  # report what the file says it holds
        point = meta.get("pareto_point")
        source = (f"front point {point['index']} ({_values(point['values'])}) with the weights of {args.run / FRONT}"
                  if point else f"the weights of {args.run / BEST}")
        print(f"wrote {path}: {arch_to_str(meta['space'], meta['arch'])}, {source}; {_VERIFIED}")
        return 0
    if args.pick is not None or args.max_latency_ms is not None:
        raise ConfigError("--pick and --max-latency-ms choose a point of a search run's front: give --run DIR")
    if args.out is None:
        raise ConfigError("--out is required (the .onnx file to write), unless --run is given")
    best = read_best(args.checkpoint) if args.checkpoint is not None else None
    stored = best_shape(best, args.checkpoint) if best is not None else None
    shape = _flag_shape(args, args.space or "nb201") if stored is None else _stored_shape(args, stored)
    arch = parse_arch(shape.space, args.arch) if args.arch is not None else None
    arch = _agree(arch, best, args.checkpoint)
    path = _export_space(shape, arch, best, args.checkpoint, args.out, args.opset, stored is not None)
    source = f"the weights of {args.checkpoint}" if best else "freshly initialised weights (pass --checkpoint for trained ones)"
    print(f"wrote {path}: {arch_to_str(shape.space, arch)} with {source}; {_VERIFIED}")
    return 0


def _values(values: dict) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in values.items())


_VERIFIED = "checked with onnx.checker and matched torch in onnxruntime at batch 1 and 7 (max |diff| <= 1e-4)"


def _export_space(shape: Shape, arch: dict, best: dict | None, checkpoint: Path | None, out: Path, opset: int,
                  recorded: bool) -> Path:
    import torch

    from gmgraph.onnx_export import export_onnx
    from gmgraph.run_folder import best_metadata, build_network, load_weights

    with torch.random.fork_rng():  # fresh weights are seeded, without touching the caller's RNG
        torch.manual_seed(0)
        net = build_network(shape, arch)
    if best is not None:
        load_weights(net, best["model"], checkpoint, hint=_OWN_SHAPE if recorded else _OLD_BEST)
    example = torch.zeros(1, shape.in_channels, *shape.image_size)
    metadata = best_metadata(best, shape) if best is not None else {"space": shape.space}
    return export_onnx(net, example, out, opset=opset, arch=arch, metadata=metadata)


_OWN_SHAPE = "the file's weights and its own record of the network disagree: it is damaged or was edited"
_OLD_BEST = ("the file does not record the network's size (a best.pt from before gmgraph stored it): pass the "
             "--width/--cells/--num-classes/--in-channels/--image-size it was trained with (its run's report.json "
             "has them under settings, num_classes and input_shape), or export the run with --run DIR")


def _refuse_with_run(args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--space", args.space), ("--arch", args.arch), ("--checkpoint", args.checkpoint),
                                      ("--num-classes", args.num_classes), ("--in-channels", args.in_channels),
                                      ("--image-size", args.image_size), ("--width", args.width),
                                      ("--cells", args.cells)) if value is not None]
    if given:
        raise ConfigError(f"--run takes the architecture, weights and shapes from the run; drop {', '.join(given)}")


def _stored_shape(args: argparse.Namespace, stored: Shape) -> Shape:
    """The network a best.pt records; a flag may repeat a recorded value, not change it."""
    size = None if args.image_size is None else (args.image_size, args.image_size)
    given = {"space": (args.space, args.space), "num_classes": (args.num_classes, args.num_classes),
             "in_channels": (args.in_channels, args.in_channels), "width": (args.width, args.width),
             "cells": (args.cells, args.cells), "image_size": (args.image_size, size)}  # name -> (flag, value)
    differ = [f"--{name.replace('_', '-')} {flag} (the file has {_flag_value(getattr(stored, name))})"
              for name, (flag, value) in given.items() if flag is not None and value != getattr(stored, name)]
    if differ:
        raise ConfigError(f"{args.checkpoint} records the network it holds weights for; these flags differ from it: "
                          f"{'; '.join(differ)}. Drop them")
    return stored


def _flag_value(value: object) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _flag_shape(args: argparse.Namespace, space: str) -> Shape:
    from gmgraph.config import check_positive_int
    from gmgraph.run_folder import Shape

    values = {}
    for name, default in _DEFAULTS.items():
        value = getattr(args, name)
        value = default if value is None else value
        check_positive_int(f"--{name.replace('_', '-')}", value)
        values[name] = value
    size = values.pop("image_size")
    return Shape(space=space, image_size=(size, size), **values)


def _agree(arch: dict | None, best: dict | None, checkpoint: Path | None) -> dict:
    if arch is None and best is None:
        raise ConfigError("give --arch (an architecture string), --checkpoint (a best.pt with one) or --run DIR")
    if arch is not None and best is not None and dict(best["arch"]) != arch:
        raise ConfigError(f"--arch differs from the architecture stored in {checkpoint} ({best['arch']}); "
                          "drop --arch to use the checkpoint's")
    return dict(arch if arch is not None else best["arch"])
