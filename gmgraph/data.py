"""Datasets as three seeded torch DataLoaders ``(train, val, test)``.

``digits`` (scikit-learn's bundled 8x8 digits) needs no files and no network,
so it is the default wherever real images are needed. ``synthetic`` makes
learnable random images of any shape. The other datasets read local files
only; when they are missing, :class:`~gmgraph.errors.DataError` says which
files to put where::

    >>> from gmgraph import data
    >>> train, val, test = data.load("digits", batch_size=32)
    >>> x, y = next(iter(train))
    >>> tuple(x.shape), y.dtype
    ((32, 1, 8, 8), torch.int64)
    >>> data.info(train)
    DataInfo(name='digits', shape=(1, 8, 8), num_classes=10, sizes=(1077, 360, 360))

Two seeds, two jobs: ``split_seed`` fixes which images land in train, val
and test (so the test set never moves), ``seed`` only fixes the order of the
training batches.
"""

from __future__ import annotations

import copy
import functools
import math
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from gmgraph import registry
from gmgraph.config import check_positive_int
from gmgraph.errors import DataError
from gmgraph.placed_digits import PLACEMENTS, place
from gmgraph.preprocessing import IMAGENET_MEAN, IMAGENET_STD, record

T = TypeVar("T")

VAL_FRACTION = 0.1
"""Share of an official training set (CIFAR, MNIST) held out as the val split."""

_SYNTHETIC_NOISE = 1.0  # noise std relative to the class prototypes: learnable, not trivial


class Loaders(NamedTuple):
    """The three loaders :func:`load` returns; unpack as ``train, val, test``."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass(frozen=True)
class DataInfo:
    """What a network needs to know about a dataset (see :func:`info`).

    Attributes:
        name: canonical dataset name, one of :data:`DATASETS`.
        shape: shape of one image, ``(channels, height, width)``.
        num_classes: number of labels; labels are ``0 .. num_classes - 1``.
        sizes: number of images in the (train, val, test) splits.
    """

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    sizes: tuple[int, int, int]


@dataclass(frozen=True)
class _Files:
    """Where torchvision expects one dataset's files, and how to tell the user."""

    title: str  # human name for messages
    cls: str  # torchvision.datasets class
    folder: str  # relative to root
    files: tuple[str, ...]  # must all exist inside folder
    put: str  # "put <what> {prep} {dir}" — what to place there
    prep: str  # "at" a folder or "in" a folder
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    shape: tuple[int, int, int]  # (channels, height, width) of one native image


_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
_IDX = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_put(url: str) -> str:
    return f"the unzipped files {', '.join(_IDX)} (gunzip the .gz files from {url})"


