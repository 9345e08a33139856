"""``preprocessing()``: how ``load`` prepares a dataset's pictures, as the plain record an ONNX file carries.

The record's format, and the code that reads and applies it, are
:mod:`gmgraph.preprocessing`; the numbers come from the same code
:func:`gmgraph.data.load` normalises with, so they cannot drift apart.
"""

from __future__ import annotations

from gmgraph.data.adapt import Adapt
from gmgraph.data.catalogue import FILES, canonical
from gmgraph.data.in_memory import DIGITS_RANGE, digits_images, placed_images
from gmgraph.errors import DataError
from gmgraph.placed_digits import PLACEMENTS, SEGMENTED
from gmgraph.preprocessing import IMAGENET_MEAN, IMAGENET_STD, record


def preprocessing(
    name: str,
    *,
    split_seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    shape: tuple[int, int, int] = (3, 32, 32),
) -> dict:
    """How :func:`load` turns a picture of dataset ``name`` into a network's input, as plain data.

    The record's format, and the code that reads and applies it, are :mod:`gmgraph.preprocessing`.

    Takes the arguments of :func:`load` that change the images. ``gmgraph export``
    writes the result into the ONNX file's metadata and ``gmgraph predict --images``
    applies it to picture files. No dataset file is read: digits takes its train
    split's mean and std from the same code :func:`load` runs, the file-backed
    datasets use the constants :func:`load` normalises with (ImageNet's for
    imagefolder), and synthetic images are not normalised at all.

    Returns:
        A JSON-ready dict; a picture goes through its entries in this order:

        - ``colour``: ``"grey"`` or ``"rgb"``, the dataset's own images; a picture
          is made this first (RGB to grey: mean of R, G, B; grey to RGB: repeated).
          None for synthetic data of other than 1 or 3 channels.
        - ``range``: ``[low, high]``: black .. full scale of a picture (255 in an
          8-bit file, 65535 in a 16-bit one) maps linearly onto it; digits keep
          scikit-learn's ink levels 0..16 (:data:`DIGITS_RANGE`), the others [0, 1].
        - ``size``: ``[height, width]`` of the network's input (bilinear resize);
          None where the files set it (imagefolder without ``image_size``).
        - ``mean``, ``std``: per ``colour`` channel, in ``range`` units:
          ``(value - mean) / std``.
        - ``channels``: channels of the network's input; ``colour``'s channels
          become these after normalising (grey repeated, RGB averaged), as
          ``load(channels=...)`` does.
        - ``dataset``: the canonical dataset name.

    Raises:
        DataError: unknown name or a bad option (as :func:`load`), or a dataset
            added to :data:`DATASETS` from outside, whose preprocessing gmgraph
            cannot know.

    Example:
        >>> preprocessing("cifar10")["mean"]
        [0.4914, 0.4822, 0.4465]
        >>> p = preprocessing("digits")
        >>> p["colour"], p["range"], p["size"], p["channels"]
        ('grey', [0.0, 16.0], [8, 8], 1)
        >>> from gmgraph.data import load
        >>> x = load("digits").train.dataset.tensors[0]  # what load normalised with the same numbers
        >>> round(float(x.mean()), 4), round(float(x.std()), 4)
        (0.0, 1.0)
    """
    key = canonical(name)
    adapt = Adapt(image_size, channels)
    if key == "synthetic":
        if not adapt.is_noop:
            raise DataError("synthetic takes shape=(C, H, W), not image_size/channels")
        if len(tuple(shape)) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DataError(f"synthetic shape must be (C, H, W) of positive ints, got {shape!r}")
        c, h, w = shape
        colour = {1: "grey", 3: "rgb"}.get(c)
        return record(key, colour, (0.0, 1.0), [0.0] * c, [1.0] * c, (h, w), c)
    if key == "digits":
        x, _, _, mean, std = digits_images(split_seed, adapt)
        return record(key, "grey", DIGITS_RANGE, [float(mean)], [float(std)], tuple(x.shape[-2:]),
                      x.shape[1])
    if key in PLACEMENTS or key in SEGMENTED:
        splits, mean, std = placed_images(SEGMENTED.get(key, key), split_seed, adapt)
        x = splits[0][0]
        return record(key, "grey", (0.0, 1.0), [float(mean)], [float(std)], tuple(x.shape[-2:]),
                      x.shape[1])
    if key == "imagefolder":
        size = (image_size, image_size) if image_size is not None else None
        return record(key, "rgb", (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD, size, channels or 3)
    if key not in FILES:
        raise DataError(f"gmgraph does not know how dataset {name!r} prepares its images")
    files = FILES[key]
    c, h, w = files.shape
    size = (image_size, image_size) if image_size is not None else (h, w)
    return record(key, "grey" if c == 1 else "rgb", (0.0, 1.0), files.mean, files.std, size, channels or c)
