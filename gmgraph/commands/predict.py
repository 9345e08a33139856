"""``gmgraph predict``: run an exported ONNX model in onnxruntime and report its accuracy.

Inference runs in onnxruntime on numpy arrays; torch is never on that path
(``--data`` borrows gmgraph's dataset loader only to read the test split)::

    $ gmgraph predict model.onnx --data digits
    $ gmgraph predict model.onnx --images photos/     # photos/<class>/*.png, classes sorted
    $ gmgraph predict model.onnx --device cuda        # onnxruntime's CUDA provider (onnxruntime-gpu)

``--images`` prepares pictures as ``gmgraph search --data imagefolder`` does:
RGB scaled to [0, 1], resized to the model's input size, normalised with the
ImageNet mean and std, averaged to grey for one-channel models.

``--device`` picks onnxruntime's execution provider (:func:`choose_providers`):
``cpu`` (the default), ``cuda`` (needs the ``onnxruntime-gpu`` package), or
``auto`` (CUDA when onnxruntime offers it). The first output line names the
provider that ran.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmgraph.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DEVICES = ("cpu", "cuda", "auto")
"""Accepted values of ``--device``."""
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@dataclass(frozen=True)
class Model:
    """An onnxruntime session and what its image input expects.

    Attributes:
        batch: the fixed batch size, or None when the batch is dynamic.
        shape: ``(C, H, W)``; an entry is None where the model accepts any size.
        classes: number of outputs per image, or None when symbolic.
        provider: the execution provider that runs it, e.g. ``CPUExecutionProvider``.
    """

    session: object
    input_name: str
    batch: int | None
    shape: tuple[int | None, int | None, int | None]
    classes: int | None
    metadata: dict[str, str]
    provider: str = _CPU


@dataclass(frozen=True)
class Samples:
    """Inputs with their labels, ready for the model: ``x`` is float32 ``(N, C, H, W)``."""

    x: np.ndarray
    y: np.ndarray
    names: list[str]
    classes: list[str]
    source: str


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="run an exported ONNX model in onnxruntime; print accuracy and predictions",
        description="Classify a dataset's test split or a folder of images with an exported model in onnxruntime.")
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a model written by `gmgraph export`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="a gmgraph dataset whose test split to classify (default digits)")
    source.add_argument("--images", type=Path, metavar="DIR",
                        help="images laid out as DIR/<class>/*.png; classes are the sorted folder names; "
                             "resized to the model's input and normalised as --data imagefolder (ImageNet mean/std)")
    p.add_argument("--data-root", help="folder holding the dataset files (not needed for digits/synthetic)")
    p.add_argument("--batch-size", type=int, default=64, help="images per onnxruntime call (default 64)")
    p.add_argument("--show", type=int, default=10, help="predictions to list (default 10)")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda (onnxruntime's CUDA provider; needs onnxruntime-gpu) or auto "
                        "(cuda when onnxruntime offers it) (default cpu)")
    p.set_defaults(func=_run_predict)


def choose_providers(device: str, available: list[str] | tuple[str, ...]) -> list[str]:
    """The onnxruntime providers for ``--device``, best first, given the ``available`` ones.

    ``cpu``: the CPU only. ``cuda``: CUDA, then the CPU for any node CUDA cannot
    run. ``auto``: as ``cuda`` when ``available`` lists CUDA, else as ``cpu``.

    Raises:
        ConfigError: an unknown device, or ``cuda`` where onnxruntime has no CUDA
            provider (the plain ``onnxruntime`` package is CPU-only).

    Example:
        >>> choose_providers("auto", ["CPUExecutionProvider"])
        ['CPUExecutionProvider']
        >>> choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
        ['CUDAExecutionProvider', 'CPUExecutionProvider']
        >>> choose_providers("cuda", ["AzureExecutionProvider", "CPUExecutionProvider"])
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: --device cuda: this onnxruntime has no CUDAExecutionProvider ...; install onnxruntime-gpu ...
    """
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r} is not accepted; choose one of {', '.join(DEVICES)}")
    has_cuda = _CUDA in available
    if device == "cuda" and not has_cuda:
        raise ConfigError(f"--device cuda: this onnxruntime has no {_CUDA} (it offers {', '.join(available)}); "
                          "install onnxruntime-gpu in place of onnxruntime, or use --device cpu")
    if device == "cpu" or not has_cuda:
        return [_CPU]
    return [_CUDA, _CPU]


def load_model(path: str | Path, device: str = "cpu") -> Model:
    """Open an ONNX image classifier in onnxruntime, on ``device`` (see :func:`choose_providers`).

    Raises:
        ConfigError: no such file, onnxruntime cannot load it, a bad ``device``,
            or ``cuda`` where onnxruntime has no CUDA provider or could not start it.
        DataError: its input is not one ``(batch, C, H, W)`` image tensor.

    Example:
        >>> load_model("missing.onnx")
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: no model file at missing.onnx
    """
    import onnxruntime as ort

    path = Path(path)
    providers = choose_providers(device, ort.get_available_providers())
    if not path.is_file():
        raise ConfigError(f"no model file at {path}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: keep the table readable
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ConfigError(f"onnxruntime cannot load {path}: {str(exc).strip().splitlines()[0]}") from exc
    # onnxruntime falls back to the CPU, with only a log line, when the CUDA libraries fail to load.
    provider = session.get_providers()[0]
    if device == "cuda" and provider != _CUDA:
        raise ConfigError(f"--device cuda: onnxruntime could not start {_CUDA} (are CUDA and cuDNN installed "
                          "as onnxruntime-gpu requires?); use --device cpu")
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        described = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise DataError(f"{path} must take one (batch, C, H, W) image input; it takes {described}")
    batch, *shape = (d if isinstance(d, int) else None for d in inputs[0].shape)
    classes = session.get_outputs()[0].shape[-1]
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return Model(session, inputs[0].name, batch, tuple(shape), classes if isinstance(classes, int) else None, meta,
                 provider)


def predict(model: Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of ``model`` for images ``x`` ``(N, C, H, W)``, computed in batches.

    A model exported with a fixed batch gets exactly that many images per call
    (the last call padded with zeros, whose outputs are dropped).
    """
    size = model.batch or batch_size
    out = []
    for start in range(0, len(x), size):
        chunk = x[start:start + size]
        n = len(chunk)
        if model.batch is not None and n < size:
            chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(model.session.run(None, {model.input_name: chunk})[0][:n])
    return np.concatenate(out)


