"""NAS-Bench-201 ground truth for all 15,625 architectures, offline.

The table ships with the package (``nb201.csv.gz``, built by
``scripts/build_nb201_table.py``) and is loaded once, lazily. An architecture
can be given as a mapping label -> op, an NB201 string or the official index::

    >>> from gmgraph.nasbench import nb201
    >>> arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    >>> nb201.index_of(arch)
    1
    >>> nb201.query(arch), nb201.query(1, "cifar100", "val", epochs=12)
    (93.66, 57.8)
    >>> nb201.params(1), nb201.flops(1)
    (0.802426, 113.951)

Accuracies are percentages, means over NAS-Bench-201's training seeds.
``dataset="cifar10", split="test"`` is the network trained on train+valid;
``split="val"`` for CIFAR-10 (or ``dataset="cifar10-valid"``) is the
``cifar10-valid`` network's validation accuracy. Parameters are in millions and
FLOPs in millions, both for the 10-class network on 32x32 inputs.

Sources and provenance: ``shared/data/README.md`` in the ``shared/`` folder
beside the repository checkout (NAS-Bench-201, Dong & Yang, ICLR 2020, MIT
license).
"""

from __future__ import annotations

import csv
import functools
import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np

from gmgraph.arch import NB201_OPS, Arch, format_nb201, parse_nb201
from gmgraph.errors import ArchError, DataError

ArchLike = Mapping[str, str] | str | int

SIZE = 15625
"""Number of architectures in NAS-Bench-201 (5 ops on 6 edges)."""

TABLE_FILE = "nb201.csv.gz"

_OP = "(?:" + "|".join(NB201_OPS) + ")"
_CANONICAL = re.compile(
    "[+]".join("[|]" + "[|]".join(f"{_OP}~{j}" for j in range(node)) + "[|]" for node in (1, 2, 3))
    + r"\Z"
)

TABLE_DATASETS = ("cifar10", "cifar100", "imagenet16-120", "cifar10-valid")
SPLITS = ("test", "val")
EPOCHS = (200, 12)

_PREFIX = {
    ("cifar10", "test"): "c10_test",
    ("cifar10", "val"): "c10valid_val",
    ("cifar10-valid", "val"): "c10valid_val",
    ("cifar100", "test"): "c100_test",
    ("cifar100", "val"): "c100_val",
    ("imagenet16-120", "test"): "in16_test",
    ("imagenet16-120", "val"): "in16_val",
}

_ACCURACY_COLUMNS = tuple(
    f"{prefix}_{epochs}"
    for epochs in EPOCHS
    for prefix in ("c10_test", "c10valid_val", "c100_test", "c100_val", "in16_test", "in16_val")
)

COLUMNS = ("index", "arch_str", *_ACCURACY_COLUMNS, "params_mb_c10", "flops_m_c10")
"""The table's columns, in file order."""


@dataclass(frozen=True)
class NB201Table:
    """The whole benchmark in memory.

    Attributes:
        columns: column name -> read-only array of 15,625 values in index order
            (``index`` is int64, ``arch_str`` is str, the rest float64).
        rows: canonical NB201 string -> row (equal to the official index).
    """

    columns: dict[str, np.ndarray]
    rows: dict[str, int]


# ----------------------------------------------------------------- loading


@functools.cache
def table() -> NB201Table:
    """The packaged table, read and checked on first use, then cached.

    Raises:
        DataError: if the packaged file is missing or malformed.

    Example:
        >>> t = table()
        >>> len(t.rows), float(t.columns["c10_test_200"][1]), t.columns["arch_str"][1] in t.rows
        (15625, 93.66, True)
    """
    source = resources.files(__package__).joinpath(TABLE_FILE)
    try:
        with source.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8", newline="") as text:
            return parse_table(text)
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read the packaged NAS-Bench-201 table {TABLE_FILE} ({error}); "
            "rebuild it with scripts/build_nb201_table.py"
        ) from error


