"""The datasets read from local files: torchvision's CIFAR and MNIST families, and image folders.

Nothing is downloaded; missing or unreadable files raise a
:class:`~gmgraph.errors.DataError` that says what to put where (the messages
of :mod:`gmgraph.data.catalogue`)::

    >>> from gmgraph.data.catalogue import FILES
    >>> torchvision_splits(FILES["cifar10"], None, 0, Adapt(None, None), False)
    Traceback (most recent call last):
    ...
    gmgraph.errors.DataError: CIFAR-10 needs a data directory: pass root=DIR (--data-root DIR on the command line) and put the extracted 'cifar-10-batches-py' folder (data_batch_1..5, test_batch, batches.meta from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz) at DIR/cifar-10-batches-py
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from gmgraph.data.adapt import Adapt
from gmgraph.data.catalogue import Files, missing
from gmgraph.errors import DataError
from gmgraph.preprocessing import IMAGENET_MEAN, IMAGENET_STD

VAL_FRACTION = 0.1
"""Share of an official training set (CIFAR, MNIST) held out as the val split."""


def torchvision_splits(
    files: Files, root: str | Path | None, split_seed: int, adapt: Adapt, augment: bool
) -> tuple[tuple[Dataset, ...], int]:
    # checked here because torchvision's own "Dataset not found" does not say where
    message = missing(files, root)
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
    mean: Sequence[float], std: Sequence[float], adapt: Adapt, augment: bool = False
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


def imagefolder(root: str | Path | None, adapt: Adapt) -> tuple[tuple[Dataset, ...], int]:
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
