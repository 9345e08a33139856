"""``load()``: a dataset as three seeded torch DataLoaders, and what to ask of them.

See :mod:`gmgraph.data` for the datasets and an example.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from gmgraph.config import check_positive_int
from gmgraph.data.adapt import Adapt
from gmgraph.data.builders import DataRequest
from gmgraph.data.catalogue import DATASETS, canonical
from gmgraph.errors import DataError

T = TypeVar("T")


class Loaders(NamedTuple):
    """The three loaders :func:`load` returns; unpack as ``train, val, test``."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


@dataclass(frozen=True)
class DataInfo:
    """What a network needs to know about a dataset (see :func:`info`).

    Attributes:
        name: canonical dataset name, one of :data:`~gmgraph.data.DATASETS`.
        shape: shape of one image, ``(channels, height, width)``.
        num_classes: number of labels; labels are ``0 .. num_classes - 1``.
        sizes: number of images in the (train, val, test) splits.
    """

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    sizes: tuple[int, int, int]


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
        name: one of :data:`~gmgraph.data.DATASETS`.
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
    key = canonical(name)
    _check_loader_args(batch_size, num_workers)
    request = DataRequest(root=root, split_seed=split_seed, adapt=Adapt(image_size, channels), augment=augment,
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


def _check_loader_args(batch_size: object, num_workers: object) -> None:
    check_positive_int("batch_size", batch_size, error=DataError)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise DataError(f"num_workers must be an integer >= 0, got {num_workers!r}")


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