def parse_table(lines: Iterable[str]) -> NB201Table:
    """Parse and check the CSV text of the table (what :func:`table` reads).

    Args:
        lines: CSV lines with the header :data:`COLUMNS` and one row per index.

    Raises:
        DataError: naming the first problem found.

    Example:
        >>> parse_table(["index,arch_str"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gmgraph.errors.DataError: NAS-Bench-201 table header is ['index', 'arch_str'], expected ...
    """
    reader = csv.reader(lines)
    header = next(reader, [])
    if tuple(header) != COLUMNS:
        raise DataError(f"NAS-Bench-201 table header is {header}, expected {list(COLUMNS)}")
    records = list(reader)
    _check_shape(records)
    values = list(zip(*records))
    columns = {
        "index": _to_array(values[0], np.int64, "index"),
        "arch_str": np.array(values[1], dtype=str),
    }
    for name, column in zip(COLUMNS[2:], values[2:]):
        columns[name] = _to_array(column, np.float64, name)
    rows = _check_columns(columns)
    for array in columns.values():
        array.setflags(write=False)
    return NB201Table(columns=columns, rows=rows)


def _check_shape(records: list[list[str]]) -> None:
    if len(records) != SIZE:
        raise DataError(f"NAS-Bench-201 table has {len(records)} rows, expected {SIZE}")
    for line, record in enumerate(records, start=2):
        if len(record) != len(COLUMNS):
            raise DataError(
                f"NAS-Bench-201 table line {line} has {len(record)} fields, expected {len(COLUMNS)}"
            )


def _to_array(column: tuple[str, ...], dtype: type, name: str) -> np.ndarray:
    try:
        array = np.array(column, dtype=dtype)
    except ValueError as error:
        raise DataError(f"NAS-Bench-201 table column {name!r}: {error}") from error
    if dtype is np.float64 and not np.isfinite(array).all():
        raise DataError(f"NAS-Bench-201 table column {name!r} holds non-finite values")
    return array


def _check_columns(columns: dict[str, np.ndarray]) -> dict[str, int]:
    if not np.array_equal(columns["index"], np.arange(SIZE)):
        raise DataError("NAS-Bench-201 table rows are not in index order 0..15624")
    rows: dict[str, int] = {}
    for row, text in enumerate(columns["arch_str"].tolist()):
        if not _CANONICAL.match(text):  # what format_nb201(parse_nb201(text)) == text means
            raise DataError(
                f"NAS-Bench-201 table row {row}: {text!r} is not a canonical NB201 string"
            )
        if text in rows:
            raise DataError(f"NAS-Bench-201 table lists {text} twice (rows {rows[text]}, {row})")
        rows[text] = row
    return rows  # SIZE distinct valid strings: every architecture is there


# ----------------------------------------------------------- architectures


def index_of(arch: ArchLike) -> int:
    """The official NAS-Bench-201 index of ``arch``.

    Args:
        arch: a mapping label -> op, an NB201 string or an index.

    Raises:
        ArchError: if ``arch`` is malformed or an index is out of range.

    Example:
        >>> index_of({"1<-0": "avg_pool_3x3", "2<-0": "nor_conv_1x1", "2<-1": "skip_connect",
        ...           "3<-0": "nor_conv_1x1", "3<-1": "skip_connect", "3<-2": "skip_connect"})
        0
    """
    if isinstance(arch, bool):
        raise ArchError("an architecture index is an int, got bool")
    if isinstance(arch, int | np.integer):
        return _check_index(int(arch))
    if isinstance(arch, str):
        return _row(format_nb201(parse_nb201(arch)))
    if isinstance(arch, Mapping):
        return _row(format_nb201(arch))
    raise ArchError(
        "an architecture is a mapping label -> op, an NB201 string or an index, "
        f"got {type(arch).__name__}"
    )


def _check_index(index: int) -> int:
    if not 0 <= index < SIZE:
        raise ArchError(f"NAS-Bench-201 index {index} is out of range 0..{SIZE - 1}")
    return index


def _row(canonical: str) -> int:
    try:
        return table().rows[canonical]
    except KeyError:  # cannot happen with the checked table: it holds every architecture
        raise DataError(f"{canonical} is missing from the NAS-Bench-201 table") from None


