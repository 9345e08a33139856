"""Run an exported ONNX image model in onnxruntime, from Python: the library behind ``gmgraph predict``.

Inference runs in onnxruntime on numpy arrays; torch is never on that path
(:func:`read_dataset` borrows gmgraph's dataset loader only to read a test split)::

    from gmgraph.inference import choose_preprocessing, load_model, predict, read_images

    model = load_model("runs/gm/best.onnx")                    # device="cuda" or "auto" for onnxruntime-gpu
    samples = read_images("photos/", model, choose_preprocessing(model))   # photos/<class>/*.png
    logits = predict(model, samples.x)                         # (N, classes) numpy
    print((logits.argmax(1) == samples.y).mean())

Pictures are prepared as the model's training data was, read from the file's
metadata (:mod:`gmgraph.preprocessing`); :func:`choose_preprocessing` says what
applies, or overrides it.

A model predicts for its run's task (:func:`model_task`): class logits
(classification), values (regression) or per-pixel class logits (segmentation);
:func:`regression_scores` and :func:`segmentation_scores` score them against
targets in numpy, and :func:`read_pictures` reads pictures that have no class
folders (a regression or segmentation model's inputs).

Errors name a setting by its Python parameter (``device 'tpu' is not accepted``);
a caller that spells it otherwise passes ``option`` (the CLI passes ``--device``,
``--normalize``, ``--images``), so its messages name its own flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmgraph.errors import ConfigError, DataError
from gmgraph.onnx_session import open_session
from gmgraph.preprocessing import (
    PREPROCESSING_KEY,
    Preprocessing,
    imagenet,
    prepare_image,
    preprocessing_from,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEVICES = ("cpu", "cuda", "auto")
"""Accepted values of ``device``."""
TASKS = ("classification", "regression", "segmentation")
"""The tasks whose models predict from images (what :func:`model_task` accepts)."""
TASK_KEY = "gmgraph.task"
"""The metadata key of a model's task, where its exporter recorded one."""
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


@dataclass(frozen=True)
class Model:
    """An onnxruntime session and what its image input expects.

    Attributes:
        batch: the fixed batch size, or None when the batch is dynamic.
        shape: ``(C, H, W)``; an entry is None where the model accepts any size.
        classes: number of outputs per image, or None when symbolic.
        metadata: the ONNX file's metadata (``gmgraph.arch``, ``gmgraph.preprocessing``, ...), as strings.
        provider: the execution provider that runs it, e.g. ``CPUExecutionProvider``.
        outputs: the first output's shape past the batch (None where symbolic): ``(classes,)`` for a
            classifier, ``(1,)`` for a regressor of one value, ``(classes, H, W)`` for segmentation.
    """

    session: object
    input_name: str
    batch: int | None
    shape: tuple[int | None, int | None, int | None]
    classes: int | None
    metadata: dict[str, str]
    provider: str = _CPU
    outputs: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class Samples:
    """Inputs with their targets, ready for the model: ``x`` is float32 ``(N, C, H, W)``.

    ``y``: class indices ``(N,)``, regression targets, or per-pixel classes ``(N, H, W)``; None where
    the targets are unknown (:func:`read_pictures`). ``classes``: the class names ([] for values).
    """

    x: np.ndarray
    y: np.ndarray | None
    names: list[str]
    classes: list[str]
    source: str


def choose_providers(device: str, available: list[str] | tuple[str, ...], *, option: str = "device") -> list[str]:
    """The onnxruntime providers for ``device``, best first, given the ``available`` ones.

    ``cpu``: the CPU only. ``cuda``: CUDA, then the CPU for any node CUDA cannot
    run. ``auto``: as ``cuda`` when ``available`` lists CUDA, else as ``cpu``.
    ``option`` is how errors name the setting.

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
        gmgraph.errors.ConfigError: device cuda: this onnxruntime has no CUDAExecutionProvider ...; install onnxruntime-gpu ...
    """
    if device not in DEVICES:
        raise ConfigError(f"{option} {device!r} is not accepted; choose one of {', '.join(DEVICES)}")
    has_cuda = _CUDA in available
    if device == "cuda" and not has_cuda:
        raise ConfigError(f"{option} cuda: this onnxruntime has no {_CUDA} (it offers {', '.join(available)}); "
                          f"install onnxruntime-gpu in place of onnxruntime, or use {option} cpu")
    if device == "cpu" or not has_cuda:
        return [_CPU]
    return [_CUDA, _CPU]