_FILES = {
    "cifar10": _Files(
        title="CIFAR-10",
        cls="CIFAR10",
        folder="cifar-10-batches-py",
        files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        put="the extracted 'cifar-10-batches-py' folder (data_batch_1..5, test_batch,"
        f" batches.meta from {_CIFAR10_URL})",
        prep="at",
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        num_classes=10,
        shape=(3, 32, 32),
    ),
    "cifar100": _Files(
        title="CIFAR-100",
        cls="CIFAR100",
        folder="cifar-100-python",
        files=("train", "test", "meta"),
        put=f"the extracted 'cifar-100-python' folder (train, test, meta from {_CIFAR100_URL})",
        prep="at",
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        num_classes=100,
        shape=(3, 32, 32),
    ),
    "mnist": _Files(
        title="MNIST",
        cls="MNIST",
        folder="MNIST/raw",
        files=_IDX,
        put=_idx_put("https://ossci-datasets.s3.amazonaws.com/mnist/"),
        prep="in",
        mean=(0.1307,),
        std=(0.3081,),
        num_classes=10,
        shape=(1, 28, 28),
    ),
    "fashion-mnist": _Files(
        title="Fashion-MNIST",
        cls="FashionMNIST",
        folder="FashionMNIST/raw",
        files=_IDX,
        put=_idx_put("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        prep="in",
        mean=(0.2860,),
        std=(0.3530,),
        num_classes=10,
        shape=(1, 28, 28),
    ),
}


def load(
    name: str,
    *,
    root: str | Path | None = None,
    batch_size: int = 64,
    seed: int = 0,
    split_seed: int = 0,
    num_workers: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    augment: bool = False,
    shape: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    size: tuple[int, int, int] = (256, 64, 64),
) -> Loaders:
    """Build seeded train/val/test DataLoaders for a dataset.

    Datasets (``name``, case-insensitive, ``_`` may stand for ``-``):

    - ``digits``: scikit-learn's 1797 8x8 digits, shipped with scikit-learn.
      A stratified 60/20/20 split; normalised with the train split's mean/std.
    - ``digits16``, ``clutter16``: the digits placed at random positions on a
      16x16 canvas with Gaussian noise (``clutter16`` adds three 4x4 pieces of
      other digits); train/val/test are placed from the digits split's disjoint
      source images, 2/4/4 times each (2154/1440/1440 images). Here the
      architecture matters; see :mod:`gmgraph.placed_digits`.
    - ``synthetic``: seeded random images of ``shape`` with ``num_classes``
      labels and ``size`` = (train, val, test) images. Each class has a random
      prototype; a sample is its prototype plus noise, so labels are learnable.
    - ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``: read from
      ``root`` by torchvision (never downloaded). ``VAL_FRACTION`` of the
      official training set is held out as val; test is the official test set.
      Standard per-channel normalisation.
    - ``imagefolder``: ``root/train/<class>/*.png``, ``root/val/<class>/...``
      and optionally ``root/test/<class>/...``; **without a test folder, val
      doubles as test**. Normalised with ImageNet constants; images of
      different sizes need ``image_size`` (without it, a DataError names two).

    Args:
        name: one of :data:`DATASETS`.
        root: directory holding the files (file-backed datasets only).
        batch_size: images per batch (the last batch may be smaller).
        seed: seeds the training loader's shuffle; the n-th pass over it
            is the same for the same seed.
        split_seed: fixes the train/val/test split (and synthetic images);
            independent of ``seed`` so the test set does not move.
        num_workers: DataLoader worker processes (0 loads in this process).
        image_size: resize images to ``image_size`` x ``image_size``
            (bilinear); ``None`` keeps the native size.
        channels: 1 or 3; 1 -> 3 repeats the grey channel, 3 -> 1 averages.
            ``None`` keeps the native count (1 for digits and MNIST).
        augment: random crop (padding 4) and horizontal flip on the CIFAR
            training split. They draw from torch's global RNG when
            ``num_workers=0``; call ``torch.manual_seed`` to repeat them.
        shape: ``synthetic`` only: ``(channels, height, width)``.
        num_classes: ``synthetic`` only: number of labels.
        size: ``synthetic`` only: images in (train, val, test).

    Returns:
        ``Loaders(train, val, test)``; only ``train`` shuffles. Each loader's
        dataset carries ``num_classes``; see :func:`info`.

    Raises:
        DataError: unknown name, bad option, missing/unreadable files (the
            message says what to put where) or an empty split.

    Example:
        >>> train, val, test = load("digits", image_size=32, channels=3)
        >>> tuple(next(iter(test))[0].shape)
        (64, 3, 32, 32)
    """
    key = _canonical(name)
    _check_loader_args(batch_size, num_workers)
    request = DataRequest(root=root, split_seed=split_seed, adapt=_Adapt(image_size, channels), augment=augment,
                          shape=shape, num_classes=num_classes, size=size)
    splits, k = DATASETS[key](request)
    return _loaders(key, splits, k, batch_size, seed, num_workers)


def info(loaders: Loaders | Sequence[DataLoader] | DataLoader) -> DataInfo:
    """Describe loaders returned by :func:`load`.

    Accepts the ``(train, val, test)`` triple or any one of its loaders; the
    shape is read from the first sample, the rest from attributes
    :func:`load` set on each dataset (``num_classes``, ``dataset_name``,
    ``split_sizes``).

    Example:
        >>> info(load("synthetic", shape=(3, 4, 4), size=(8, 4, 4)))
        DataInfo(name='synthetic', shape=(3, 4, 4), num_classes=10, sizes=(8, 4, 4))
    """
    loader = loaders if isinstance(loaders, DataLoader) else loaders[0]
    dataset = loader.dataset
    try:
        name, k, sizes = dataset.dataset_name, dataset.num_classes, dataset.split_sizes
    except AttributeError:
        raise DataError("info() needs loaders made by gmgraph.data.load") from None
    image = dataset[0][0]
    return DataInfo(name, tuple(int(d) for d in image.shape), int(k), tuple(sizes))


def infinite(loader: Iterable[T]) -> Iterator[T]:
    """Cycle over a loader forever; a shuffling loader reshuffles every pass.

    Example:
        >>> batches = infinite(load("digits", batch_size=500).train)
        >>> [len(next(batches)[1]) for _ in range(4)]  # 1077 = 500 + 500 + 77
        [500, 500, 77, 500]
    """
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:  # otherwise we would spin forever without yielding
            raise DataError("infinite() got an empty loader")


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
        >>> x = load("digits").train.dataset.tensors[0]  # what load normalised with the same numbers
        >>> round(float(x.mean()), 4), round(float(x.std()), 4)
        (0.0, 1.0)
    """
    key = _canonical(name)
    adapt = _Adapt(image_size, channels)
    if key == "synthetic":
        if not adapt.is_noop:
            raise DataError("synthetic takes shape=(C, H, W), not image_size/channels")
        if len(tuple(shape)) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DataError(f"synthetic shape must be (C, H, W) of positive ints, got {shape!r}")
        c, h, w = shape
        colour = {1: "grey", 3: "rgb"}.get(c)
        return record(key, colour, (0.0, 1.0), [0.0] * c, [1.0] * c, (h, w), c)
    if key == "digits":
        x, _, _, mean, std = _digits_images(split_seed, adapt)
        return record(key, "grey", DIGITS_RANGE, [float(mean)], [float(std)], tuple(x.shape[-2:]),
                      x.shape[1])
    if key in PLACEMENTS:
        splits, mean, std = _placed_images(key, split_seed, adapt)
        x = splits[0][0]
        return record(key, "grey", (0.0, 1.0), [float(mean)], [float(std)], tuple(x.shape[-2:]),
                      x.shape[1])
    if key == "imagefolder":
        size = (image_size, image_size) if image_size is not None else None
        return record(key, "rgb", (0.0, 1.0), IMAGENET_MEAN, IMAGENET_STD, size, channels or 3)
    if key not in _FILES:
        raise DataError(f"gmgraph does not know how dataset {name!r} prepares its images")
    files = _FILES[key]
    c, h, w = files.shape
    size = (image_size, image_size) if image_size is not None else (h, w)
    return record(key, "grey" if c == 1 else "rgb", (0.0, 1.0), files.mean, files.std, size, channels or c)


# --- the dataset table -------------------------------------------------------


@dataclass(frozen=True)
class DataRequest:
    """What a dataset builder gets from :func:`load` (see its arguments)."""

    root: str | Path | None
    split_seed: int
    adapt: _Adapt
    augment: bool
    shape: tuple[int, int, int]
    num_classes: int
    size: tuple[int, int, int]


def _refuse_augment(request: DataRequest, name: str) -> None:
    if request.augment:
        raise DataError(f"augment=True is only supported for cifar10 and cifar100, not {name!r}")


def _build_digits(r: DataRequest):
    _refuse_augment(r, "digits")
    return _digits(r.split_seed, r.adapt)


def _build_placed(name: str):
    def build(r: DataRequest):
        _refuse_augment(r, name)
        splits, mean, std = _placed_images(name, r.split_seed, r.adapt)
        return tuple(TensorDataset((x - mean) / std, y) for x, y in splits), 10

    return build


def _build_synthetic(r: DataRequest):
    _refuse_augment(r, "synthetic")
    if not r.adapt.is_noop:
        raise DataError("synthetic takes shape=(C, H, W), not image_size/channels")
    return _synthetic(r.shape, r.num_classes, r.size, r.split_seed)


def _build_imagefolder(r: DataRequest):
    _refuse_augment(r, "imagefolder")
    return _imagefolder(r.root, r.adapt)


def _build_torchvision(name: str):
    def build(r: DataRequest):
        if name not in ("cifar10", "cifar100"):
            _refuse_augment(r, name)
        return _torchvision(_FILES[name], r.root, r.split_seed, r.adapt, r.augment)

    return build


BUILDERS: dict[str, Any] = {
    "digits": _build_digits,
    **{name: _build_placed(name) for name in PLACEMENTS},
    "synthetic": _build_synthetic,
    **{name: _build_torchvision(name) for name in ("cifar10", "cifar100", "mnist", "fashion-mnist")},
    "imagefolder": _build_imagefolder,
}
"""The built-in builders: name -> ``(DataRequest) -> ((train, val, test) datasets, classes)``."""

DATASETS = registry.DATASETS
"""The dataset table (:data:`gmgraph.registry.DATASETS`): name -> builder, the built-ins from
:data:`BUILDERS`. A new dataset is one builder and one entry; :func:`load` and ``--data`` read the names here."""


# --- options -----------------------------------------------------------------


def _canonical(name: object) -> str:
    key = registry.dataset_key(name)
    if key is None:
        raise DataError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
    return key


def _check_loader_args(batch_size: object, num_workers: object) -> None:
    check_positive_int("batch_size", batch_size, error=DataError)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise DataError(f"num_workers must be an integer >= 0, got {num_workers!r}")


class _Adapt:
    """Resize and recolour image tensors, ``(C, H, W)`` or ``(N, C, H, W)``.

    A class, not a lambda, so transforms stay picklable for worker processes.
    """

    def __init__(self, image_size: int | None, channels: int | None):
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0
        ):
            raise DataError(f"image_size must be None or a positive integer, got {image_size!r}")
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be None, 1 or 3, got {channels!r}")
        self.image_size = image_size
        self.channels = channels

    @property
    def is_noop(self) -> bool:
        return self.image_size is None and self.channels is None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch = x if x.dim() == 4 else x.unsqueeze(0)
        s = self.image_size
        if s is not None and tuple(batch.shape[-2:]) != (s, s):
            # antialias matters only when shrinking; it keeps downsampling smooth
            batch = F.interpolate(
                batch, size=(s, s), mode="bilinear", align_corners=False, antialias=True
            )
        c = self.channels
        if c is not None and batch.shape[1] != c:
            batch = batch.repeat(1, c, 1, 1) if batch.shape[1] == 1 else batch.mean(1, True)
        return batch if x.dim() == 4 else batch[0]


# --- in-memory datasets --------------------------------------------------------


DIGITS_RANGE = (0.0, 16.0)
"""scikit-learn's digits hold ink levels 0 (background) .. 16 (full ink); :func:`load` keeps that scale."""


def _digits_images(split_seed: int, adapt: _Adapt):
    """The adapted raw digits (values in DIGITS_RANGE), labels, split indices and the train split's mean/std.

    Shared by :func:`load` and :func:`preprocessing`, so the numbers a model is trained with
    and those written into its ONNX file cannot drift apart.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    y = np.asarray(bunch.target)
    rest, test = train_test_split(
        np.arange(len(y)), test_size=0.2, stratify=y, random_state=split_seed
    )
    train, val = train_test_split(rest, test_size=0.25, stratify=y[rest], random_state=split_seed)
    # resize before taking the stats so the train split is N(0, 1)-ish at any size
    x = adapt(torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1))
    mean, std = x[train].mean(), x[train].std()
    return x, y, (train, val, test), mean, std


def _digits(split_seed: int, adapt: _Adapt) -> tuple[tuple[Dataset, ...], int]:
    x, y, splits, mean, std = _digits_images(split_seed, adapt)
    x, labels = (x - mean) / std, torch.as_tensor(y, dtype=torch.long)
    return tuple(TensorDataset(x[i], labels[i]) for i in splits), 10


def _placed_images(name: str, split_seed: int, adapt: _Adapt):
    """The (train, val, test) ``(x, y)`` of a placed-digits dataset, unnormalised, and the train mean/std.

    Source images are those of the ``digits`` split, so no digit image feeds two
    splits; each split is placed with its own generator seeded from ``split_seed``.
    Shared by :func:`load` and :func:`preprocessing`.
    """
    spec = PLACEMENTS[name]
    raw, y, splits, _, _ = _digits_images(split_seed, _Adapt(None, None))
    ink = raw[:, 0] / DIGITS_RANGE[1]
    labels = torch.as_tensor(y, dtype=torch.long)
    out = []
    for part, (index, copies) in enumerate(zip(splits, spec.copies)):
        generator = torch.Generator().manual_seed(1_000 * split_seed + part)
        x, lab = place(ink[index], labels[index], spec, generator, copies=copies)
        out.append((adapt(x), lab))
    train = out[0][0]
    return out, train.mean(), train.std()


def fresh_train_placement(name: str, seed: int, *, split_seed: int = 0) -> TensorDataset:
    """The training digits of a placed-digits dataset placed anew: same source images, new positions and noise.

    ``load(name)``'s training split is one fixed placement of its source
    images; this draws another one from ``seed`` (normalised with the same
    mean and std), so a training loop can show a network a fresh placement
    every epoch: the task without the fixed training set to memorise.

    Raises:
        DataError: ``name`` is not a placed-digits dataset.

    Example:
        >>> a, b = fresh_train_placement("digits16", 0), fresh_train_placement("digits16", 1)
        >>> len(a) == len(load("digits16").train.dataset), bool(torch.equal(a.tensors[1], b.tensors[1]))
        (True, True)
        >>> bool(torch.equal(a.tensors[0], b.tensors[0])), bool(torch.equal(a.tensors[0], fresh_train_placement("digits16", 0).tensors[0]))
        (False, True)
    """
    key = registry.dataset_key(name)
    if key not in PLACEMENTS:
        raise DataError(f"fresh_train_placement needs a placed-digits dataset ({', '.join(PLACEMENTS)}), not {name!r}")
    spec = PLACEMENTS[key]
    ink, labels, mean, std = _train_sources(key, split_seed)
    x, lab = place(ink, labels, spec, torch.Generator().manual_seed(seed), copies=spec.copies[0])
    return TensorDataset((x - mean) / std, lab)


@functools.lru_cache(maxsize=4)
def _train_sources(key: str, split_seed: int):
    """The training split's source digits (ink in [0, 1]), labels, and the fixed placement's mean/std."""
    raw, y, splits, _, _ = _digits_images(split_seed, _Adapt(None, None))
    _, mean, std = _placed_images(key, split_seed, _Adapt(None, None))
    train = splits[0]
    return raw[train, 0] / DIGITS_RANGE[1], torch.as_tensor(y[train], dtype=torch.long), mean, std


def _synthetic(
    shape: Sequence[int], num_classes: int, size: Sequence[int], split_seed: int
) -> tuple[tuple[Dataset, ...], int]:
    shape, size = tuple(shape), tuple(size)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DataError(f"synthetic shape must be (C, H, W) of positive ints, got {shape!r}")
    check_positive_int("num_classes", num_classes, error=DataError)
    if len(size) != 3 or not all(isinstance(n, int) and n >= 0 for n in size):
        raise DataError(f"synthetic size must be (train, val, test) counts, got {size!r}")
    g = torch.Generator().manual_seed(split_seed)
    prototypes = torch.randn((num_classes, *shape), generator=g)
    scale = 1 / math.sqrt(1 + _SYNTHETIC_NOISE**2)  # keeps pixel variance ~1

    def split(n: int) -> TensorDataset:
        # balanced labels in random order, so every class shows up in small splits
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        noise = torch.randn((n, *shape), generator=g)
        return TensorDataset(scale * (prototypes[y] + _SYNTHETIC_NOISE * noise), y)

    return tuple(split(n) for n in size), num_classes


# --- file-backed datasets ------------------------------------------------------


def _missing(files: _Files, root: str | Path | None) -> str | None:
    """The DataError message when files are absent, else None."""
    if root is None:
        where = f"DIR/{files.folder}"
        return (
            f"{files.title} needs a data directory: pass root=DIR (--data-root DIR on the command line) and put {files.put} "
            f"{files.prep} {where}"
        )
    folder = Path(root).expanduser() / files.folder
    absent = [f for f in files.files if not (folder / f).is_file()]
    if not absent:
        return None
    return (
        f"{files.title} not found under {root}: put {files.put} {files.prep} {folder} "
        f"(missing: {', '.join(absent)})"
    )


def _torchvision(
    files: _Files, root: str | Path | None, split_seed: int, adapt: _Adapt, augment: bool
) -> tuple[tuple[Dataset, ...], int]:
    # checked here because torchvision's own "Dataset not found" does not say where
    message = _missing(files, root)
    if message:
        raise DataError(message)
    import torchvision  # lazy: a second or so of import that digits users never need

    cls = getattr(torchvision.datasets, files.cls)
    plain = _transform(files.mean, files.std, adapt)
    base = str(Path(root).expanduser())
    try:
        full = cls(base, train=True, transform=plain, download=False)
        test = cls(base, train=False, transform=plain, download=False)
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        folder = Path(base) / files.folder
        raise DataError(
            f"{files.title} under {root} is unreadable or corrupt ({exc}): "
            f"put {files.put} {files.prep} {folder}"
        ) from exc
    train_idx, val_idx = _holdout(len(full), split_seed)
    train_set = full
    if augment:  # a shallow copy shares the images but not the transform; val stays plain
        train_set = copy.copy(full)
        train_set.transform = _transform(files.mean, files.std, adapt, augment=True)
        train_set.transforms = torchvision.datasets.vision.StandardTransform(train_set.transform)
    return (Subset(train_set, train_idx), Subset(full, val_idx), test), files.num_classes


def _transform(
    mean: Sequence[float], std: Sequence[float], adapt: _Adapt, augment: bool = False
) -> Any:
    """PIL image -> normalised tensor (after optional CIFAR augmentation) -> adapt."""
    from torchvision import transforms

    steps: list[Any] = []
    if augment:
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    if not adapt.is_noop:
        steps.append(adapt)
    return transforms.Compose(steps)


def _holdout(n: int, split_seed: int) -> tuple[list[int], list[int]]:
    """Fixed random (train, val) indices with VAL_FRACTION of ``n`` in val."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = max(1, round(n * VAL_FRACTION)) if n > 1 else 0
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def _imagefolder(root: str | Path | None, adapt: _Adapt) -> tuple[tuple[Dataset, ...], int]:
    base = Path(root).expanduser() if root is not None else Path("DIR")
    need = (
        f"put training images at {base}/train/<class>/*.png and validation images at "
        f"{base}/val/<class>/*.png (optionally test images at {base}/test/<class>/...)"
    )
    if root is None:
        raise DataError(f"imagefolder needs a data directory: pass root=DIR (--data-root DIR on the command line) and {need}")
    absent = [p for p in ("train", "val") if not (base / p).is_dir()]
    if absent:
        raise DataError(
            f"imagefolder not found under {root} (missing: {', '.join(absent)}): {need}"
        )
    from torchvision import datasets

    tf = _transform(IMAGENET_MEAN, IMAGENET_STD, adapt)  # imagefolder's usual choice
    parts = ("train", "val", "test") if (base / "test").is_dir() else ("train", "val")
    try:
        sets = [datasets.ImageFolder(str(base / p), transform=tf) for p in parts]
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"imagefolder under {root}: {exc}; {need}") from exc
    for part, ds in zip(parts[1:], sets[1:]):
        # ImageFolder numbers classes per folder, so different folders mean wrong labels
        if ds.classes != sets[0].classes:
            raise DataError(
                f"class folders of {base / part} {ds.classes} differ from those of "
                f"{base / 'train'} {sets[0].classes}; every split needs the same ones"
            )
    if adapt.image_size is None:  # else every image is resized to one size
        _check_one_size([path for ds in sets for path, _ in ds.samples])
    test = sets[2] if len(sets) == 3 else sets[1]  # no test folder: val doubles as test
    return (sets[0], sets[1], test), len(sets[0].classes)


