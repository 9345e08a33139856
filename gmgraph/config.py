"""The settings schema of a search run: four frozen dataclasses, importable without torch.

:class:`SearchSettings` holds the run-level fields and one :class:`TrainConfig`,
:class:`FewShotConfig` and :class:`SearchConfig`. Their fields are the CLI
flags, the config-file keys, the flags that start distributed workers and the
record in report.json and the checkpoint (:mod:`gmgraph.settings` makes all of
those from them). Each class checks itself once, when built, and names are
checked against the tables of :mod:`gmgraph.registry` without importing them,
so ``gmgraph search --help`` and a bad flag answer before torch loads::

    >>> from gmgraph.settings import from_mapping
    >>> s = from_mapping(SearchSettings, {"epochs": 40, "split_at": [10, 20], "search": "random"})
    >>> s.train.epochs, s.fewshot.split_at, s.search.strategy
    (40, (10, 20), 'random')
    >>> from_mapping(SearchSettings, {"seed": -5})
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: seed must be an integer of 0 or more, got -5
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gmgraph.errors import ConfigError, GmGraphError
from gmgraph.registry import (
    ARCH_TRAINED,
    DATASETS,
    DISTANCES,
    METRICS,
    PRECISIONS,
    RULES,
    SAMPLERS,
    SPACES,
    SPLITTERS,
    STRATEGIES,
    TASKS,
    dataset_key,
)
from gmgraph.settings import as_dict, nested, setting

METRIC_PREFIX = "metric:"
"""``--method metric:<name>`` splits by the distances of zero-cost metric ``<name>``."""

OBJECTIVES = {"accuracy": "max", "latency": "min", "params": "min", "flops": "min"}
"""The objectives ``--objectives`` accepts, with their senses; accuracy is the search's fitness."""

LIMITS = {"params": "max_params", "flops": "max_flops", "latency": "max_latency_ms"}
"""Measure name -> the SearchConfig field that limits it."""

PARTITION_RULES = ("largest-cut", "smallest-within")
"""How ``--method gm`` picks a label's partition and the label to split (GM-NAS on NB201, on DARTS)."""