def load_model(path: str | Path, device: str = "cpu", *, option: str = "device") -> Model:
    """Open an ONNX image classifier in onnxruntime, on ``device`` (see :func:`choose_providers`).

    ``path`` is a file written by ``gmgraph export`` or a search's ``best.onnx``.

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
    providers = choose_providers(device, ort.get_available_providers(), option=option)
    if not path.is_file():
        raise ConfigError(f"no model file at {path}")
    session = open_session(path, providers=providers, cannot_load=f"onnxruntime cannot load {path}", error=ConfigError)
    # onnxruntime falls back to the CPU, with only a log line, when the CUDA libraries fail to load.
    provider = session.get_providers()[0]
    if device == "cuda" and provider != _CUDA:
        raise ConfigError(f"{option} cuda: onnxruntime could not start {_CUDA} (are CUDA and cuDNN installed "
                          f"as onnxruntime-gpu requires?); use {option} cpu")
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        described = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise DataError(f"{path} must take one (batch, C, H, W) image input; it takes {described}")
    batch, *shape = (d if isinstance(d, int) else None for d in inputs[0].shape)
    out = tuple(d if isinstance(d, int) else None for d in session.get_outputs()[0].shape[1:])
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return Model(session, inputs[0].name, batch, tuple(shape), out[-1] if out else None, meta, provider, out)


def predict(model: Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits of ``model`` for images ``x`` ``(N, C, H, W)`` float32, computed in batches.

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


def choose_preprocessing(model: Model, normalize: str | None = None, *, option: str = "normalize") -> Preprocessing:
    """What :func:`read_images` applies to pictures for ``model``; ``option`` is how errors name ``normalize``.

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
        'preprocessing: normalize 0.5,0.25: grey, full scale -> [0, 1], mean 0.5 std 0.25'
    """
    if normalize is None:
        raw = model.metadata.get(PREPROCESSING_KEY)
        if raw is None:
            return imagenet("ImageNet mean/std, the default for a model without preprocessing metadata (an older "
                            "file, or one exported without its data, e.g. by `gmgraph export --space`; choose with "
                            f"{option})")
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"the model's preprocessing metadata is not JSON ({exc}); choose with {option}") from None
        name = spec.get("dataset") if isinstance(spec, dict) else None
        return preprocessing_from(spec, f"{name or 'its data'}, from the model's metadata")
    from gmgraph import data

    key, source = normalize.strip().lower(), f"{option} {normalize}"
    own = "grey" if model.shape[0] == 1 else "rgb"  # the model's colour, for numbers without one
    if key == "imagenet":
        return imagenet(source)
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
        raise ConfigError(f"{option} {normalize!r} is not accepted; give imagenet, none, a dataset "
                          f"({', '.join(data.DATASETS)}) or MEAN,STD in [0, 1] units (one pair, or three means "
                          "then three positive stds for RGB)")
    half = len(values) // 2
    return Preprocessing(own if half == 1 else "rgb", (0.0, 1.0), values[:half], values[half:], source)


def read_images(folder: str | Path, model: Model, prepared: Preprocessing, *, option: str = "") -> Samples:
    """The pictures under ``folder/<class>/`` as ``model``'s inputs; classes are the sorted folder names.

    ``option`` (e.g. ``--images``) goes before the folder in errors.

    Raises:
        DataError: ``folder`` is not a folder or holds no pictures, a picture is unreadable, the model
            takes other than 1 or 3 channels, or pictures differ in size for a model that accepts any.
    """
    folder = Path(folder)
    named = f"{option} {folder}".strip()
    if not folder.is_dir():
        raise DataError(f"{named} is not a folder; expected DIR/<class>/*.png")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((folder / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"no images under {folder}: expected {folder}/<class>/*.png (one folder per class)")
    x = _prepare_all([f for f, _ in files], folder, model, prepared, option or "read_images")
    names = [str(f.relative_to(folder)) for f, _ in files]
    return Samples(x, np.array([label for _, label in files]), names, classes, f"images in {folder}")


def read_pictures(folder: str | Path, model: Model, prepared: Preprocessing, *, option: str = "") -> Samples:
    """Every picture under ``folder`` (at any depth, sorted by path) as ``model``'s inputs, without
    targets (``y`` None): what a regression or segmentation model predicts for.

    Raises:
        DataError: as :func:`read_images`.
    """
    folder = Path(folder)
    named = f"{option} {folder}".strip()
    if not folder.is_dir():
        raise DataError(f"{named} is not a folder of pictures")
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images under {folder} ({', '.join(IMAGE_SUFFIXES)})")
    x = _prepare_all(files, folder, model, prepared, option or "read_pictures")
    return Samples(x, None, [str(f.relative_to(folder)) for f in files], [], f"images in {folder}")


def _prepare_all(files: list[Path], folder: Path, model: Model, prepared: Preprocessing, option: str) -> np.ndarray:
    if model.shape[0] not in (1, 3, None):
        raise DataError(f"the model takes {model.shape[0]}-channel input; {option} handles 1 or 3 channels")
    x = [prepare_image(f, model.shape, prepared) for f in files]
    if len({a.shape for a in x}) > 1:
        raise DataError(f"images under {folder} differ in size and the model accepts any size: resize them first")
    return np.stack(x)


def read_dataset(name: str, root: str | Path | None = None, image_size: int | None = None) -> Samples:
    """The test split of gmgraph dataset ``name``, prepared by :func:`gmgraph.data.load` as in training,
    with its targets; ``name`` may be a user's ``module:function`` (``--data``), called with seed 0."""
    from gmgraph import data
    from gmgraph.config import is_reference
    from gmgraph.task import split_batch

    if is_reference(name):
        from gmgraph.data.user_data import load_user_data

        loaders, described = load_user_data(name, batch_size=512, seed=0)
    else:
        loaders = data.load(name, root=root, batch_size=512, image_size=image_size)
        described = data.info(loaders)
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in map(split_batch, loaders.test)))
    x, y = np.concatenate(xs).astype(np.float32), np.concatenate(ys)
    classes = [str(k) for k in range(described.num_classes)]
    return Samples(x, y, [f"test[{i}]" for i in range(len(y))], classes, f"test images of {name}")


