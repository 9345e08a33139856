"""Supernet training: one trainer object per (sub-)supernet, one epoch at a time.

>>> import gmgraph
>>> from gmgraph import data
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
>>> result = train_supernet(gm, data.load("digits"), sampler="uniform", epochs=1, quiet=True)
>>> len(result.history), sorted(result.history[0])[:3]
(1, ['accuracy', 'epoch', 'loss'])

The trainer owns the optimizer (SGD, cosine schedule, gradient clipping), the
sampler, and the seeded order of the training data. Its whole state (weights,
architecture parameters, optimizer, scheduler, sampler, RNG streams) goes
into a checkpoint each epoch, so a resumed run ends bit-for-bit where an
uninterrupted one would. Few-shot children start with :meth:`SupernetTrainer.fork`;
:meth:`SupernetTrainer.distribute` makes a group of ranks train one supernet
data-parallel (``gmgraph.train.distributed``).
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler

from gmgraph.errors import CheckpointError, ConfigError, DataError, TrainError
from gmgraph.graph import space
from gmgraph.progress import Progress
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from gmgraph.train.samplers import SAMPLERS, Sampler, make_sampler

if TYPE_CHECKING:
    from gmgraph.train.distributed import DataParallel


@dataclass
class TrainConfig:
    """Settings of supernet training; defaults follow the NB201 reference where sensible."""

    sampler: str = "uniform"
    epochs: int = 10
    lr: float = 0.05
    lr_min: float = 0.001
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float | None = 5.0
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    sampler_options: dict = field(default_factory=dict)
    steps_per_epoch: int | None = None
    seed: int = 0

    def validate(self) -> TrainConfig:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        for name in ("lr", "arch_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise ConfigError(f"steps_per_epoch must be positive or None, got {self.steps_per_epoch!r}")
        return self


class _Indexed(Dataset):
    """Yields ``(x, y, index)`` so samplers can score individual training samples."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return x, y, i