LEAF_RESTARTS = ("none", "weights")
"""``--leaf-restart``: keep the final leaves as the split left them, or re-initialise their weights."""

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of supernet training; defaults follow the NB201 reference where sensible.

    Checked once, when built::

        >>> TrainConfig(sampler="darts", epochs=3).epochs
        3
        >>> TrainConfig(lr=0)
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: lr must be positive, got 0
    """

    sampler: str = setting("auto", "supernet training sampler; auto: pada where it can run (a classification task "
                                   "on data gmgraph indexes by sample, no --shrink), else uniform (pada picks the "
                                   "best architectures: benchmarks/results/outcome.md)",
                           choices=lambda: (AUTO_SAMPLER, *SAMPLERS))
    epochs: int = setting(30, "epochs of the whole schedule (every sub-supernet trains them all)")
    lr: float = setting(0.05, "weight learning rate (SGD, cosine schedule)")
    lr_min: float = setting(0.001, "learning rate at the end of the cosine schedule")
    momentum: float = setting(0.9, "SGD momentum")
    nesterov: bool = setting(True, "Nesterov momentum")
    weight_decay: float = setting(5e-4, "SGD weight decay")
    grad_clip: float | None = setting(5.0, "clip the gradient norm to this (none: no clipping)")
    arch_lr: float = setting(3e-4, "architecture-parameter learning rate (Adam; darts, gdas, snas, proxyless)")
    arch_weight_decay: float = setting(1e-3, "architecture-parameter weight decay")
    steps_per_epoch: int | None = setting(None, "cap training steps per epoch (quick runs)")
    device: str = setting("auto", "where to train: auto (CUDA when available), cpu, cuda or cuda:N")
    precision: str = setting("fp32", "fp32, bf16 or fp16 (autocast for forward passes; fp16 needs CUDA)",
                             choices=lambda: PRECISIONS)
    task: str | None = setting(None, "what is learned: classification (cross-entropy, accuracy), regression (MSE, "
                                     "R²) or segmentation (per-pixel cross-entropy, mean IoU); none: the data's "
                                     "own (segmentation on digits16-seg, classification elsewhere)",
                               choices=lambda: TASKS)
    latency_weight: float = setting(0.0, "darts/gdas/snas/proxyless: add this x the expected latency (ms, "
                                          "onnxruntime) to the architecture loss (snas: the training loss), as "
                                          "ProxylessNAS does (0: off)")
    cuda_graphs: bool = setting(True, "on CUDA, capture weighted (darts) steps as CUDA graphs")
    darts_order: int = setting(1, "darts: 1 first-order architecture gradient, 2 second-order (the unrolled "
                                  "weight step, finite-difference Hessian-vector product; ~3x the arch step)")
    sampler_options: dict = setting({}, "sampler keyword options", cli=False)
    sandwich_random: int = setting(2, "sandwich: random subnets trained with the largest and the smallest each step")
    distill: float = setting(1.0, "sandwich: weight w of in-place distillation; every subnet but the largest "
                                  "learns (1-w) x cross-entropy + w x KL from the largest's outputs (0: labels only)")
    shrink: str | None = setting(None, "progressive shrinking (uniform, sandwich): phases and their epochs, e.g. "
                                       "full:5,kernel:10,depth:5+5,width:5+5 (a+b: stages); see docs/elastic.md")

    def __post_init__(self):
        if self.sampler != AUTO_SAMPLER:
            _check_name("sampler", self.sampler, SAMPLERS)
        if self.task is not None:
            _check_name("task", self.task, TASKS)
        check_positive_int("epochs", self.epochs)
        for name in ("lr", "arch_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.lr_min >= 0:
            raise ConfigError(f"lr_min must be 0 or more, got {self.lr_min!r}")
        if isinstance(self.latency_weight, bool) or not self.latency_weight >= 0:
            raise ConfigError(f"latency-weight must be 0 or more, got {self.latency_weight!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        if self.steps_per_epoch is not None:
            check_positive_int("steps-per-epoch", self.steps_per_epoch)
        check_device(self.device)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        self._check_sandwich()
        if self.darts_order not in (1, 2) or isinstance(self.darts_order, bool):
            raise ConfigError(f"darts-order must be 1 or 2, got {self.darts_order!r}")
        if self.darts_order == 2 and self.sampler != "darts":
            raise ConfigError(f"--darts-order 2 is the second-order architecture gradient of DARTS: add "
                              f"--sampler darts (not {self.sampler!r})")

    def _check_sandwich(self) -> None:
        """The sandwich and shrinking settings: in range, and only where the sampler reads them."""
        if not isinstance(self.sandwich_random, int) or isinstance(self.sandwich_random, bool) \
                or self.sandwich_random < 0:
            raise ConfigError(f"sandwich-random must be 0 or more, got {self.sandwich_random!r}")
        if isinstance(self.distill, bool) or not isinstance(self.distill, numbers.Real) or not 0 <= self.distill <= 1:
            raise ConfigError(f"distill must be a number from 0 to 1, got {self.distill!r}")
        if self.sampler != "sandwich" and any(getattr(self, n) != _default(TrainConfig, n) for n in SANDWICH_ONLY):
            raise ConfigError("--sandwich-random and --distill act on the sandwich sampler: add --sampler sandwich")
        if self.shrink is not None:
            if self.sampler not in (*SHRINKING, AUTO_SAMPLER):
                raise ConfigError(f"--shrink limits the paths of the {' and '.join(SHRINKING)} samplers, "
                                  f"not {self.sampler!r}")
            length = sum(sum(stages) for _, stages in parse_shrink(self.shrink))
            if length > self.epochs:
                raise ConfigError(f"--shrink {self.shrink} lasts {length} epochs, more than the {self.epochs} "
                                  "epochs of training")

    def resolved_sampler(self, task: str = "classification", indexed: bool = True) -> str:
        """The sampler this config trains with: ``sampler``, or for ``auto`` PA&DA where it can run (a
        ``classification`` task, a training set gmgraph ``indexed`` by sample, no ``shrink`` schedule) and
        uniform elsewhere. PA&DA is the default because its supernets pick the best architectures of every
        method measured (``benchmarks/results/outcome.md``).

        >>> TrainConfig().resolved_sampler(), TrainConfig().resolved_sampler("segmentation")
        ('pada', 'uniform')
        >>> TrainConfig(sampler="darts").resolved_sampler(indexed=False)
        'darts'
        """
        if self.sampler != AUTO_SAMPLER:
            return self.sampler
        return "pada" if task == "classification" and indexed and self.shrink is None else "uniform"

    def sampler_kwargs(self) -> dict:
        """The keyword options the sampler is built with: ``sampler_options`` and the fields for it.

        >>> TrainConfig(sampler="sandwich", sandwich_random=3, shrink="kernel:2", epochs=4).sampler_kwargs()
        {'random': 3, 'distill': 1.0, 'shrink': 'kernel:2'}
        """
        options = dict(self.sampler_options)
        if self.sampler == "sandwich":
            options.setdefault("random", self.sandwich_random)
            options.setdefault("distill", self.distill)
        if self.shrink is not None:
            options.setdefault("shrink", self.shrink)
        if self.darts_order != 1:
            options.setdefault("order", self.darts_order)
        return options

    def shaping(self) -> dict:
        """The settings that shape the training's numbers (what a resume must match).

        ``device`` and ``cuda_graphs`` are left out: a run may resume on another device.
        """
        return {k: v for k, v in as_dict(self).items() if k not in ("device", "cuda_graphs")}


@dataclass(frozen=True)
class FewShotConfig:
    """The few-shot schedule; its length is the training config's ``epochs``.

    Attributes:
        method: the splitter (see the module docstring).
        split_at: epochs (0-based, before that epoch's training) at which every leaf splits.
        groups: groups per split (2 or 3; ``exhaustive`` ignores it).
        balanced: group sizes differ by at most one.
        partition_rule: how ``gm`` picks a label's partition and the label to split (:data:`PARTITION_RULES`).
        rounds: R, batches averaged by gradient matching.
        distance: gradient distance (``cos``, ``per-filter-cos``, ``mse``).
        metric_children: sampled children per metric distance (``metric:*``).
        inherit: children continue the parent's optimizer, schedule and sampler
            state (True) or restart them (False); weights are inherited either way.
        leaf_restart: ``weights`` re-initialises the final leaves (the sub-supernets after the last
            split) and trains them afresh: new weights, optimizer, sampler state and a cosine schedule over
            the remaining epochs (GM-NAS's ``--restart final``); ``none`` leaves them as ``inherit`` says.
        labels: label order for the in-order splitters (default: the space's order).

    >>> FewShotConfig(split_at=[20, 10]).split_at
    (10, 20)
    """

    method: str = setting("oneshot", "splitter; oneshot: no split (with the default sampler it picks better "
                                     "architectures than any split measured: benchmarks/results/outcome.md)",
                          choices=lambda: method_names())
    split_at: tuple[int, ...] = setting((10, 20), "epochs at which every leaf splits, e.g. 10,20")
    groups: int = setting(2, "groups per split (2 or 3)")
    balanced: bool = setting(True, "balanced groups")
    partition_rule: str = setting("largest-cut", "gm: largest-cut (GM-NAS on NB201: the label whose balanced "
                                  "split cuts most) or smallest-within (GM-NAS on DARTS: the label whose split, "
                                  "groups of 2+ ops, keeps least inside)", choices=lambda: PARTITION_RULES)
    rounds: int = setting(10, "gradient-matching batches per label")
    distance: str = setting("cos", "gradient distance", choices=lambda: DISTANCES)
    metric_children: int = setting(4, "sampled children per metric distance (metric:* methods)")
    inherit: bool = setting(True, "children inherit optimizer/schedule/sampler state")
    leaf_restart: str = setting("none", "weights: re-initialise the final leaves and train them with a fresh "
                                "cosine over the remaining epochs (GM-NAS --restart final); none: keep them",
                                choices=lambda: LEAF_RESTARTS)
    labels: tuple[str, ...] | None = setting(None, "label order of the in-order splitters (default: the space's)")

    def __post_init__(self):
        if not is_method(self.method):
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(method_names())}")
        object.__setattr__(self, "split_at", tuple(sorted(self.split_at)))  # a normal form, not a new value
        if len(set(self.split_at)) != len(self.split_at) or any(e < 1 for e in self.split_at):
            raise ConfigError(f"split epochs must be distinct and at least 1, got {list(self.split_at)}")
        if self.groups not in (2, 3):
            raise ConfigError(f"groups must be 2 or 3, got {self.groups!r}")
        if self.distance not in DISTANCES:
            raise ConfigError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        self._check_rules()
        for name in ("rounds", "metric_children"):
            check_positive_int(name.replace("_", "-"), getattr(self, name))

    def _check_rules(self) -> None:
        """The partition rule and the leaf restart: known names, and only where they act."""
        _check_name("partition-rule", self.partition_rule, PARTITION_RULES)
        _check_name("leaf-restart", self.leaf_restart, LEAF_RESTARTS)
        if self.partition_rule != "largest-cut" and self.method != "gm":
            raise ConfigError(f"--partition-rule {self.partition_rule} picks gradient matching's split: use "
                              f"--method gm (not {self.method!r})")
        if not _splits(self.method) and self.split_at not in ((), _default(FewShotConfig, "split_at")):
            raise ConfigError(f"--split-at {','.join(map(str, self.split_at))} splits the supernet, but --method "
                              f"{self.method} never splits: add --method gm (or exhaustive, random, metric:<name>)")
        if self.leaf_restart != "none" and not _splits(self.method):
            raise ConfigError(f"--leaf-restart {self.leaf_restart} restarts the leaves of a split: "
                              f"--method {self.method} never splits")

    def splits(self, epochs: int) -> tuple[int, ...]:
        """The epochs at which this schedule splits, checked against its length.

        Raises:
            ConfigError: a split epoch at or past the last epoch.
        """
        if not _splits(self.method):
            return ()
        late = [e for e in self.split_at if e >= epochs]
        if late:
            raise ConfigError(f"split epochs must be between 1 and {epochs - 1} (the schedule has {epochs} "
                              f"epochs), got {list(self.split_at)}")
        return self.split_at


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the search step of ``gmgraph search``."""

    strategy: str = setting("evolution", "search strategy", choices=lambda: tuple(STRATEGIES), flag="search")
    evaluations: int = setting(100, "architectures the search evaluates")
    bn_batches: int = setting(4, "BN recalibration batches per evaluation")
    objectives: tuple[str, ...] = setting(("accuracy",), "what --search pareto optimises, from "
                                          "accuracy, latency, params, flops")
    max_params: float | None = setting(None, "most parameters (millions) a searched architecture may have")
    max_flops: float | None = setting(None, "most FLOPs (millions) a searched architecture may have")
    max_latency_ms: float | None = setting(None, "most latency (ms) a searched architecture may have")

    def __post_init__(self):
        _check_name("search", self.strategy, STRATEGIES)
        check_positive_int("evaluations", self.evaluations)
        if not isinstance(self.bn_batches, int) or isinstance(self.bn_batches, bool) or self.bn_batches < 0:
            raise ConfigError(f"bn-batches must be 0 or more, got {self.bn_batches!r}")
        object.__setattr__(self, "objectives", _objective_names(self.objectives))
        if self.objectives != ("accuracy",) and self.strategy != "pareto":
            raise ConfigError(f"--objectives {','.join(self.objectives)} needs --search pareto "
                              f"(--search {self.strategy} maximises accuracy alone)")
        for name in LIMITS.values():
            check_maximum(name.replace("_", "-"), getattr(self, name))

    def limits(self) -> dict[str, float | None]:
        """Measure name -> its maximum (``None``: no limit).

        Example:
            >>> SearchConfig(max_params=0.5).limits()
            {'params': 0.5, 'flops': None, 'latency': None}
        """
        return {measure: getattr(self, name) for measure, name in LIMITS.items()}


def supernet_size(data: str) -> tuple[int, int]:
    """``(width, cells)`` a search on ``data`` uses when neither is given.

    NB201's own size (C=16, N=5) everywhere but on the bundled 16x16 tasks, which use the
    size of their ground truth (``benchmarks/data/digits16_201.csv``: C=8, N=1): there the
    architecture decides the accuracy, and the default search stays within about a minute.

    >>> supernet_size("digits16"), supernet_size("cifar10")
    ((8, 1), (16, 5))
    """
    return SMALL_TASK_SIZE if dataset_key(data) in SMALL_TASKS else NB201_SIZE


NB201_SIZE = (16, 5)
SMALL_TASKS = ("digits16", "clutter16")
SMALL_TASK_SIZE = (8, 1)


@dataclass(frozen=True)
class SearchSettings:
    """Every setting of a search run. The CLI flags, config-file keys, the flags that start
    distributed workers and the record in report.json and the checkpoint all come from these fields
    (:mod:`gmgraph.settings`). Checked once, when built."""

    space: str = setting("nb201", "search space", choices=lambda: tuple(SPACES))
    model: str | None = setting(None, "your own network instead of a ready space: module:function (or "
                                      "path/to/file.py:function) returning an nn.Module with Choices, or a plain "
                                      "model with --rules; called with num_classes/in_channels/width/cells where "
                                      "its signature names them")
    rules: str | None = setting(None, "turn --model's plain network into a supernet by these rules, comma-separated: "
                                      "conv_kernels, depthwise_kernels, elastic_depth, elastic_expansions, "
                                      "elastic_kernels, elastic_stage_widths, elastic_widths, "
                                      "inverted_residual_expansions, mlp_ratios")
    data: str = setting("digits16", "dataset, or your own: module:function (or path/to/file.py:function) "
                                    "returning (train, val, test) DataLoaders, Datasets or lists of batches",
                        choices=lambda: tuple(DATASETS))
    data_root: str | None = setting(None, "folder holding the dataset files (not needed for digits/synthetic)")
    image_size: int | None = setting(None, "resize every image to N x N (bilinear) before it reaches the network; "
                                           "none: the data's own size (an imagefolder's images must then share one)")
    width: int | None = setting(None, "channels of the first stage (NB201's C); none: the data's size, "
                                      f"{SMALL_TASK_SIZE[0]} on {'/'.join(SMALL_TASKS)}, {NB201_SIZE[0]} elsewhere")
    cells: int | None = setting(None, "cells per stage (NB201's N); none: the data's size, "
                                      f"{SMALL_TASK_SIZE[1]} on {'/'.join(SMALL_TASKS)}, {NB201_SIZE[1]} elsewhere")
    kernel_transform: bool = setting(False, "OFA's learned kernel transform matrices: a smaller elastic kernel is "
                                            "the larger one's centre times a learned matrix (spaces with elastic "
                                            "kernels only: ofa, or --model with --rules elastic_kernels)")
    batch_size: int = setting(64, "training batch size")
    seed: int = setting(0, "seeds data order, training, scoring and search")
    threads: int | None = setting(None, "torch threads per process for CPU work (torch.set_num_threads); fewer "
                                        "are faster on a busy machine but change the numbers slightly; none: "
                                        "torch's default, one per core")
    final_epochs: int = setting(10, "train the chosen arch from scratch for this many epochs, with the [train] "
                                    "settings (lr, lr-min, momentum, nesterov, weight-decay, grad-clip, "
                                    "steps-per-epoch, device, precision); 0: keep the supernet's weights")
    export: bool = setting(True, "end the run by exporting the chosen network to best.onnx and checking it in "
                                 "onnxruntime (a few seconds); false: skip it, `gmgraph export --run DIR` "
                                 "writes it later from best.pt")
    html: bool = setting(True, "end the run by drawing report.html and its plots (matplotlib, about half a "
                               "second); false: report.json only (for many runs in a row), `gmgraph report DIR` "
                               "draws it later")
    log_dir: str | None = setting(None, "also write the run's curves here: epochs.csv and splits.csv, and "
                                        "TensorBoard events under tensorboard/ when tensorboard is installed")
    train: TrainConfig = nested(TrainConfig)
    fewshot: FewShotConfig = nested(FewShotConfig)
    search: SearchConfig = nested(SearchConfig)

    def __post_init__(self):
        _check_model(self)
        if not is_reference(self.space):
            _check_name("space", self.space, SPACES)
        for name in ("export", "html"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        _check_kernel_transform(self.space, self.kernel_transform, self.rules)
        key = self.data if is_reference(self.data) else dataset_key(self.data)
        if key is None:
            raise ConfigError(f"unknown dataset {self.data!r}; choose one of {', '.join(DATASETS)}, or give your "
                              "own as --data module:function")
        object.__setattr__(self, "data", key)  # frozen: one spelling in records, resume checks and workers
        width, cells = supernet_size(key)
        if self.width is None:  # the data's size is filled in once, here
            object.__setattr__(self, "width", width)
        if self.cells is None:
            object.__setattr__(self, "cells", cells)
        for name in ("width", "cells", "batch_size"):
            check_positive_int(name.replace("_", "-"), getattr(self, name))
        for name in ("image_size", "threads"):  # none: the data's size, torch's default
            value = getattr(self, name)
            if value is not None:
                check_positive_int(name.replace("_", "-"), value)
        if self.image_size is not None and key == "synthetic":
            raise ConfigError("--image-size resizes the images of a dataset; synthetic images are generated "
                              "at their size (3x32x32), so leave it out")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer of 0 or more, got {self.seed!r}")
        if not isinstance(self.final_epochs, int) or isinstance(self.final_epochs, bool) or self.final_epochs < 0:
            raise ConfigError(f"final-epochs must be 0 or more, got {self.final_epochs!r}")
        if self.train.latency_weight > 0 and not _trains_arch(self.train.sampler):
            raise ConfigError(f"--latency-weight acts on architecture parameters: use --sampler "
                              f"{' or '.join(ARCH_TRAINED)} (or limit latency with --max-latency-ms)")
        if self.search.strategy == "argmax" and not _trains_arch(self.train.sampler):
            raise ConfigError(f"--search argmax reads architecture parameters: use --sampler "
                              f"{' or '.join(ARCH_TRAINED)}")
        self.fewshot.splits(self.train.epochs)  # split epochs must fall inside the schedule
        # Whether this machine has the device is not a setting: a run resolves it once, when it starts
        # (gmgraph.device.training_device), so settings built on one machine mean the same on another.

    def final_train(self) -> TrainConfig | None:
        """The settings of the final training (the chosen arch from scratch); None when ``final_epochs`` is 0.

        They are the ``[train]`` settings with ``epochs`` = ``final_epochs``, less what acts on
        architecture choices, which a derived network has none of (``uniform`` sampler, no sampler
        options, no latency weight): every optimiser setting the user gives reaches both trainings.

        >>> s = SearchSettings(final_epochs=3, train=TrainConfig(sampler="darts", momentum=0.5, steps_per_epoch=2))
        >>> f = s.final_train()
        >>> f.epochs, f.momentum, f.steps_per_epoch, f.sampler
        (3, 0.5, 2, 'uniform')
        """
        if self.final_epochs == 0:
            return None
        plain = {name: _default(TrainConfig, name)  # one path, no schedule, no architecture gradient
                 for name in (*SANDWICH_ONLY, "shrink", "darts_order")}
        return replace(self.train, epochs=self.final_epochs, sampler="uniform", sampler_options={}, latency_weight=0.0,
                       **plain)

    def shaping(self) -> dict:
        """The run-level settings that shape the supernets (a resume must match them).

        Not among them: ``data_root`` (a dataset may move), ``final_epochs``, ``export``, ``html`` and the
        search settings (they act after training), and the device and ``threads`` (a run may resume on
        another machine; see :meth:`TrainConfig.shaping`).
        """
        return {"space": self.space, "rules": self.rules, "data": self.data, "image_size": self.image_size,
                "width": self.width, "cells": self.cells, "kernel_transform": self.kernel_transform,
                "batch_size": self.batch_size}


# ------------------------------------------------------------------ checks shared by the classes


def method_names() -> tuple[str, ...]:
    """Every accepted splitter name: the table's and one ``metric:<name>`` per zero-cost metric.

    >>> method_names()[:4]
    ('oneshot', 'exhaustive', 'gm', 'random')
    """
    return tuple(SPLITTERS) + tuple(METRIC_PREFIX + m for m in METRICS)


def is_method(name: object) -> bool:
    """Whether ``name`` is an accepted splitter (imports nothing)."""
    if not isinstance(name, str):
        return False
    return name in SPLITTERS or (name.startswith(METRIC_PREFIX) and name[len(METRIC_PREFIX):] in METRICS)


def _splits(method: str) -> bool:
    """Whether splitter ``method`` ever splits (the one-shot splitter does not)."""
    if method.startswith(METRIC_PREFIX) or method in _SPLITTING:
        return True
    if method == "oneshot":
        return False
    # One added from outside is an object: it never splits only if it is the one-shot splitter itself, which
    # it can only be if its module is imported (the schema imports no splitter to find out).
    entry, never = SPLITTERS.loaded(method), SPLITTERS.loaded("oneshot")
    return entry is None or never is None or entry is not never


def _trains_arch(sampler: str) -> bool:
    """Whether ``sampler`` trains architecture parameters (:data:`~gmgraph.registry.ARCH_TRAINED`: bilevel
    or joint), without importing any sampler."""
    entry = SAMPLERS.loaded(sampler)
    if entry is None:
        return sampler in ARCH_TRAINED
    return bool(getattr(entry, "bilevel", False) or getattr(entry, "joint", False))


_SPLITTING = ("exhaustive", "gm", "random")

KERNEL_TRANSFORM_SPACES = ("ofa",)
"""The built-in spaces with elastic kernels, which take ``--kernel-transform`` (``SpaceSpec.kernel_transform``)."""


def check_device(name: str) -> str:
    """``name`` if it is a device gmgraph accepts (not whether this machine has it).

    Raises:
        ConfigError: naming the accepted forms.

    >>> check_device("cuda:1")
    'cuda:1'
    """
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"device {name!r} is not one of auto, cpu, cuda, cuda:N")
    return name


def check_positive_int(name: str, value: object, *, error: type[GmGraphError] = ConfigError) -> int:
    """``value`` if it is an integer of 1 or more (a bool is not); else ``error`` naming ``name`` as given.

    The one positive-integer check of the package: settings, library arguments and flags all use it.

    >>> check_positive_int("epochs", 3)
    3
    >>> check_positive_int("--top", True)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --top must be a positive integer, got True
    """
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return value


def check_maximum(name: str, value: object) -> None:
    """Raise ConfigError unless ``value`` is ``None`` (no limit) or a finite number > 0.

    Example:
        >>> check_maximum("max-params", None); check_maximum("max-params", 0.5)
        >>> check_maximum("max-params", 0)
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: max-params must be a positive number (or none for no limit), got 0
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive number (or none for no limit), got {value!r}")


SANDWICH_ONLY = ("sandwich_random", "distill")
"""The TrainConfig fields only the sandwich sampler reads (other samplers refuse values other than the default)."""


def _default(cls: type, name: str):
    """The default a dataclass declares for its field ``name``."""
    return cls.__dataclass_fields__[name].default


SHRINK_PHASES = ("full", "kernel", "depth", "width")
"""Phases of progressive shrinking: ``full`` trains the largest values only; ``kernel``, ``depth`` and
``width`` each add the smaller values of the labels of that kind (:mod:`gmgraph.label_sizes`)."""

AUTO_SAMPLER = "auto"
"""The default ``--sampler``: PA&DA where it can run, uniform elsewhere (:meth:`TrainConfig.resolved_sampler`)."""

SHRINKING = ("uniform", "sandwich")
"""The samplers that follow a ``--shrink`` schedule."""


def parse_shrink(text: object) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """A progressive-shrinking schedule: ``"phase:epochs,..."``, each phase's epochs split into stages by ``+``.

    Each phase (from :data:`SHRINK_PHASES`, each at most once, in any order) lasts its stages' epochs;
    the stages of a phase add the smaller values of its labels a share at a time (docs/elastic.md).

    >>> parse_shrink("full:2, kernel:3, depth:2+2")
    (('full', (2,)), ('kernel', (3,)), ('depth', (2, 2)))
    >>> parse_shrink("kernel:3,kernel:1")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: shrink phase 'kernel' appears twice in 'kernel:3,kernel:1'
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"shrink must be phases like kernel:10,depth:5+5,width:5+5, got {text!r}")
    phases: list[tuple[str, tuple[int, ...]]] = []
    for part in text.split(","):
        name, colon, epochs = (p.strip() for p in part.partition(":"))
        stages = epochs.split("+")
        if not colon or not all(s.strip().isdigit() and int(s) > 0 for s in stages):
            raise ConfigError(f"shrink phase {part.strip()!r} must be <phase>:<epochs>[+<epochs>...] with positive "
                              f"epochs, e.g. depth:5+5; in {text!r}")
        if name not in SHRINK_PHASES:
            raise ConfigError(f"unknown shrink phase {name!r}; choose from {', '.join(SHRINK_PHASES)}")
        if any(name == seen for seen, _ in phases):
            raise ConfigError(f"shrink phase {name!r} appears twice in {text!r}")
        phases.append((name, tuple(int(s) for s in stages)))
    return tuple(phases)


def rules_make_elastic_kernels(rules: str | Sequence[str] | None) -> bool:
    """Whether ``--rules`` make elastic kernels, which ``--kernel-transform`` acts on.

    >>> rules_make_elastic_kernels("elastic_expansions,elastic_kernels"), rules_make_elastic_kernels("conv_kernels")
    (True, False)
    """
    return "elastic_kernels" in parse_rules(rules)


def check_model_kernel_transform(reference: str, rules: str | Sequence[str] | None) -> None:
    """Refuse ``--kernel-transform`` for a user's model (``--model reference``) whose rules make no elastic kernel."""
    if not rules_make_elastic_kernels(rules):
        given = ",".join(parse_rules(rules)) or "(none)"
        raise ConfigError(f"--kernel-transform acts on elastic kernels; --model {reference} with --rules {given} "
                          "has none (add elastic_kernels to --rules)")


def _check_kernel_transform(space: str, value: object, rules: str | None = None) -> None:
    """``--kernel-transform``: a bool, true only for a space with elastic kernels (no space is imported): a
    built-in that has them, or a user's model (``--model``) whose ``--rules`` include ``elastic_kernels``.

    >>> _check_kernel_transform("mynets:tiny", True, "elastic_kernels,elastic_expansions")
    >>> _check_kernel_transform("mynets:tiny", True, "elastic_expansions")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --kernel-transform acts on elastic kernels; --model mynets:tiny with --rules elastic_expansions has none (add elastic_kernels to --rules)
    """
    if not isinstance(value, bool):
        raise ConfigError(f"kernel-transform must be true or false, got {value!r}")
    if is_reference(space):
        if value:
            check_model_kernel_transform(space, rules)
        return
    entry = SPACES.loaded(space)  # a loaded spec says itself (SpaceSpec.kernel_transform); else the built-ins' list
    takes = space in KERNEL_TRANSFORM_SPACES if entry is None else bool(getattr(entry, "kernel_transform", False))
    if value and not takes:
        raise ConfigError(f"--kernel-transform acts on elastic kernels; the {space} space has none "
                          "(use it with --space ofa)")


def is_reference(name: object) -> bool:
    """Whether ``name`` reads as ``module:function`` (a user's model, ``--model``) rather than a space's name.

    >>> is_reference("nb201"), is_reference("mynets:tiny"), is_reference("nets/tiny.py:build")
    (False, True, True)
    """
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, function = name.split(":")
    return bool(module.strip()) and function.isidentifier()


def parse_rules(value: object) -> tuple[str, ...]:
    """``--rules``: ``"conv_kernels, mlp_ratios"`` (or a sequence of names) as a checked tuple; None is no rule.

    >>> parse_rules(" conv_kernels, depthwise_kernels ")
    ('conv_kernels', 'depthwise_kernels')

    Raises:
        ConfigError: an unknown rule, naming the known ones.
    """
    if value is None:
        return ()
    names = tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else tuple(value)
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ConfigError(f"unknown rule(s) {', '.join(map(str, unknown))} in --rules; choose from {', '.join(RULES)}")
    return names


def _check_model(settings: SearchSettings) -> None:
    """``--model`` names the space (its reference becomes ``space``); ``--rules`` need a model (nothing imported).

    >>> SearchSettings(model="mynets:tiny", rules="conv_kernels").space
    'mynets:tiny'
    >>> SearchSettings(rules="conv_kernels")
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --rules turn your own model into a supernet: give it with --model module:function
    """
    if settings.model is not None:
        if not is_reference(settings.model):
            raise ConfigError(f"--model takes module:function (or path/to/file.py:function), got {settings.model!r}")
        if settings.space not in (_default(SearchSettings, "space"), settings.model):
            raise ConfigError(f"give --space or --model, not both (--space {settings.space}, --model {settings.model})")
        object.__setattr__(settings, "space", settings.model)  # the run's space is the model: codecs, records
    if settings.rules is not None:
        if not is_reference(settings.space):
            raise ConfigError("--rules turn your own model into a supernet: give it with --model module:function")
        object.__setattr__(settings, "rules", ",".join(parse_rules(settings.rules)) or None)


def _check_name(kind: str, name: object, table: Mapping) -> None:
    if name not in table:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(table)}")


def _objective_names(value: object) -> tuple[str, ...]:
    """``"accuracy,params"`` or a sequence of names as a checked tuple."""
    names = tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value
    if not isinstance(names, tuple | list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"objectives must be names from {', '.join(OBJECTIVES)}, e.g. accuracy,params; "
                          f"got {value!r}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"unknown objective {unknown[0]!r}; choose from {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"each objective may be named once, got {','.join(names)}")
    return tuple(names)