def arch_of(index: int) -> Arch:
    """The architecture (label -> op) at ``index``.

    Raises:
        ArchError: if ``index`` is not an int in 0..15624.

    Example:
        >>> arch_of(1)["2<-1"]
        'avg_pool_3x3'
    """
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise ArchError(f"an architecture index is an int, got {type(index).__name__}")
    return parse_nb201(str(table().columns["arch_str"][_check_index(int(index))]))


def all_archs() -> list[Arch]:
    """Every architecture (fresh dicts), in index order.

    Example:
        >>> archs = all_archs()
        >>> len(archs), archs[1] == arch_of(1)
        (15625, True)
    """
    return [parse_nb201(text) for text in table().columns["arch_str"].tolist()]


def sample(n: int, seed: int) -> list[Arch]:
    """``n`` distinct architectures drawn uniformly without replacement.

    Deterministic: ``numpy.random.default_rng(seed)`` picks the indices.

    Raises:
        DataError: unless ``1 <= n <= 15625`` and ``seed`` is a non-negative int.

    Example:
        >>> sample(2, seed=0) == sample(2, seed=0)
        True
    """
    _check_int("n", n, 1, SIZE)
    _check_int("seed", seed, 0, None)
    indices = np.random.default_rng(int(seed)).choice(SIZE, size=int(n), replace=False)
    return [arch_of(int(index)) for index in indices]


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        accepted = f"{low}..{high}" if high is not None else f">= {low}"
        raise DataError(
            f"{name}={value} is out of range: accepted {accepted} "
            f"(NAS-Bench-201 has {SIZE} architectures)"
        )


# ----------------------------------------------------------------- figures


def query(
    arch: ArchLike, dataset: str = "cifar10", split: str = "test", epochs: int = 200
) -> float:
    """Accuracy (%) of ``arch``.

    Args:
        arch: a mapping label -> op, an NB201 string or an index.
        dataset: ``"cifar10"``, ``"cifar100"``, ``"imagenet16-120"`` or
            ``"cifar10-valid"`` (only with ``split="val"``; same as cifar10 val).
        split: ``"test"`` or ``"val"``.
        epochs: 200 or 12 (the length of the training schedule).

    Raises:
        ArchError: if ``arch`` is malformed or an index is out of range.
        DataError: if ``dataset``, ``split`` or ``epochs`` is not accepted.

    Example:
        >>> query(1), query(1, "cifar10", "val"), query(1, "imagenet16-120", epochs=12)
        (93.66, 90.7693, 33.8)
    """
    column = _column(dataset, split, epochs)
    return float(table().columns[column][index_of(arch)])


def accuracies(dataset: str = "cifar10", split: str = "test", epochs: int = 200) -> np.ndarray:
    """All 15,625 accuracies (%) in index order, as a read-only float64 array.

    Arguments and errors are those of :func:`query`.

    Example:
        >>> round(float(accuracies("cifar100").max()), 2)
        73.51
    """
    return table().columns[_column(dataset, split, epochs)]


def params(arch: ArchLike) -> float:
    """Parameters of ``arch`` in millions (10-class network, 6 significant figures).

    Example:
        >>> params("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
        1.53155
    """
    return float(table().columns["params_mb_c10"][index_of(arch)])


def flops(arch: ArchLike) -> float:
    """FLOPs of ``arch`` in millions (10-class network, 32x32 inputs).

    Example:
        >>> flops(0)
        15.6474
    """
    return float(table().columns["flops_m_c10"][index_of(arch)])


def _column(dataset: str, split: str, epochs: int) -> str:
    name = dataset.lower() if isinstance(dataset, str) else dataset
    if name not in TABLE_DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; accepted: {', '.join(TABLE_DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs not in EPOCHS:
        raise DataError(f"unknown epochs {epochs!r}; accepted: {', '.join(map(str, EPOCHS))}")
    if (name, split) not in _PREFIX:
        raise DataError(
            f"dataset {dataset!r} has no {split!r} split; accepted: 'val' "
            "(for the test accuracy use dataset 'cifar10')"
        )
    return f"{_PREFIX[name, split]}_{int(epochs)}"