class SupernetTrainer:
    """Trains one (sub-)supernet in place, epoch by epoch.

    Args:
        gm: the traced supernet; its weights are trained in place.
        data: ``(train, val, test)`` loaders; the training set and batch size are
            read from ``data[0]`` and shuffled here with a seeded generator.
        config: the settings.
        total_epochs: length of the cosine schedule (defaults to ``config.epochs``;
            a few-shot run passes its whole budget).
    """

    def __init__(self, gm: fx.GraphModule, data: Sequence[DataLoader], config: TrainConfig,
                 *, total_epochs: int | None = None, sampler: Sampler | None = None):
        self.gm, self.config = gm, config.validate()
        self.train_set, self.val_loader = data[0].dataset, data[1]
        self.batch_size = data[0].batch_size
        if len(self.train_set) == 0:
            raise DataError("the training set is empty")
        self.total_epochs = total_epochs or config.epochs
        self.sampler = sampler or self._make_sampler(config)
        self.param_names = [name for name, _ in gm.named_parameters()]
        self.optimizer = torch.optim.SGD(
            list(gm.parameters()), lr=config.lr, momentum=config.momentum,
            nesterov=config.nesterov, weight_decay=config.weight_decay,
        )
        arch = list(self.sampler.arch_parameters().values())
        self.arch_optimizer = torch.optim.Adam(
            arch, lr=config.arch_lr, betas=(0.5, 0.999), weight_decay=config.arch_weight_decay
        ) if arch else None
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.total_epochs, eta_min=config.lr_min
        )
        self.data_generator = torch.Generator().manual_seed(config.seed + 1)
        self.epoch = 0
        self.history: list[dict] = []
        self._checked = False  # the first batch is checked against the graph's input and output
        self.parallel: DataParallel | None = None  # None: this process trains alone

    def distribute(self, parallel: DataParallel | None) -> None:
        """Train data-parallel with ``parallel``'s group of ranks from now on (None: alone).

        Every rank of the group must call it at the same point; they start from
        the first rank's weights. See :mod:`gmgraph.train.distributed`.
        """
        self.parallel = parallel
        if parallel is not None:
            parallel.bind(self.gm, list(self.sampler.arch_parameters().values()))

    def _make_sampler(self, config: TrainConfig) -> Sampler:
        options = dict(config.sampler_options)
        if config.sampler == "pada":
            options.setdefault("dataset_size", len(self.train_set))
        return make_sampler(config.sampler, self.gm, seed=config.seed, **options)

    # -- one epoch -----------------------------------------------------------------

    def train_epoch(self, *, quiet: bool = False, title: str = "") -> dict:
        """Train one epoch and return its statistics (also appended to ``history``)."""
        self.sampler.start_epoch(self.epoch, self.total_epochs)
        if self.parallel is not None:
            self.parallel.start_epoch(self.sampler)
        loader = self._train_loader()
        steps = len(loader) if self.config.steps_per_epoch is None else min(len(loader), self.config.steps_per_epoch)
        progress = Progress(f"{title}epoch {self.epoch + 1}/{self.total_epochs}", total=steps, quiet=quiet)
        val_batches = _cycle(self.val_loader) if self.sampler.bilevel else None
        self.gm.train()
        loss_sum, correct, seen = 0.0, 0, 0
        start = time.perf_counter()
        for step, (x, y, index) in enumerate(loader):
            if step >= steps:
                break
            if val_batches is not None:
                self._arch_step(*next(val_batches))
            loss, hits = self._weight_step(x, y, index)
            n = len(y) if self.parallel is None else self.parallel.count  # the global batch
            loss_sum, correct, seen = loss_sum + loss * n, correct + hits, seen + n
            progress.update(loss=loss_sum / seen, acc=correct / seen)
        self.scheduler.step()
        if self.parallel is not None:
            self.parallel.end_epoch(self.sampler)
        self.sampler.end_epoch(self.epoch, self.total_epochs)
        self.epoch += 1
        stats = {"epoch": self.epoch, "loss": loss_sum / seen, "accuracy": correct / seen,
                 "lr": self.optimizer.param_groups[0]["lr"], "steps": steps,
                 "seconds": time.perf_counter() - start}
        progress.close()
        self.history.append(stats)
        return stats

    def _train_loader(self) -> DataLoader:
        weights = self.sampler.data_weights()
        if weights is None:
            order = RandomSampler(self.train_set, generator=self.data_generator)
        else:
            order = WeightedRandomSampler(weights.double(), len(self.train_set), replacement=True,
                                          generator=self.data_generator)
        if self.parallel is not None:  # the same global order on every rank; each loads its own slices
            return self.parallel.loader(_Indexed(self.train_set), order, self.batch_size, self.data_generator)
        return DataLoader(_Indexed(self.train_set), batch_size=self.batch_size, sampler=order,
                          generator=self.data_generator)

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[float, int]:
        self.optimizer.zero_grad(set_to_none=True)
        params = self.optimizer.param_groups[0]["params"]
        if self.parallel is None:
            with self.sampler.context():
                logits = self._forward(x, y)
            loss = F.cross_entropy(logits, y)
            value = loss.item()
            self._check_loss(value)
            loss.backward()
            hits = int((logits.argmax(1) == y).sum())
        else:
            with self.sampler.context(), self.parallel.batchnorm():
                logits = self._forward(x, y)
            value, hits = self.parallel.backward(logits, y, params)
            self._check_loss(value)  # the global loss: every rank stops together
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.config.grad_clip)
        self.sampler.after_backward()
        self.sampler.observe(logits.detach(), y, index)
        if self.parallel is not None:
            self.parallel.observed(index)
        self.optimizer.step()
        return value, hits

    def _check_loss(self, value: float) -> None:
        if not math.isfinite(value):
            raise TrainError(
                f"the loss became {value} in epoch {self.epoch + 1}; training stopped "
                "(the last checkpoint holds the last good epoch). Try a lower lr or gradient clipping."
            )

    def _arch_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.arch_optimizer.zero_grad(set_to_none=True)
        if self.parallel is None:
            with self.sampler.context():
                loss = F.cross_entropy(self._forward(x, y), y)
            loss.backward()
        else:  # every rank loaded the same validation batch: each takes its slice
            x, y = self.parallel.shard(x, y)
            with self.sampler.context(), self.parallel.batchnorm():
                logits = self._forward(x, y)
            self.parallel.backward(logits, y, self.arch_optimizer.param_groups[0]["params"])
        self.arch_optimizer.step()

    def _forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._checked:
            return self.gm(x)
        try:
            logits = self.gm(x)
        except RuntimeError as exc:
            raise DataError(
                f"the supernet cannot run on this data (batches of shape {tuple(x.shape)}): {exc}. "
                "Build the space for the data's channels and classes (e.g. in_channels=, num_classes=)."
            ) from exc
        if logits.dim() != 2 or (len(y) and logits.shape[1] <= int(y.max())):
            raise DataError(
                f"the supernet outputs shape {tuple(logits.shape)} but the data has labels up to {int(y.max())}; "
                "build the space with num_classes matching the data"
            )
        self._checked = True
        return logits

    # -- state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as tensors and plain data."""
        return {
            "model": self.gm.state_dict(),
            "space": {label: list(ops) for label, ops in space(self.gm).items()},
            "lineage": list(self.gm.meta.get("lineage", [])),
            "epoch": self.epoch,
            "total_epochs": self.total_epochs,
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict() if self.arch_optimizer else None,
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()},
            "history": list(self.history),
            "config": dataclasses.asdict(self.config),
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the graph's space must be the one it was saved from."""
        saved = {label: tuple(ops) for label, ops in state["space"].items()}
        if saved != space(self.gm):
            raise CheckpointError(f"checkpoint is for space {saved}, but this graph's space is {space(self.gm)}")
        self.gm.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.arch_optimizer is not None and state["arch_optimizer"] is not None:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        self.data_generator.set_state(state["rng"]["data"])
        self.epoch, self.total_epochs = state["epoch"], state["total_epochs"]
        self.history = list(state["history"])

    def fork(self, child: fx.GraphModule, *, inherit: bool = True) -> SupernetTrainer:
        """A trainer for a restricted child of this trainer's graph.

        With ``inherit=True`` the child continues this trainer's schedule with
        its optimizer state (momentum buffers by parameter name), architecture
        parameters and sampler state; with ``False`` it starts afresh. Its
        random streams are seeded from the run's seed and the child's lineage,
        so the result does not depend on the order children are trained in.
        """
        config = dataclasses.replace(self.config, seed=_child_seed(self.config.seed, child))
        data = (_Loader(self.train_set, self.batch_size), self.val_loader)
        if not inherit:
            return SupernetTrainer(child, data, config, total_epochs=self.total_epochs - self.epoch)
        trainer = SupernetTrainer(child, data, config, total_epochs=self.total_epochs,
                                  sampler=self.sampler.fork(child, seed=config.seed))
        trainer.optimizer.load_state_dict(_by_name(self.optimizer.state_dict(), self.param_names, trainer.param_names))
        if trainer.arch_optimizer is not None:
            trainer.arch_optimizer.load_state_dict(_restricted_arch_state(self, trainer))
        trainer.scheduler.load_state_dict(self.scheduler.state_dict())
        trainer.epoch, trainer.history = self.epoch, [dict(h) for h in self.history]
        return trainer


