"""``gmgraph predict``: run an exported ONNX model in onnxruntime and report its accuracy.

Inference runs in onnxruntime on numpy arrays; torch is never on that path
(``--data`` borrows gmgraph's dataset loader only to read the test split)::

    $ gmgraph predict model.onnx --data digits
    $ gmgraph predict model.onnx --images photos/     # photos/<class>/*.png, classes sorted
    $ gmgraph predict model.onnx --images photos/ --normalize imagenet
    $ gmgraph predict model.onnx --device cuda        # onnxruntime's CUDA provider (onnxruntime-gpu)

``--images`` prepares pictures as the model's training data was prepared,
read from the file's metadata (:func:`gmgraph.data.preprocessing`, written by
``gmgraph export --run`` and a search's best.onnx): a picture is made grey or
RGB like the dataset's images (RGB to grey: mean of R, G, B), its black ..
full scale (255, or 65535 in a 16-bit PNG) mapped onto the dataset's value
range (digits: 0..16, others: 0..1), resized (bilinear) to the model's input,
normalised with the dataset's mean and std, then repeated or averaged to the
model's channels. A file without that metadata (older, or from ``gmgraph
export --space``, which does not know the data) gets ImageNet's mean and std
on RGB in [0, 1], averaged to grey for one-channel models, as before; the
output says so. ``--normalize`` overrides either (:func:`choose_preprocessing`).
The line after the model's names the preprocessing used.

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

from gmgraph.commands import HELP
from gmgraph.errors import ConfigError, DataError
from gmgraph.onnx_session import open_session

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # how Pillow opens 16-bit grey PNGs
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
class Preprocessing:
    """How ``--images`` turns a picture file into a model input (see :func:`gmgraph.data.preprocessing`).

    In order: the picture is made ``colour`` (RGB to grey: mean of R, G, B; grey to
    RGB: repeated); its black .. full scale is mapped linearly onto ``range``;
    it is resized (bilinear) to the model's input size, or to ``size`` for a
    model that accepts any; normalised as ``(value - mean) / std`` per channel;
    and its channels made the model's (grey repeated, RGB averaged).

    Attributes:
        colour: ``"grey"`` or ``"rgb"``.
        range: ``(low, high)``.
        mean, std: one value for every channel, or one per ``colour`` channel.
        source: what chose it, for the output line.
        size: ``(height, width)``, or None to keep the picture's size.
    """

    colour: str
    range: tuple[float, float]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    size: tuple[int, int] | None = None

    def describe(self) -> str:
        """One line, e.g. ``preprocessing: digits (...): grey, full scale -> [0, 16], mean 4.885 std 6.016``."""
        low, high = self.range
        return (f"preprocessing: {self.source}: {self.colour}, full scale -> [{low:g}, {high:g}], "
                f"mean {_numbers(self.mean)} std {_numbers(self.std)}")


def _numbers(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.4g}" for v in values)


def _imagenet(source: str) -> Preprocessing:
    return Preprocessing("rgb", (0.0, 1.0), _IMAGENET_MEAN, _IMAGENET_STD, source)


_NO_METADATA = ("ImageNet mean/std, the default for a model without preprocessing metadata (an older file, or "
                "one exported without its data, e.g. by `gmgraph export --space`; choose with --normalize)")


def preprocessing_from(spec: object, source: str) -> Preprocessing:
    """A :class:`Preprocessing` from a :func:`gmgraph.data.preprocessing` dict, checked.

    Raises:
        DataError: ``spec`` is not such a dict (naming what is wrong).

    Example:
        >>> preprocessing_from({"colour": "grey", "range": [0, 16], "mean": [4.9], "std": [6.0]}, "digits").describe()
        'preprocessing: digits: grey, full scale -> [0, 16], mean 4.9 std 6'
        >>> preprocessing_from({"colour": "rgb", "range": [0, 1], "mean": [0.5, 0.5], "std": [1]}, "x")
        Traceback (most recent call last):
        ...
        gmgraph.errors.DataError: preprocessing of x: mean and std need 1 or 3 values (one per rgb channel), got 2 and 1
    """
    def bad(why: str) -> DataError:
        return DataError(f"preprocessing of {source}: {why}")

    if not isinstance(spec, dict):
        raise bad(f"expected a JSON object, got {type(spec).__name__}")
    colour = spec.get("colour")
    if colour not in ("grey", "rgb"):
        raise bad(f"colour must be 'grey' or 'rgb', got {colour!r}")

    def numbers(key: str) -> tuple[float, ...]:
        value = spec.get(key)
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                  and np.isfinite(v) for v in value):
            raise bad(f"{key} must be a list of numbers, got {value!r}")
        return tuple(float(v) for v in value)

    value_range, mean, std = numbers("range"), numbers("mean"), numbers("std")
    if len(value_range) != 2 or not value_range[0] < value_range[1]:
        raise bad(f"range must be [low, high] with low < high, got {list(value_range)}")
    k = 1 if colour == "grey" else 3
    if len(mean) not in {1, k} or len(std) not in {1, k}:
        raise bad(f"mean and std need 1 or {k} values (one per {colour} channel), got {len(mean)} and {len(std)}")
    if not all(v > 0 for v in std):
        raise bad(f"std must be positive, got {list(std)}")
    size = spec.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise bad(f"size must be [height, width] or null, got {size!r}")
    return Preprocessing(colour, value_range, mean, std, source, None if size is None else tuple(size))


def choose_preprocessing(model: Model, normalize: str | None = None) -> Preprocessing:
    """What ``--images`` applies to pictures for ``model``; ``normalize`` is ``--normalize``.

    ``normalize``: None reads the model's metadata (ImageNet's mean and std, with a
    note, where it has none); ``imagenet``; ``none`` ([0, 1], no mean/std);
    a gmgraph dataset name (:func:`gmgraph.data.preprocessing`); or numbers
    ``MEAN,STD`` in [0, 1] units (one pair for every channel, or three means
    then three stds for RGB).

    Raises:
        ConfigError: ``normalize`` is none of these.
        DataError: the model's preprocessing metadata is unreadable.

    Example:
        >>> model = Model(None, "input", None, (1, 8, 8), 10, {})
        >>> choose_preprocessing(model).source.startswith("ImageNet mean/std, the default for a model without")
        True
        >>> choose_preprocessing(model, "0.5,0.25").describe()
        'preprocessing: --normalize 0.5,0.25: grey, full scale -> [0, 1], mean 0.5 std 0.25'
    """
    if normalize is None:
        from gmgraph.passes.onnx import PREPROCESSING_KEY

        raw = model.metadata.get(PREPROCESSING_KEY)
        if raw is None:
            return _imagenet(_NO_METADATA)
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"the model's preprocessing metadata is not JSON ({exc}); choose with --normalize") from None
        name = spec.get("dataset") if isinstance(spec, dict) else None
        return preprocessing_from(spec, f"{name or 'its data'}, from the model's metadata")
    from gmgraph import data

    key, source = normalize.strip().lower(), f"--normalize {normalize}"
    own = "grey" if model.shape[0] == 1 else "rgb"  # the model's colour, for numbers without one
    if key == "imagenet":
        return _imagenet(source)
    if key == "none":
        return Preprocessing(own, (0.0, 1.0), (0.0,), (1.0,), source)
    if key.replace("_", "-") in data.DATASETS:
        shape = model.shape if all(d is not None for d in model.shape) else (3, 32, 32)
        return preprocessing_from(data.preprocessing(key, shape=shape), source)
    try:
        values = tuple(float(v) for v in key.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 6) or not all(np.isfinite(values)) or not all(v > 0 for v in values[len(values) // 2:]):
        raise ConfigError(f"--normalize {normalize!r} is not accepted; give imagenet, none, a dataset "
                          f"({', '.join(data.DATASETS)}) or MEAN,STD in [0, 1] units (one pair, or three means "
                          "then three positive stds for RGB)")
    half = len(values) // 2
    return Preprocessing(own if half == 1 else "rgb", (0.0, 1.0), values[:half], values[half:], source)


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
        "predict", help=HELP["predict"],
        description="Classify a dataset's test split or a folder of images with an exported model in onnxruntime.")
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="a model written by `gmgraph export`")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="a gmgraph dataset whose test split to classify (default digits)")
    source.add_argument("--images", type=Path, metavar="DIR",
                        help="images laid out as DIR/<class>/*.png; classes are the sorted folder names; "
                             "prepared as the model's training data (its metadata), resized to the model's input")
    p.add_argument("--normalize", metavar="HOW",
                   help="--images only: override the model's preprocessing with imagenet, none ([0, 1] only), "
                        "a dataset name (digits, cifar10, ...) or MEAN,STD in [0, 1] units (one pair, or three "
                        "means then three stds)")
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
    session = open_session(path, providers=providers, cannot_load=f"onnxruntime cannot load {path}", error=ConfigError)
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
    if args.normalize is not None and args.images is None:
        raise ConfigError("--normalize applies to --images; --data uses the dataset's own preprocessing")
    model = load_model(args.model, args.device)
    if args.images is not None:
        prepared = choose_preprocessing(model, args.normalize)
        samples = _read_images(args.images, model, prepared)
        how = prepared.describe()
    else:
        name = args.data or "digits"
        size = _trained_image_size(model, name)
        samples = _read_dataset(name, args.data_root, size)
        how = f"preprocessing: gmgraph.data.load({name!r}{'' if size is None else f', image_size={size}'}), as in training"
    _check_fit(model, samples, args.model)
    logits = predict(model, samples.x, args.batch_size)
    print(_describe(args.model, model))
    print(how)
    print(_table(samples, logits, args.show))
    hits = int((logits.argmax(1) == samples.y).sum())
    print(f"accuracy: {hits / len(samples.y):.4f} ({hits}/{len(samples.y)} {samples.source})")
    return 0


def _trained_image_size(model: Model, name: str) -> int | None:
    """The square size the model's training images of dataset ``name`` were resized to, from its
    preprocessing metadata (``gmgraph search --image-size``); None for the data's own size, another
    dataset or no record.
    """
    from gmgraph.passes.onnx import PREPROCESSING_KEY
    from gmgraph.registry import dataset_key

    try:
        spec = json.loads(model.metadata.get(PREPROCESSING_KEY, "null"))
    except json.JSONDecodeError:
        return None  # --data does not read it otherwise: no reason to fail here
    key = dataset_key(name)
    if not isinstance(spec, dict) or key in (None, "synthetic") or spec.get("dataset") != key:
        return None  # synthetic images are made at their size and take no image_size
    size = spec.get("size")
    if not (isinstance(size, list) and len(size) == 2 and size[0] == size[1] and isinstance(size[0], int)):
        return None
    from gmgraph import data

    try:
        native = data.preprocessing(key)["size"]  # reads no dataset file
    except DataError:
        return None
    return None if native == size else size[0]


def _read_dataset(name: str, root: str | None, image_size: int | None = None) -> Samples:
    from gmgraph import data

    loaders = data.load(name, root=root, batch_size=512, image_size=image_size)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in loaders.test))
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    classes = [str(k) for k in range(data.info(loaders).num_classes)]
    return Samples(x, y, [f"test[{i}]" for i in range(len(y))], classes, f"test images of {name}")


def _read_images(folder: Path, model: Model, prepared: Preprocessing) -> Samples:
    if not folder.is_dir():
        raise DataError(f"--images {folder} is not a folder; expected DIR/<class>/*.png")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((folder / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no images under {folder}: expected {folder}/<class>/*.png (one folder per class)")
    x = [_read_image(f, model.shape, prepared) for f, _ in files]
    if len({a.shape for a in x}) > 1:
        raise DataError(f"images under {folder} differ in size and the model accepts any size: resize them first")
    names = [str(f.relative_to(folder)) for f, _ in files]
    return Samples(np.stack(x), np.array([label for _, label in files]), names, classes, f"images in {folder}")


def _read_image(path: Path, shape: tuple[int | None, int | None, int | None], prepared: Preprocessing) -> np.ndarray:
    """One picture as the model's ``(C, H, W)`` float32 input, prepared as :class:`Preprocessing` says."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3, None):
        raise DataError(f"the model takes {channels}-channel input; --images handles 1 or 3 channels")
    try:
        with Image.open(path) as img:
            unit = _unit_pixels(img, prepared.colour)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    low, high = prepared.range
    values = unit * (high - low) + low  # float64 (H, W, 1 or 3)
    size = (height, width) if height is not None and width is not None else prepared.size
    if size is not None and values.shape[:2] != tuple(size):
        values = np.stack([np.asarray(Image.fromarray(values[..., c].astype(np.float32)).resize(
            (size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float64) for c in range(values.shape[2])], axis=2)
    x = ((values - np.asarray(prepared.mean)) / np.asarray(prepared.std)).transpose(2, 0, 1)
    if channels is not None and x.shape[0] != channels:
        x = np.repeat(x, channels, axis=0) if x.shape[0] == 1 else x.mean(0, keepdims=True)
    return x.astype(np.float32)


def _unit_pixels(img, colour: str) -> np.ndarray:
    """A picture as float64 ``(H, W, 1 or 3)``, its black .. full scale as 0 .. 1, made ``colour``.

    8-bit pictures are divided by 255 and 16-bit grey PNGs by 65535; any other
    mode goes through Pillow's RGB conversion.
    """
    if img.mode in _SIXTEEN_BIT:
        unit = np.asarray(img, dtype=np.float64)[..., None] / 65535.0
    elif colour == "grey" and img.mode in ("L", "LA", "1"):
        unit = np.asarray(img.convert("L"), dtype=np.float64)[..., None] / 255.0
    else:
        unit = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    if colour == "grey" and unit.shape[2] == 3:
        return unit.mean(2, keepdims=True)
    if colour == "rgb" and unit.shape[2] == 1:
        return np.repeat(unit, 3, axis=2)
    return unit


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
