"""How a picture becomes a network's input: the record gmgraph writes, and the code that reads and applies it.

Both sides of the format live here. :func:`gmgraph.data.preprocessing` computes a
dataset's numbers and returns them as a :func:`record`; ``gmgraph export`` stores
that record in the ONNX file's metadata under :data:`PREPROCESSING_KEY`;
:func:`preprocessing_from` reads it back (checked) as a :class:`Preprocessing`,
and :func:`prepare_image` applies it to a picture file. numpy only (Pillow to
read pictures), no torch::

    >>> spec = record("digits", "grey", (0, 16), [4.9], [6.0], (8, 8), 1)
    >>> preprocessing_from(spec, "digits").describe()
    'preprocessing: digits: grey, full scale -> [0, 16], mean 4.9 std 6'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmgraph.errors import DataError

PREPROCESSING_KEY = "gmgraph.preprocessing"
"""The ONNX metadata key holding a :func:`record` as JSON."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel mean and std on RGB in [0, 1]: imagefolder's normalisation and the default
for a model that records no preprocessing."""
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # how Pillow opens 16-bit grey PNGs


def record(dataset: str, colour: str | None, value_range: Sequence[float], mean: Sequence[float],
           std: Sequence[float], size: Sequence[int] | None, channels: int) -> dict:
    """The JSON-ready preprocessing record (the entries :func:`gmgraph.data.preprocessing` documents).

    >>> record("cifar10", "rgb", (0, 1), IMAGENET_MEAN, IMAGENET_STD, (32, 32), 3)["size"]
    [32, 32]
    """
    return {"dataset": dataset, "colour": colour, "range": [float(v) for v in value_range],
            "size": None if size is None else [int(v) for v in size],
            "mean": [float(v) for v in mean], "std": [float(v) for v in std], "channels": int(channels)}


@dataclass(frozen=True)
class Preprocessing:
    """How a picture file becomes a model input (a checked :func:`record`).

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


def imagenet(source: str) -> Preprocessing:
    """ImageNet's mean and std on RGB in [0, 1]; ``source`` says what chose it."""
    return Preprocessing("rgb", (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD, source)


def preprocessing_from(spec: object, source: str) -> Preprocessing:
    """A :class:`Preprocessing` from a :func:`record` dict, checked.

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


def prepare_image(path: str | Path, shape: tuple[int | None, int | None, int | None],
                  prepared: Preprocessing) -> np.ndarray:
    """One picture as a model's ``(C, H, W)`` float32 input, prepared as ``prepared`` says.

    ``shape`` is the model's ``(C, H, W)``, None where it accepts any; C must be 1, 3 or None.

    Raises:
        DataError: the file is not a picture Pillow can read, or C is another number.
    """
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    if channels not in (1, 3, None):
        raise DataError(f"the model takes {channels}-channel input; pictures are prepared for 1 or 3 channels")
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