def _run_predict(args: argparse.Namespace) -> int:
    if args.batch_size <= 0 or args.show < 0:
        raise ConfigError("--batch-size must be positive and --show 0 or more")
    model = load_model(args.model, args.device)
    if args.images is not None:
        samples = _read_images(args.images, model)
    else:
        samples = _read_dataset(args.data or "digits", args.data_root)
    _check_fit(model, samples, args.model)
    logits = predict(model, samples.x, args.batch_size)
    print(_describe(args.model, model))
    print(_table(samples, logits, args.show))
    hits = int((logits.argmax(1) == samples.y).sum())
    print(f"accuracy: {hits / len(samples.y):.4f} ({hits}/{len(samples.y)} {samples.source})")
    return 0


def _read_dataset(name: str, root: str | None) -> Samples:
    from gmgraph import data

    loaders = data.load(name, root=root, batch_size=512)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in loaders.test))
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    classes = [str(k) for k in range(data.info(loaders).num_classes)]
    return Samples(x, y, [f"test[{i}]" for i in range(len(y))], classes, f"test images of {name}")


def _read_images(folder: Path, model: Model) -> Samples:
    if not folder.is_dir():
        raise DataError(f"--images {folder} is not a folder; expected DIR/<class>/*.png")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((folder / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no images under {folder}: expected {folder}/<class>/*.png (one folder per class)")
    x = [_read_image(f, model.shape) for f, _ in files]
    if len({a.shape for a in x}) > 1:
        raise DataError(f"images under {folder} differ in size and the model accepts any size: resize them first")
    names = [str(f.relative_to(folder)) for f, _ in files]
    return Samples(np.stack(x), np.array([label for _, label in files]), names, classes, f"images in {folder}")


def _read_image(path: Path, shape: tuple[int | None, int | None, int | None]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3, None):
        raise DataError(f"the model takes {channels}-channel input; --images handles 1 or 3 channels")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if height is not None and width is not None and img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            rgb = np.asarray(img, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    x = ((rgb - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)
    return x.mean(0, keepdims=True) if channels == 1 else x


def _check_fit(model: Model, samples: Samples, path: Path) -> None:
    got = samples.x.shape[1:]
    if any(want is not None and want != have for want, have in zip(model.shape, got)):
        want = tuple("any" if d is None else d for d in model.shape)
        raise DataError(f"{path} expects inputs of shape {want} but the {samples.source} have shape {got}; "
                        "export a model built for this data (gmgraph export --in-channels/--image-size)")
    if model.classes is not None and model.classes != len(samples.classes):
        raise DataError(f"{path} predicts {model.classes} classes but the {samples.source} have "
                        f"{len(samples.classes)} ({', '.join(samples.classes[:12])})")


def _describe(path: Path, model: Model) -> str:
    line = f"model {path}: input {tuple('batch' if d is None else d for d in (model.batch, *model.shape))}"
    if "gmgraph.arch" in model.metadata:
        from gmgraph.spaces import arch_to_str

        line += "; arch " + arch_to_str(model.metadata.get("gmgraph.space"), json.loads(model.metadata["gmgraph.arch"]))
    return line + f"; provider: {model.provider}"


def _table(samples: Samples, logits: np.ndarray, show: int) -> str:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    confidence = (shifted / shifted.sum(1, keepdims=True)).max(1)
    predicted = logits.argmax(1)
    rows = [("item", "label", "predicted", "confidence")]
    for i in range(min(show, len(samples.y))):
        rows.append((samples.names[i], samples.classes[samples.y[i]], _name(samples.classes, predicted[i]),
                     f"{confidence[i]:.3f}"))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _name(classes: list[str], index: int) -> str:
    # a model with more outputs than known classes may predict an index with no name
    return classes[index] if index < len(classes) else str(index)
