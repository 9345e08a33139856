"""The dataset table, and where each file-backed dataset's files go.

:data:`DATASETS` is the table of names ``load`` and ``--data`` accept (its
built-in builders live in :mod:`gmgraph.data.builders`); :data:`FILES` says
where torchvision expects each file-backed dataset's files, and :func:`missing`
turns what is absent into a message that says what to put where::

    >>> canonical(" Fashion_MNIST")
    'fashion-mnist'
    >>> print(missing(FILES["mnist"], None)[:63])
    MNIST needs a data directory: pass root=DIR (--data-root DIR on
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gmgraph import registry
from gmgraph.errors import DataError

DATASETS = registry.DATASETS
"""The dataset table (:data:`gmgraph.registry.DATASETS`): name -> builder, the built-ins from
:data:`gmgraph.data.builders.BUILDERS`. A new dataset is one builder and one entry; :func:`gmgraph.data.load`
and ``--data`` read the names here."""


def canonical(name: object) -> str:
    """The :data:`DATASETS` name ``name`` spells, or a DataError listing the names."""
    key = registry.dataset_key(name)
    if key is None:
        raise DataError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
    return key


@dataclass(frozen=True)
class Files:
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


FILES = {
    "cifar10": Files(
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
    "cifar100": Files(
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
    "mnist": Files(
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
    "fashion-mnist": Files(
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


def missing(files: Files, root: str | Path | None) -> str | None:
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