def _check_one_size(paths: Sequence[str]) -> None:
    """Refuse images of different sizes: a batch stacks them, and a network takes one input size.

    Reads each file's header only (Pillow opens lazily), so a few thousand files take well under a second.

    Raises:
        DataError: naming two files of different sizes and ``image_size``, or an unreadable file.
    """
    from PIL import Image, UnidentifiedImageError

    first = None
    for path in paths:
        try:
            with Image.open(path) as img:
                size = img.size  # (width, height)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"imagefolder: cannot read image {path}: {exc}") from exc
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise DataError(f"imagefolder images differ in size: {first[0]} is {_wxh(first[1])} but {path} is "
                            f"{_wxh(size)} (width x height); resize them all to N x N with image_size=N "
                            "(--image-size N on the command line), or give them one size")


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# --- loaders -----------------------------------------------------------------


def _loaders(
    name: str,
    splits: tuple[Dataset, ...],
    num_classes: int,
    batch_size: int,
    seed: int,
    num_workers: int,
) -> Loaders:
    sizes = tuple(len(s) for s in splits)
    if 0 in sizes:
        raise DataError(f"{name}: (train, val, test) sizes are {sizes}; no split may be empty")
    for ds in splits:  # read back by info()
        ds.dataset_name, ds.num_classes, ds.split_sizes = name, num_classes, sizes

    def make(ds: Dataset, shuffle: bool) -> DataLoader:
        # a generator per loader: the train order depends on `seed` alone, not on
        # how much global randomness other code used; it also seeds any workers
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            drop_last=False,
            generator=torch.Generator().manual_seed(seed),
        )

    return Loaders(make(splits[0], True), make(splits[1], False), make(splits[2], False))
