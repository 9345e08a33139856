"""The built-in dataset builders: one per name of the dataset table.

A builder takes a :class:`DataRequest` (what :func:`gmgraph.data.load` was
asked for) and returns the ``(train, val, test)`` datasets and the number of
classes; :data:`gmgraph.data.DATASETS` names them, and a new dataset is one
builder and one entry there::

    >>> from gmgraph.data.adapt import Adapt
    >>> request = DataRequest(root=None, split_seed=0, adapt=Adapt(None, None), augment=False,
    ...                       shape=(1, 2, 2), num_classes=3, size=(6, 3, 3))
    >>> splits, classes = BUILDERS["synthetic"](request)
    >>> [len(s) for s in splits], classes
    ([6, 3, 3], 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import TensorDataset

from gmgraph.data.adapt import Adapt
from gmgraph.data.catalogue import FILES
from gmgraph.data.file_backed import imagefolder, torchvision_splits
from gmgraph.data.in_memory import digits, placed_images, synthetic
from gmgraph.errors import DataError
from gmgraph.placed_digits import PLACEMENTS, SEGMENT_CLASSES, SEGMENTED


@dataclass(frozen=True)
class DataRequest:
    """What a dataset builder gets from :func:`gmgraph.data.load` (see its arguments)."""

    root: str | Path | None
    split_seed: int
    adapt: Adapt
    augment: bool
    shape: tuple[int, int, int]
    num_classes: int
    size: tuple[int, int, int]


def _refuse_augment(request: DataRequest, name: str) -> None:
    if request.augment:
        raise DataError(f"augment=True is only supported for cifar10 and cifar100, not {name!r}")


def _build_digits(r: DataRequest):
    _refuse_augment(r, "digits")
    return digits(r.split_seed, r.adapt)


def _build_placed(name: str):
    def build(r: DataRequest):
        _refuse_augment(r, name)
        splits, mean, std = placed_images(name, r.split_seed, r.adapt)
        return tuple(TensorDataset((x - mean) / std, y) for x, y in splits), 10

    return build


def _build_segmented(name: str):
    def build(r: DataRequest):
        _refuse_augment(r, name)
        if r.adapt.image_size is not None:
            raise DataError(f"{name} keeps its {PLACEMENTS[SEGMENTED[name]].canvas}x"
                            f"{PLACEMENTS[SEGMENTED[name]].canvas} size (its targets are per-pixel); "
                            "leave out image_size")
        splits, mean, std = placed_images(SEGMENTED[name], r.split_seed, r.adapt, masks=True)
        return tuple(TensorDataset((x - mean) / std, y) for x, y in splits), SEGMENT_CLASSES

    return build


def _build_synthetic(r: DataRequest):
    _refuse_augment(r, "synthetic")
    if not r.adapt.is_noop:
        raise DataError("synthetic takes shape=(C, H, W), not image_size/channels")
    return synthetic(r.shape, r.num_classes, r.size, r.split_seed)


def _build_imagefolder(r: DataRequest):
    _refuse_augment(r, "imagefolder")
    return imagefolder(r.root, r.adapt)


def _build_torchvision(name: str):
    def build(r: DataRequest):
        if name not in ("cifar10", "cifar100"):
            _refuse_augment(r, name)
        return torchvision_splits(FILES[name], r.root, r.split_seed, r.adapt, r.augment)

    return build


BUILDERS: dict[str, Any] = {
    "digits": _build_digits,
    **{name: _build_placed(name) for name in PLACEMENTS},
    **{name: _build_segmented(name) for name in SEGMENTED},
    "synthetic": _build_synthetic,
    **{name: _build_torchvision(name) for name in ("cifar10", "cifar100", "mnist", "fashion-mnist")},
    "imagefolder": _build_imagefolder,
}
"""The built-in builders: name -> ``(DataRequest) -> ((train, val, test) datasets, classes)``."""
