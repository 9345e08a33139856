"""``--data module:function``: a user's own data for ``gmgraph search``.

The function returns the three splits ``(train, val, test)``, each a DataLoader
(used as given: its ``collate_fn``, workers and sampler are kept, see
:mod:`gmgraph.train.training_data`), a Dataset (batched by ``--batch-size``; the
training split shuffled) or a list of batches. It may return
``((train, val, test), num_classes)`` or a dict with keys ``train``, ``val``,
``test`` and optionally ``num_classes``; without a count, gmgraph reads the
training targets once: the largest class index + 1 for integer targets, the
values per sample for floating-point (regression) targets. It is called with
whichever of ``batch_size`` and ``seed`` its signature names::

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> def splits():
    ...     return [TensorDataset(torch.randn(n, 1, 4, 4), torch.arange(n) % 3) for n in (12, 6, 6)]
    >>> loaders, info = from_splits("mine:splits", splits(), batch_size=4, seed=0)
    >>> info
    DataInfo(name='mine:splits', shape=(1, 4, 4), num_classes=3, sizes=(12, 6, 6))
    >>> len(loaders.train)
    3
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from gmgraph.data.loaders import DataInfo, Loaders
from gmgraph.errors import DataError
from gmgraph.references import call_with, load_function
from gmgraph.task import split_batch


def load_user_data(reference: str, *, batch_size: int, seed: int) -> tuple[Loaders, DataInfo]:
    """The loaders and description of the data ``reference`` names (``--data module:function``).

    Raises:
        ConfigError: the function cannot be loaded. DataError: what it returned is not three splits, saying
        what it was.
    """
    function = load_function(reference, "--data")
    return from_splits(reference, call_with(function, {"batch_size": batch_size, "seed": seed}),
                       batch_size=batch_size, seed=seed)


def from_splits(name: str, returned: object, *, batch_size: int, seed: int) -> tuple[Loaders, DataInfo]:
    """Loaders and a description of the splits a data function ``returned``."""
    splits, classes = _unpacked(name, returned)
    loaders = Loaders(*(_loader(split, batch_size, seed, shuffle=i == 0) for i, split in enumerate(splits)))
    x, y = split_batch(next(iter(loaders.train)))
    if classes is None:
        classes = _classes(loaders.train)
    sizes = tuple(_size(split) for split in splits)
    return loaders, DataInfo(name, tuple(int(d) for d in x.shape[1:]), int(classes), sizes)


def _unpacked(name: str, returned: object) -> tuple[list, int | None]:
    if isinstance(returned, Mapping):
        missing = [k for k in ("train", "val", "test") if k not in returned]
        if missing:
            raise DataError(f"--data {name} returned a dict without {', '.join(missing)}; it needs train, val "
                            "and test (and may give num_classes)")
        return [returned["train"], returned["val"], returned["test"]], returned.get("num_classes")
    if (isinstance(returned, tuple | list) and len(returned) == 2 and isinstance(returned[1], int)
            and isinstance(returned[0], tuple | list)):
        returned, classes = returned
    else:
        classes = None
    if not isinstance(returned, tuple | list) or len(returned) != 3:
        raise DataError(f"--data {name} must return (train, val, test) (or ((train, val, test), num_classes)), "
                        f"got {type(returned).__name__}{f' of {len(returned)}' if isinstance(returned, tuple | list) else ''}")
    return list(returned), classes


def _loader(split: object, batch_size: int, seed: int, *, shuffle: bool):
    if isinstance(split, DataLoader) or (isinstance(split, Sequence) and not isinstance(split, Dataset)):
        return split  # the user's loader (or batches) as given
    if isinstance(split, Dataset):
        return DataLoader(split, batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed))
    raise DataError(f"a data split must be a DataLoader, a Dataset or a list of batches, got {type(split).__name__}")


def _classes(train) -> int:
    """Classes (or outputs) read from the training targets: integer -> largest + 1; float -> values per sample."""
    largest, per_sample = -1, None
    for batch in train:
        _, y = split_batch(batch)
        if y.is_floating_point():
            per_sample = int(y[0].numel()) if y.dim() > 0 else 1
            break
        largest = max(largest, int(y.max()))
    if per_sample is not None:
        return per_sample
    if largest < 0:
        raise DataError("the training targets hold no class index; return num_classes with the splits")
    return largest + 1


def _size(split: object) -> int:
    """Samples in a split (0 where it does not say: an iterable)."""
    dataset = getattr(split, "dataset", split)
    try:
        return len(dataset)
    except TypeError:
        return 0