class _Loader:
    """What a trainer reads from a training loader: its dataset and batch size."""

    def __init__(self, dataset: Dataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size


def _cycle(loader) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise DataError("the validation set is empty; bilevel samplers (darts, gdas) need it")


def _child_seed(seed: int, child: fx.GraphModule) -> int:
    from gmgraph.passes.restrict import lineage_id

    return (seed * 1_000_003 + zlib.crc32(lineage_id(child).encode())) % (2**31)


def _by_name(state: dict, parent_names: list[str], child_names: list[str]) -> dict:
    """Map an optimizer state dict from the parent's parameter list onto the child's."""
    where = {name: i for i, name in enumerate(parent_names)}
    group = {k: v for k, v in state["param_groups"][0].items() if k != "params"}
    return {
        "state": {j: _clone(state["state"][where[n]]) for j, n in enumerate(child_names) if where[n] in state["state"]},
        "param_groups": [{**group, "params": list(range(len(child_names)))}],
    }


def _restricted_arch_state(parent: SupernetTrainer, child: SupernetTrainer) -> dict:
    """Adam state of the architecture parameters, cut to the child's candidates."""
    state = parent.arch_optimizer.state_dict()
    names = list(parent.sampler.arch_parameters())
    group = {k: v for k, v in state["param_groups"][0].items() if k != "params"}
    out = {}
    for j, name in enumerate(child.sampler.arch_parameters()):
        i = names.index(name)
        if i in state["state"]:
            label = name.split("/", 1)[1]
            keep = [parent.sampler.space[label].index(op) for op in child.sampler.space[label]]
            out[j] = {k: v[keep].clone() if torch.is_tensor(v) and v.dim() == 1 else v
                      for k, v in state["state"][i].items()}
    return {"state": out, "param_groups": [{**group, "params": list(range(len(child.sampler.arch_parameters())))}]}


def _clone(value):
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _check_same_settings(saved: dict, current: dict, path: Path) -> None:
    differ = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in differ.items())
        raise CheckpointError(f"{path} was written with other settings ({detail}); resume with the same settings")


