"""The datasets made in memory: scikit-learn's digits, the placed digits, and synthetic images.

Each returns the ``(train, val, test)`` datasets and the number of classes;
the builders of :mod:`gmgraph.data.builders` call them::

    >>> from gmgraph.data.adapt import Adapt
    >>> splits, classes = digits(0, Adapt(None, None))
    >>> [len(s) for s in splits], classes
    ([1077, 360, 360], 10)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from gmgraph import registry
from gmgraph.config import check_positive_int
from gmgraph.data.adapt import Adapt
from gmgraph.errors import DataError
from gmgraph.placed_digits import PLACEMENTS, place

_SYNTHETIC_NOISE = 1.0  # noise std relative to the class prototypes: learnable, not trivial


DIGITS_RANGE = (0.0, 16.0)
"""scikit-learn's digits hold ink levels 0 (background) .. 16 (full ink); :func:`gmgraph.data.load` keeps that scale."""


def digits_images(split_seed: int, adapt: Adapt):
    """The adapted raw digits (values in DIGITS_RANGE), labels, split indices and the train split's mean/std.

    Shared by :func:`gmgraph.data.load` and :func:`gmgraph.data.preprocessing`, so the numbers a model is trained with
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


def digits(split_seed: int, adapt: Adapt) -> tuple[tuple[Dataset, ...], int]:
    x, y, splits, mean, std = digits_images(split_seed, adapt)
    x, labels = (x - mean) / std, torch.as_tensor(y, dtype=torch.long)
    return tuple(TensorDataset(x[i], labels[i]) for i in splits), 10


def placed_images(name: str, split_seed: int, adapt: Adapt, *, masks: bool = False):
    """The (train, val, test) ``(x, y)`` of a placed-digits dataset, unnormalised, and the train mean/std.

    Source images are those of the ``digits`` split, so no digit image feeds two
    splits; each split is placed with its own generator seeded from ``split_seed``.
    Shared by :func:`gmgraph.data.load` and :func:`gmgraph.data.preprocessing`.
    ``masks=True``: ``y`` is each pixel's class (:func:`gmgraph.placed_digits.place`), the images the same.
    """
    spec = PLACEMENTS[name]
    raw, y, splits, _, _ = digits_images(split_seed, Adapt(None, None))
    ink = raw[:, 0] / DIGITS_RANGE[1]
    labels = torch.as_tensor(y, dtype=torch.long)
    out = []
    for part, (index, copies) in enumerate(zip(splits, spec.copies)):
        generator = torch.Generator().manual_seed(1_000 * split_seed + part)
        x, lab, *mask = place(ink[index], labels[index], spec, generator, copies=copies, masks=masks)
        out.append((adapt(x), mask[0] if masks else lab))
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
        >>> from gmgraph.data import load
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
    raw, y, splits, _, _ = digits_images(split_seed, Adapt(None, None))
    _, mean, std = placed_images(key, split_seed, Adapt(None, None))
    train = splits[0]
    return raw[train, 0] / DIGITS_RANGE[1], torch.as_tensor(y[train], dtype=torch.long), mean, std


def synthetic(
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