def model_task(model: Model, path: str | Path, task: str | None = None, data: str | None = None, *,
               option: str = "task") -> tuple[str, str]:
    """``(task, where it was read)``: what ``model`` (read from ``path``) predicts.

    In order: ``task`` when given; the model's metadata (``gmgraph.task``); the run folder the file
    lies in (its ``report.json``: the run's ``--task``, else its data's own task); the data the model
    records (``gmgraph.data``), else ``data``, by its own task (digits16-seg: segmentation);
    else classification. ``option`` is how errors name ``task``.

    Raises:
        ConfigError: a task that is not predicted from images (not one of :data:`TASKS`).

    Example:
        >>> model_task(Model(None, "input", None, (1, 16, 16), 16, {"gmgraph.data": "digits16-seg"}), "m.onnx")
        ('segmentation', 'the data it records, digits16-seg')
        >>> model_task(Model(None, "input", None, (1, 8, 8), 10, {}), "m.onnx", "ranking")
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: task 'ranking' (task) is not one gmgraph predicts from images: classification, ...
    """
    name, source = _told_task(model, Path(path), task, data, option)
    if name not in TASKS:
        raise ConfigError(f"task {name!r} ({source}) is not one gmgraph predicts from images: "
                          f"{', '.join(TASKS[:-1])} or {TASKS[-1]}")
    return name, source


def _told_task(model: Model, path: Path, task: str | None, data: str | None, option: str) -> tuple[str, str]:
    from gmgraph.registry import task_of

    if task is not None:
        return task, option
    if TASK_KEY in model.metadata:
        return model.metadata[TASK_KEY], "the model's metadata"
    report = path.parent / "report.json"
    settings = _run_settings(report)
    if settings is not None:
        train = settings.get("train") if isinstance(settings.get("train"), dict) else {}
        return task_of(train.get("task"), settings.get("data")), f"the run's {report}"
    for told, what in ((model.metadata.get("gmgraph.data"), "the data it records"), (data, "the data")):
        if told not in (None, "None", ""):
            return task_of(None, told), f"{what}, {told}"
    return "classification", "the default"


