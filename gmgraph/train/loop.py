"""Supernet training: one trainer object per (sub-)supernet, one epoch at a time.

>>> import gmgraph
>>> from gmgraph import data
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
>>> trainer = SupernetTrainer(gm, data.load("digits"), TrainConfig(epochs=1, steps_per_epoch=2), seed=0)
>>> sorted(trainer.train_epoch(quiet=True))[:3]
['accuracy', 'epoch', 'loss']

This is the one training engine: :func:`gmgraph.train.fewshot.run_fewshot`
(and :func:`~gmgraph.train.fewshot.train_supernet`, its one-shot entry point)
and the final training of a chosen network in ``gmgraph search`` all step it.

The trainer owns the optimizer (SGD, cosine schedule, gradient clipping), the
sampler, and the seeded order of the training data. Its whole state (weights,
architecture parameters, optimizer, scheduler, sampler, RNG streams) goes
into a checkpoint each epoch, so a resumed run ends bit-for-bit where an
uninterrupted one would. Few-shot children start with :meth:`SupernetTrainer.fork`;
:meth:`SupernetTrainer.distribute` makes a group of ranks train one supernet
data-parallel (``gmgraph.train.data_parallel``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import fx, nn
from torch.utils.data import DataLoader

from gmgraph.config import TrainConfig
from gmgraph.device import (
    autocast,
    grad_scaler,
    to_device,
    training_device,
)
from gmgraph.errors import CheckpointError, ConfigError, DataError, TrainError
from gmgraph.graph import space
from gmgraph.passes.restrict import lineage_id
from gmgraph.progress import Progress, epoch_steps, log
from gmgraph.sampler_table import make_sampler
from gmgraph.samplers import SAMPLERS, Sampler, borrowed
from gmgraph.seeding import derived_seed
from gmgraph.settings import as_dict
from gmgraph.task import Task, get_task, split_batch
from gmgraph.train.cuda_graphs import GraphedStep, capture
from gmgraph.train.sandwich import sandwich_pass
from gmgraph.train.training_data import TrainingData, cycled
from gmgraph.train.unrolled import second_order_pass

if TYPE_CHECKING:
    from gmgraph.train.data_parallel import DataParallel


ArchPenalty = Callable[[Mapping[str, torch.Tensor], Mapping[str, Sequence[str]]], torch.Tensor]
"""An extra architecture-loss term ``(alphas, space) -> scalar`` (:class:`gmgraph.train.penalty.LatencyPenalty`)."""

PhaseHook = Callable[[fx.GraphModule, str, torch.optim.Optimizer], "str | None"]
"""A space's step when a progressive-shrinking phase starts: ``(gm, phase, optimizer) -> note | None``
(:attr:`gmgraph.spaces.SpaceSpec.before_phase`; OFA re-sorts channels before ``width``)."""


class SupernetTrainer:
    """Trains one (sub-)supernet in place, epoch by epoch.

    Args:
        gm: the traced supernet; its weights are trained in place.
        data: ``(train, val, test)`` loaders; the training set and batch size are
            read from ``data[0]`` and shuffled here with a seeded generator.
        config: the settings.
        seed: seeds the sampler and the data order (children derive theirs from it).
        total_epochs: length of the cosine schedule (defaults to ``config.epochs``).
        device: where to train, as a run resolved it once (:func:`gmgraph.device.training_device`);
            default ``config.device`` resolved here. Children (:meth:`fork`) train where their parent does.
        before_phase: run on ``gm`` (with the optimizer, whose state it must keep in step with any weights it
            moves) before the first epoch of each phase of the sampler's ``--shrink`` schedule; a note it
            returns is printed and kept in that epoch's history (``before_phase``). Children inherit it.
    """

    def __init__(self, gm: fx.GraphModule, data: Sequence[DataLoader], config: TrainConfig | None = None,
                 *, seed: int = 0, total_epochs: int | None = None, sampler: Sampler | None = None,
                 arch_penalty: ArchPenalty | None = None, device: torch.device | None = None,
                 before_phase: PhaseHook | None = None, task: Task | str | None = None):
        self.gm, self.config, self.seed = gm, config or TrainConfig(), seed
        self.task = get_task(task if task is not None else self.config.task or "classification")
        self.before_phase = before_phase
        self.arch_penalty, self._space = arch_penalty, space(gm)
        self.device = training_device(self.config.device if device is None else device, self.config.precision)
        self.data = TrainingData(data[0])  # the user's loader honoured (gmgraph.train.training_data)
        self.val_loader = data[1] if len(data) > 1 else None
        self.total_epochs = total_epochs or self.config.epochs
        gm.to(self.device)
        self.sampler = sampler or self._make_sampler(self.config)
        self.sampler.to(self.device)  # before the optimizers: they hold the alphas themselves
        self.param_names = [name for name, _ in gm.named_parameters()]
        self.optimizer = torch.optim.SGD(
            list(gm.parameters()), lr=self.config.lr, momentum=self.config.momentum,
            nesterov=self.config.nesterov, weight_decay=self.config.weight_decay,
        )
        arch = list(self.sampler.arch_parameters().values())
        self.arch_optimizer = torch.optim.Adam(
            arch, lr=self.config.arch_lr, betas=(0.5, 0.999), weight_decay=self.config.arch_weight_decay
        ) if arch else None
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=self.total_epochs, eta_min=self.config.lr_min
        )
        self.scaler = grad_scaler(self.device, self.config.precision)
        self.data_generator = torch.Generator().manual_seed(seed + 1)
        self.epoch = 0
        self.history: list[dict] = []
        self._checked = False  # the first batch is checked against the graph's input and output
        self.parallel: DataParallel | None = None  # None: this process trains alone
        self._graphs: dict[str, GraphedStep | None] = {}  # captured steps ("weights", "arch"); None: capture failed

    @property
    def graphed(self) -> bool:
        """Whether steps run as CUDA graphs (CUDA, a weighted sampler, one process, no fp16 scaler)."""
        return (self.device.type == "cuda" and self.config.cuda_graphs and self.sampler.static_graph
                and self.parallel is None and self.scaler is None)

    def distribute(self, parallel: DataParallel | None) -> None:
        """Train data-parallel with ``parallel``'s group of ranks from now on (None: alone).

        Every rank of the group must call it at the same point; they start from
        the first rank's weights. See :mod:`gmgraph.train.data_parallel`.
        """
        if parallel is not None and self.sampler.multi_path:
            raise TrainError(f"the {self.sampler.name} sampler trains in one process (its paths' losses are not "
                             "averaged across ranks); run without --nproc")
        if parallel is not None and self.sampler.single_process:
            raise TrainError(f"the {self.sampler.name} sampler trains in one process (its own architecture step is "
                             "not averaged across ranks); run without --nproc")
        self.parallel = parallel
        if parallel is not None:
            parallel.bind(self.gm, list(self.sampler.arch_parameters().values()))

    def _make_sampler(self, config: TrainConfig) -> Sampler:
        options = config.sampler_kwargs()
        name = config.resolved_sampler(self.task.name, self.data.indexed)  # "auto": pada where it can run
        if SAMPLERS[name].scores_data:  # it keeps a score per training sample
            if not self.data.indexed:
                raise ConfigError(f"the {name} sampler keeps a score per training sample, which needs a "
                                  "map-style training dataset loaded in gmgraph's order (not an IterableDataset, "
                                  "a list of batches or a loader with a sampler of its own)")
            options.setdefault("dataset_size", self.data.size)
        return make_sampler(name, self.gm, seed=self.seed, **options)

    # -- one epoch -----------------------------------------------------------------

    def train_epoch(self, *, quiet: bool = False, title: str = "") -> dict:
        """Train one epoch and return its statistics (also appended to ``history``).

        Losses and the task's metric statistics (hits, for classification) add up on the device; they are
        read back at most once a
        second for the progress line and once at the end of the epoch, so a
        step never waits for the GPU. A non-finite loss stops training at the
        next read with :class:`~gmgraph.errors.TrainError`.
        """
        note = self._phase_starts(quiet, title)
        self.sampler.start_epoch(self.epoch, self.total_epochs)
        if self.parallel is not None:
            self.parallel.start_epoch(self.sampler)
        loader = self._train_loader()
        steps = epoch_steps(self.data.batches_per_epoch(), self.config.steps_per_epoch)
        progress = Progress(f"{title}epoch {self.epoch + 1}/{self.total_epochs}", total=steps, quiet=quiet,
                            job_steps=1)  # a step of a planned job (gmgraph.progress.JobEstimate)
        val_batches = _cycle(self.val_loader) if self.sampler.bilevel else None
        self.gm.train()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # loss * n, n
        stats = None  # the task's metric statistics, summed
        start, ran = time.perf_counter(), 0
        for step, (x, y, index) in enumerate(loader):
            if steps is not None and step >= steps:
                break
            ran = step + 1
            loss, part = self.train_step(x, y, index, next(val_batches) if val_batches is not None else None)
            n = len(y) if self.parallel is None else self.parallel.count  # the global batch
            totals[0] += loss.double() * n  # device ops with Python scalars: nothing is read back
            totals[1] += n
            stats = part if stats is None else stats + part
            if progress.due():
                progress.update(**self._read(totals, stats))
            else:
                progress.update()
        if ran == 0:
            raise DataError("the training data yielded no batch this epoch")
        means = self._read(totals, stats)  # the epoch's one read back; a non-finite loss stops here
        self.scheduler.step()
        if self.parallel is not None:
            self.parallel.end_epoch(self.sampler)
        self.sampler.end_epoch(self.epoch, self.total_epochs)
        self.epoch += 1
        val_accuracy = self._val_accuracy(batches=max(1, ran // 10))  # ~3% of the epoch's work: forward only
        stats = {"epoch": self.epoch, "loss": means["loss"], "accuracy": means[self._metric_field],
                 "lr": self.optimizer.param_groups[0]["lr"], "steps": ran, "seconds": time.perf_counter() - start}
        if val_accuracy is not None:
            stats["val_accuracy"] = val_accuracy
        if note is not None:
            stats["before_phase"] = note
        progress.close(**means)  # the epoch's means (not the last live reading), fixed decimals
        self.history.append(stats)
        return stats

    def _phase_starts(self, quiet: bool, title: str) -> str | None:
        """Run ``before_phase`` if the sampler's shrinking schedule starts a phase this epoch: ``phase: note``."""
        schedule = getattr(self.sampler, "shrink", None)
        phase = schedule.starting(self.epoch) if schedule is not None and self.before_phase is not None else None
        note = self.before_phase(self.gm, phase, self.optimizer) if phase is not None else None
        if note is None:
            return None
        log(f"{title}before the {phase} phase (epoch {self.epoch + 1}): {note}", quiet=quiet)
        return f"{phase}: {note}"

    def _val_accuracy(self, batches: int) -> float | None:
        """Accuracy of sampled paths on the first ``batches`` validation batches (the report's validation curve).

        Measured as the training accuracy is (one path per batch, BatchNorm on
        the batch's statistics), so the two curves compare; the paths come from
        a stream of their own and no running statistics change, so training
        goes on exactly as without it. None without validation data.
        """
        if self.val_loader is None:
            return None
        paths = torch.Generator().manual_seed(derived_seed(self.seed, f"val@{self.epoch}"))
        stats = None
        with torch.no_grad(), _batch_statistics(self.gm):
            for batch in itertools.islice(self.val_loader, batches):
                x, y = to_device(split_batch(batch), self.device)
                with borrowed(self.sampler, paths), autocast(self.device, self.config.precision):
                    part = self.task.statistics(self.gm(x), y)
                stats = part if stats is None else stats + part
        return self.task.value(stats) if stats is not None else None  # the one read back

    def _read(self, totals: torch.Tensor, stats: torch.Tensor | None) -> dict:
        """Mean loss and the task's metric so far: the one read back."""
        both = torch.cat([totals, stats]) if stats is not None else totals
        loss_sum, seen, *rest = both.tolist()
        self._check_loss(loss_sum / seen)
        return {"loss": loss_sum / seen,
                self._metric_field: self.task.value(torch.tensor(rest, dtype=torch.float64))}

    @property
    def _metric_field(self) -> str:
        """The progress line's name of the task's metric: ``acc`` for accuracy, else the metric's own (``miou``).
        The history keeps it as ``accuracy`` whatever the task (the report names the metric)."""
        return "acc" if self.task.metric == "accuracy" else self.task.metric

    def _train_loader(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """This epoch's ``(x, y, positions)`` in the trainer's seeded order (PA&DA's weights, when it has them);
        in a data-parallel group, the same global order on every rank, each loading its own slices."""
        return self.data.epoch(self.data_generator, self.sampler.data_weights(), self.parallel,
                               pin_memory=self.device.type == "cuda")

    @property
    def train_set(self):
        """The training dataset (None for data given as a list of batches)."""
        return self.data.dataset

    @property
    def batch_size(self) -> int | None:
        """Samples per training batch (the user's loader's)."""
        return self.data.batch_size

    def train_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None,
                   val_batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step: an architecture step on ``val_batch`` (bilevel samplers), then a weight step.

        Returns the batch's mean loss and number of correct predictions as
        device tensors (reading them back is the caller's choice).
        """
        x, y = to_device((x, y), self.device)
        if val_batch is not None and self.arch_optimizer is not None and self.sampler.bilevel:
            self._arch_step(*to_device(tuple(val_batch[:2]), self.device), train=(x, y))
        if index is None:  # no dataset positions: sample 0 stands in (made on the device, nothing to copy)
            index = torch.zeros(len(y), dtype=torch.long, device=self.device)
        return self._weight_step(x, y, index)

    def _weight_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = self.optimizer.param_groups[0]["params"]
        joint = self._joint
        if self.parallel is not None:
            self.optimizer.zero_grad(set_to_none=True)
            if joint:
                self.arch_optimizer.zero_grad(set_to_none=True)
            with self._alphas_fixed(), self.sampler.context(), self.parallel.batchnorm():
                logits = self._forward(x, y)
            arch = self.arch_optimizer.param_groups[0]["params"] if joint else []
            value, stats = self.parallel.backward(logits, y, [*params, *arch], self.task)
            if joint and self.arch_penalty is not None:  # the same alphas on every rank: the same gradient
                self._penalty().backward()
            self._check_loss(value)  # the global loss: every rank stops together
            loss = torch.tensor(value, device=self.device)
        else:
            loss, stats, logits = self._run("weights", self._weight_pass, x, y)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            if joint:
                self.scaler.unscale_(self.arch_optimizer)
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.config.grad_clip)
        self.sampler.after_backward()
        self.sampler.observe(logits.detach(), y, index)
        if self.parallel is not None:
            self.parallel.observed(index)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # fp16: skips steps with inf gradients (one host read inside)
            if joint:
                self.scaler.step(self.arch_optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
            if joint:  # a joint sampler's alphas learn from the same loss, after the weights (SNAS)
                self.arch_optimizer.step()
        return loss, stats

    @property
    def _joint(self) -> bool:
        """Whether the weight step's loss also trains the architecture parameters (``Sampler.joint``: SNAS)."""
        return self.sampler.joint and self.arch_optimizer is not None

    def _weight_pass(self, x: torch.Tensor, y: torch.Tensor):
        """Forward and backward of the weight step: ``(loss, metric statistics, logits)`` as device tensors."""
        if self.sampler.multi_path:  # sandwich: several paths, gradients added
            return sandwich_pass(self, x, y)
        self.optimizer.zero_grad(set_to_none=not self.graphed)  # a graph writes into the same .grad tensors
        optimizers = [self.optimizer]
        if self._joint:
            self.arch_optimizer.zero_grad(set_to_none=not self.graphed)
            optimizers.append(self.arch_optimizer)
        with self._alphas_fixed(), self.sampler.context(), autocast(self.device, self.config.precision):
            logits = self._forward(x, y)
            loss = self.task.loss(logits.float(), y)
        total = loss + self._penalty() if self._joint and self.arch_penalty is not None else loss
        self._backward(self.scaler.scale(total) if self.scaler is not None else total, *optimizers)
        return loss.detach(), self.task.statistics(logits.detach(), y), logits.detach()

    @contextlib.contextmanager
    def _alphas_fixed(self) -> Iterator[None]:
        """The weight step's forward with the architecture parameters as constants.

        Autograd then records nothing toward them: the unfused weighted sum keeps
        no candidate outputs for an alpha gradient, and the fused kernel's
        backward skips its weight gradient (one read of every candidate output).
        """
        if self.sampler.joint:  # the weight step's loss trains them too
            yield
            return
        alphas = [a for a in self.sampler.arch_parameters().values() if a.requires_grad]
        for alpha in alphas:
            alpha.requires_grad_(False)
        try:
            yield
        finally:
            for alpha in alphas:
                alpha.requires_grad_(True)

    @staticmethod
    def _backward(loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """``loss.backward()`` into the parameters ``optimizers`` step, and no others.

        The architecture step then computes no weight gradients (every conv's
        weight gradient), and the weight step, whose alphas are constants
        anyway (:meth:`_alphas_fixed`), no alpha gradients: the same updates
        with fewer kernels. Measured by ``benchmarks/bench_backward.py`` against a
        full backward.
        """
        params = [p for optimizer in optimizers for group in optimizer.param_groups for p in group["params"]
                  if p.requires_grad]
        loss.backward(inputs=params or None)

    def _run(self, name: str, fn, x: torch.Tensor, y: torch.Tensor):
        """``fn(x, y)``: replayed from its CUDA graph where steps are graphed (captured on first use, after
        the first step checked the data), eagerly otherwise, for a batch of another shape, or where capture failed."""
        if self._checked and self.graphed:
            if name not in self._graphs:
                pool = next((g.pool for g in self._graphs.values() if g is not None), None)
                self._graphs[name] = capture(fn, (x, y), self.gm, what=f"{name} step", pool=pool)
            graph = self._graphs[name]
            if graph is not None and graph.fits(x, y):
                return graph(x, y)
        return fn(x, y)

    def _check_loss(self, value: float) -> None:
        if not math.isfinite(value):
            raise TrainError(
                f"the loss became {value} in epoch {self.epoch + 1}; training stopped "
                "(the last checkpoint holds the last good epoch). Try a lower lr or gradient clipping."
            )

    def _arch_step(self, x: torch.Tensor, y: torch.Tensor,
                   train: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if self.parallel is None and train is not None and self.sampler.arch_pass(self, (x, y), train) is not None:
            self.arch_optimizer.step()  # the sampler's own architecture gradient (see Sampler.arch_pass)
            return
        if self.parallel is not None:  # every rank loaded the same validation batch: each takes its slice
            self.arch_optimizer.zero_grad(set_to_none=True)
            x, y = self.parallel.shard(x, y)
            with self.sampler.context(), self.parallel.batchnorm():
                logits = self._forward(x, y)
            self.parallel.backward(logits, y, self.arch_optimizer.param_groups[0]["params"], self.task)
            if self.arch_penalty is not None:  # the same alphas on every rank: the same gradient
                self._penalty().backward()
        else:
            self._run("arch", self._arch_pass, x, y)
        self.arch_optimizer.step()

    def second_order_pass(self, val: tuple[torch.Tensor, torch.Tensor],
                          train: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Second-order DARTS's architecture gradient into the alphas (:mod:`gmgraph.train.unrolled`)."""
        return second_order_pass(self, val, train)

    def _arch_pass(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.arch_optimizer.zero_grad(set_to_none=not self.graphed)
        with self.sampler.context(), autocast(self.device, self.config.precision):
            loss = self.task.loss(self._forward(x, y).float(), y)
        if self.arch_penalty is not None:
            loss = loss + self._penalty()
        self._backward(loss, self.arch_optimizer)
        return loss.detach()

    def _penalty(self) -> torch.Tensor:
        """The architecture loss's extra term (e.g. ``--latency-weight`` x expected latency)."""
        return self.arch_penalty(self.sampler.alphas, self._space)

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
        self.task.check(logits, y)  # the first batch: shapes, dtype and target range, said in one line
        self._checked = True
        return logits

    # -- state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as CPU tensors and plain data: a snapshot that later steps leave alone."""
        rng = {"torch": torch.get_rng_state(), "data": self.data_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return on_cpu({
            "model": self.gm.state_dict(),
            "space": {label: list(ops) for label, ops in space(self.gm).items()},
            "lineage": list(self.gm.meta.get("lineage", [])),
            "epoch": self.epoch,
            "total_epochs": self.total_epochs,
            "optimizer": self.optimizer.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict() if self.arch_optimizer else None,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "history": list(self.history),
            "config": as_dict(self.config),
            "device": str(self.device),
            "seed": self.seed,
        })

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
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:  # a run resumed on another device starts it afresh
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
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
        seed = derived_seed(self.seed, lineage_id(child))
        data = (self.data, self.val_loader)
        if not inherit:
            return SupernetTrainer(child, data, self.config, seed=seed, total_epochs=self.total_epochs - self.epoch,
                                   arch_penalty=self.arch_penalty, device=self.device, before_phase=self.before_phase,
                                   task=self.task)
        trainer = SupernetTrainer(child, data, self.config, seed=seed, total_epochs=self.total_epochs,
                                  sampler=self.sampler.fork(child, seed=seed), arch_penalty=self.arch_penalty,
                                  device=self.device, before_phase=self.before_phase, task=self.task)
        trainer.optimizer.load_state_dict(_by_name(self.optimizer.state_dict(), _places(self.gm), trainer.param_names))
        if trainer.arch_optimizer is not None:
            trainer.arch_optimizer.load_state_dict(_restricted_arch_state(self, trainer))
        trainer.scheduler.load_state_dict(self.scheduler.state_dict())
        trainer.epoch, trainer.history = self.epoch, [dict(h) for h in self.history]
        return trainer


@contextlib.contextmanager
def _batch_statistics(gm: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout), except that every BatchNorm normalises with the batch's statistics and records none."""
    norms = [m for m in gm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.track_running_stats) for m in norms]
    training = gm.training
    gm.eval()
    for norm in norms:
        norm.train()
        norm.track_running_stats = False  # batch statistics, running ones neither read nor updated
    try:
        yield
    finally:
        for norm, track in saved:
            norm.track_running_stats = track
        gm.train(training)


def _cycle(loader) -> Iterator:
    return cycled(loader, "the validation set is empty; bilevel samplers (darts, gdas) need it")


def _places(gm: nn.Module) -> dict[str, int]:
    """Every name of each parameter -> its place in the optimizer (``named_parameters()`` order).

    A tensor shared by several candidates (an elastic choice's views) has several names; a split may drop the
    view whose name came first, so the child knows the tensor by another of them.
    """
    place = {id(p): i for i, (_, p) in enumerate(gm.named_parameters())}
    return {name: place[id(p)] for name, p in gm.named_parameters(remove_duplicate=False)}


def _by_name(state: dict, where: dict[str, int], child_names: list[str]) -> dict:
    """Map an optimizer state dict from the parent's parameters (``where``: name -> place) onto the child's."""
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
            # every tensor copied: Adam's 0-d ``step`` too, or the siblings would count each other's steps
            out[j] = {k: (v[keep].clone() if v.dim() == 1 else v.clone()) if torch.is_tensor(v) else v
                      for k, v in state["state"][i].items()}
    return {"state": out, "param_groups": [{**group, "params": list(range(len(child.sampler.arch_parameters())))}]}


def on_cpu(value):
    """``value`` with every tensor copied to the CPU: checkpoints load on any device, and a state taken
    now stays as it is while training goes on (on the CPU too, where ``.cpu()`` alone would alias).

    Example:
        >>> w = torch.zeros(2)
        >>> saved = on_cpu({"w": w})
        >>> _ = w.add_(1)
        >>> saved["w"].tolist()
        [0.0, 0.0]
    """
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(on_cpu(v) for v in value)
    return value


def _clone(value):
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value