@dataclass
class TrainResult:
    """What :func:`train_supernet` returns: the trained graph, its history and the trainer."""

    gm: fx.GraphModule
    history: list[dict]
    trainer: SupernetTrainer


def train_supernet(
    gm: fx.GraphModule,
    data: Sequence[DataLoader],
    *,
    sampler: str = "uniform",
    epochs: int = 10,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    **settings,
) -> TrainResult:
    """Train a supernet in place and return its per-epoch history.

    Args:
        gm: traced supernet (``gmgraph.trace``).
        data: ``(train, val, test)`` loaders, e.g. ``gmgraph.data.load("digits")``.
        sampler: ``uniform``, ``darts``, ``gdas`` or ``pada``.
        epochs: epochs to train.
        checkpoint_dir: where ``last.pt`` is written after every epoch (atomically).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        quiet: no progress display.
        on_epoch: called with each epoch's statistics after its checkpoint is written.
        **settings: any other :class:`TrainConfig` field (lr, weight_decay, seed, ...).

    Raises:
        ConfigError: bad settings. DataError: data the supernet cannot run on.
        TrainError: a non-finite loss. CheckpointError: a corrupt checkpoint on resume.
    """
    unknown = set(settings) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ConfigError(f"unknown training setting(s) {sorted(unknown)}")
    config = TrainConfig(sampler=sampler, epochs=epochs, **settings)
    trainer = SupernetTrainer(gm, data, config)
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if resume and last is not None and last.exists():
        state = load_checkpoint(last)
        _check_same_settings(state["config"], dataclasses.asdict(config), last)
        trainer.load_state_dict(state)
    while trainer.epoch < epochs:
        stats = trainer.train_epoch(quiet=quiet)
        if not math.isfinite(stats["loss"]):
            raise TrainError(f"non-finite mean loss in epoch {stats['epoch']}")
        if last is not None:
            save_checkpoint(trainer.state_dict(), last)
        if on_epoch is not None:
            on_epoch(stats)
    return TrainResult(gm, trainer.history, trainer)
