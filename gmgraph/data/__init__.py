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

One concern per module; the names below are the package's public API:

- :mod:`~gmgraph.data.catalogue`: the dataset table (:data:`DATASETS`) and where each
  file-backed dataset's files go;
- :mod:`~gmgraph.data.builders`: one builder per dataset (:data:`BUILDERS`, :class:`DataRequest`),
  over :mod:`~gmgraph.data.in_memory` (digits, placed digits, synthetic),
  :mod:`~gmgraph.data.file_backed` (torchvision's datasets, image folders) and
  :mod:`~gmgraph.data.adapt` (resizing, recolouring);
- :mod:`~gmgraph.data.loaders`: :func:`load` and the loader objects (:class:`Loaders`,
  :class:`DataInfo`, :func:`info`, :func:`infinite`);
- :mod:`~gmgraph.data.spec`: :func:`preprocessing`, the record of how :func:`load`
  prepares a dataset's pictures (its format is :mod:`gmgraph.preprocessing`).
"""

from gmgraph.data.builders import BUILDERS, DataRequest
from gmgraph.data.catalogue import DATASETS
from gmgraph.data.file_backed import VAL_FRACTION
from gmgraph.data.in_memory import DIGITS_RANGE, fresh_train_placement
from gmgraph.data.loaders import DataInfo, Loaders, infinite, info, load
from gmgraph.data.spec import preprocessing

__all__ = [
    "BUILDERS",
    "DATASETS",
    "DIGITS_RANGE",
    "VAL_FRACTION",
    "DataInfo",
    "DataRequest",
    "Loaders",
    "fresh_train_placement",
    "infinite",
    "info",
    "load",
    "preprocessing",
]