def _run_settings(report: Path) -> dict | None:
    """The settings of the run whose ``report.json`` this is; None when there is no readable one."""
    try:
        settings = json.loads(report.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return None
    return settings if isinstance(settings, dict) else None


def trained_image_size(model: Model, name: str) -> int | None:
    """The square size the model's training images of dataset ``name`` were resized to, from its
    preprocessing metadata (``gmgraph search --image-size``); None for the data's own size, another
    dataset or no record. Pass it to :func:`read_dataset`.
    """
    from gmgraph.registry import dataset_key

    try:
        spec = json.loads(model.metadata.get(PREPROCESSING_KEY, "null"))
    except json.JSONDecodeError:
        return None  # reading a dataset does not need it otherwise: no reason to fail here
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


def check_fit(model: Model, samples: Samples, path: str | Path, task: str = "classification") -> None:
    """Raise DataError unless ``samples`` have the input shape of ``model`` (read from ``path``) and its
    outputs fit ``task``: a class count, a value per target, or per-pixel classes."""
    got = samples.x.shape[1:]
    if any(want is not None and want != have for want, have in zip(model.shape, got)):
        want = tuple("any" if d is None else d for d in model.shape)
        raise DataError(f"{path} expects inputs of shape {want} but the {samples.source} have shape {got}; "
                        "export a model built for this data (gmgraph export --in-channels/--image-size)")
    if task == "segmentation":
        _check_pixels(model, samples, path)
    elif task == "regression":
        _check_values(model, samples, path)
    elif model.classes is not None and model.classes != len(samples.classes):
        raise DataError(f"{path} predicts {model.classes} classes but the {samples.source} have "
                        f"{len(samples.classes)} ({', '.join(samples.classes[:12])})")


def _check_pixels(model: Model, samples: Samples, path: str | Path) -> None:
    if len(model.outputs) != 3:
        raise DataError(f"{path} outputs shape {_shape(model.outputs)} per image; a segmentation model outputs "
                        "(classes, height, width): is it a segmentation model?")
    classes = model.outputs[0]
    if classes is not None and samples.classes and classes != len(samples.classes):
        raise DataError(f"{path} predicts {classes} classes per pixel but the {samples.source} have "
                        f"{len(samples.classes)}")


def _check_values(model: Model, samples: Samples, path: str | Path) -> None:
    if samples.y is None or any(d is None for d in model.outputs):
        return
    per_sample = int(np.prod(model.outputs)) if model.outputs else 1
    if per_sample != samples.y[0].size:
        raise DataError(f"{path} outputs {per_sample} value(s) per image but the {samples.source} have "
                        f"{samples.y[0].size} target value(s) each")


def _shape(dims: tuple) -> str:
    return str(tuple("any" if d is None else d for d in dims))


def regression_scores(values: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``{"mse", "r2"}`` of ``values`` against ``targets`` (as many numbers each), R² as
    :mod:`gmgraph.task` computes it (1 - SSE / SST; constant targets: 1 if all are hit, else 0).

    >>> {k: round(v, 6) for k, v in regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])).items()}
    {'mse': 0.333333, 'r2': 0.785714}
    """
    v, y = np.asarray(values, np.float64).reshape(-1), np.asarray(targets, np.float64).reshape(-1)
    sse, sst = float(np.square(v - y).sum()), float(np.square(y - y.mean()).sum())
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return {"mse": sse / len(y), "r2": r2}


def segmentation_scores(masks: np.ndarray, targets: np.ndarray, classes: int) -> dict[str, float]:
    """``{"miou", "pixel_accuracy"}`` of predicted class ``masks`` against ``targets`` (same shape): mean
    IoU over the classes that occur in either, as :mod:`gmgraph.task` computes it.

    >>> segmentation_scores(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]]), 2)
    {'miou': 0.5833333333333333, 'pixel_accuracy': 0.75}
    """
    m, y = np.asarray(masks, np.int64).reshape(-1), np.asarray(targets, np.int64).reshape(-1)
    matrix = np.bincount(y * classes + m, minlength=classes * classes).reshape(classes, classes)
    hits = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - hits
    present = union > 0
    miou = float((hits[present] / union[present]).mean()) if present.any() else 0.0
    return {"miou": miou, "pixel_accuracy": float(hits.sum() / max(y.size, 1))}
