"""The training split as a trainer reads it: a user's own DataLoader honoured, with the order seeded.

A trainer needs three things from its training data: a reproducible order (its
generator is checkpointed, so a resumed run draws the same batches), each
sample's position in the dataset (PA&DA keeps a score per sample), and fresh
batches for split scoring. :class:`TrainingData` gets them from what a user has:

* a **DataLoader** over a map-style dataset: every epoch is loaded by a loader
  with the user's ``batch_size``, ``collate_fn``, ``num_workers``, ``drop_last``,
  ``pin_memory``, ``worker_init_fn``, ``timeout`` and ``prefetch_factor``. Only the
  order is the trainer's: a shuffling loader's ``RandomSampler`` is re-seeded from
  the trainer's generator (the one change, made so runs repeat), a
  non-shuffling one stays in order, and a loader with a sampler or batch sampler
  of its own is iterated as given (its order is then the user's to seed). The
  user's ``collate_fn`` is called on the user's samples; the positions travel
  beside them;
* a **Dataset**: batches of ``batch_size`` (64 unless given), shuffled by the trainer;
* a DataLoader over an **IterableDataset**, or a **list of batches**: iterated as
  given every epoch (no positions: PA&DA refuses them; an iterable without a
  length runs until it is exhausted or ``--steps-per-epoch``).

Batches may be ``(x, y, ...)`` tuples or dicts (:func:`gmgraph.task.split_batch`)::

    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> calls = []
    >>> def collate(samples):
    ...     calls.append(len(samples))
    ...     return {"image": torch.stack([x for x, _ in samples]), "label": torch.stack([y for _, y in samples])}
    >>> user = DataLoader(TensorDataset(torch.randn(10, 2), torch.arange(10)), batch_size=4, shuffle=True,
    ...                   collate_fn=collate)
    >>> data = TrainingData(user)
    >>> [(tuple(x.shape), index.tolist()) for x, y, index in data.epoch(torch.Generator().manual_seed(0))][0]
    ((4, 2), [3, 7, 5, 2])
    >>> calls, data.batches_per_epoch(), data.size
    ([4, 4, 2], 3, 10)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    WeightedRandomSampler,
)
from torch.utils.data.dataloader import default_collate

from gmgraph.errors import ConfigError, DataError
from gmgraph.task import split_batch

DEFAULT_BATCH = 64
"""Batch size for a Dataset given without a loader (``gmgraph search``'s default)."""

_KEPT = ("num_workers", "drop_last", "pin_memory", "worker_init_fn", "timeout", "prefetch_factor",
         "persistent_workers", "multiprocessing_context")
"""The options of a user's DataLoader that every epoch's loader keeps."""


class TrainingData:
    """A training split and how to load it (see the module's docstring).

    Args:
        source: a DataLoader, a Dataset, a sequence of batches, or any object with ``dataset`` and
            ``batch_size`` (shuffled by the trainer).
        batch_size: for a bare Dataset (default :data:`DEFAULT_BATCH`); a loader's own is kept.
    """

    def __init__(self, source: object, batch_size: int | None = None):
        if isinstance(source, TrainingData):  # a child's trainer reads its parent's
            self.__dict__.update(source.__dict__)
            return
        self.source = source
        if isinstance(source, DataLoader):
            self.dataset = source.dataset
            self.batch_size = source.batch_size if source.batch_size is not None else _batch_of(source)
        elif isinstance(source, Dataset):
            self.dataset, self.batch_size = source, batch_size or DEFAULT_BATCH
        elif hasattr(source, "dataset") and hasattr(source, "batch_size"):  # loader-like: what it holds, shuffled
            self.dataset, self.batch_size = source.dataset, source.batch_size
        elif isinstance(source, Sequence) and not isinstance(source, str | bytes):
            self.dataset, self.batch_size = None, None
        else:
            raise DataError(f"training data must be a DataLoader, a Dataset or a list of batches, got "
                            f"{type(source).__name__}")
        self.size = _length(self.dataset) if self.dataset is not None else None
        if self.size == 0 or (self.dataset is None and len(source) == 0):
            raise DataError("the training set is empty")

    @property
    def indexed(self) -> bool:
        """Whether batches carry each sample's position (a map-style dataset, loaded in the trainer's order)."""
        return self.size is not None and self._reorderable()

    def batches_per_epoch(self) -> int | None:
        """Batches of one epoch (None: an iterable that does not say)."""
        if self.dataset is None:
            return len(self.source)
        if self.size is not None and self._reorderable():
            full, rest = divmod(self.size, self.batch_size)
            return full + (1 if rest and not getattr(self.source, "drop_last", False) else 0)
        try:
            return len(self.source)
        except TypeError:
            return None

    def epoch(self, generator: torch.Generator, weights: torch.Tensor | None = None, parallel=None,
              *, pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """One epoch's batches as ``(x, y, positions or None)``, in the order ``generator`` draws.

        ``weights``: draw samples with replacement by these weights (PA&DA). ``parallel``: this rank's
        slices of the global batches (:class:`~gmgraph.train.data_parallel.DataParallel`). ``pin_memory``:
        pin the batches (training on a GPU) even where the user's loader does not.
        """
        if weights is not None and not self.indexed:
            raise ConfigError("this sampler draws training samples by weight, which needs a map-style dataset "
                              "loaded in gmgraph's order (not an IterableDataset, a list of batches or a loader "
                              "with a sampler of its own)")
        if not self.indexed:
            if parallel is not None:
                raise ConfigError("training on several processes needs a map-style training dataset (each rank "
                                  "loads its slices of every batch)")
            for batch in self.source:
                x, y = split_batch(batch)
                yield x, y, None
            return
        order = self._order(generator, weights)
        collate = _Positions(getattr(self.source, "collate_fn", None) or default_collate)
        if parallel is not None:
            loader = parallel.loader(_WithPosition(self.dataset), order, self.batch_size, generator, collate)
        else:
            options = self._options()
            options["pin_memory"] = bool(options.get("pin_memory")) or pin_memory
            loader = DataLoader(_WithPosition(self.dataset), batch_size=self.batch_size, sampler=order,
                                generator=generator, collate_fn=collate, **options)
        for samples, positions in loader:
            x, y = split_batch(samples)
            yield x, y, positions

    def scoring_batches(self, seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An endless stream of fresh ``(x, y)`` batches for split scoring, seeded by ``seed`` alone.

        The few-shot driver seeds it per sub-supernet and epoch, so a decision never depends on what was drawn
        before it (resumed runs and any order of sub-supernets decide the same). Data the trainer cannot
        reorder (an iterable, a list of batches) is read in its own order.
        """
        if self.indexed:
            batches = DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True,
                                 generator=torch.Generator().manual_seed(seed),
                                 collate_fn=getattr(self.source, "collate_fn", None) or default_collate)
        else:
            batches = self.source
        return cycled(batches, "the training data yielded no batch")

    def _reorderable(self) -> bool:
        """A map-style dataset whose order is a plain shuffle or sequence (the trainer may draw it)."""
        if isinstance(self.dataset, IterableDataset):
            return False
        if not isinstance(self.source, DataLoader):
            return True
        sampler = self.source.sampler
        return self.source.batch_size is not None and type(sampler) in (RandomSampler, SequentialSampler)

    def _shuffles(self) -> bool:
        return not isinstance(self.source, DataLoader) or isinstance(self.source.sampler, RandomSampler)

    def _order(self, generator: torch.Generator, weights: torch.Tensor | None):
        if weights is not None:
            return WeightedRandomSampler(weights.double(), self.size, replacement=True, generator=generator)
        if self._shuffles():
            return RandomSampler(self.dataset, generator=generator)  # the user's shuffle, re-seeded
        return SequentialSampler(self.dataset)

    def _options(self) -> dict:
        if not isinstance(self.source, DataLoader):
            return {}
        options = {name: getattr(self.source, name) for name in _KEPT if hasattr(self.source, name)}
        if not options.get("num_workers"):
            options.pop("prefetch_factor", None)
            options.pop("persistent_workers", None)
            options.pop("multiprocessing_context", None)
        return options


class _WithPosition(Dataset):
    """A map-style dataset whose samples come with their position: ``(sample, i)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i], i


class _Positions:
    """The user's collation of the samples, and the positions beside it (a class: workers pickle it)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, pairs: list):
        return self.collate([sample for sample, _ in pairs]), torch.tensor([i for _, i in pairs], dtype=torch.long)


def _length(dataset: object) -> int | None:
    if isinstance(dataset, IterableDataset):
        return None
    try:
        return len(dataset)
    except TypeError:
        return None


def _batch_of(loader: DataLoader) -> int | None:
    """The batch size of a loader built with a batch sampler (None where it does not say)."""
    return getattr(loader.batch_sampler, "batch_size", None)


def cycled(batches, empty: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` of ``batches`` (any iterable of batches) again and again; :class:`DataError` ``empty`` if it
    yields none.

    >>> [int(y) for _, (x, y) in zip(range(3), cycled([(torch.zeros(1), torch.ones(1))], "empty"))]
    [1, 1, 1]
    """
    while True:
        seen = False
        for batch in batches:
            seen = True
            yield split_batch(batch)
        if not seen:
            raise DataError(empty)
