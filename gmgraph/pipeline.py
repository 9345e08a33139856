"""The whole few-shot NAS job behind ``gmgraph search``: data, space, training, splits, search, report.

>>> settings = SearchSettings(epochs=2, split_at=(1,), width=4, cells=1, rounds=1, evaluations=4,
...                           final_epochs=1, steps_per_epoch=2)
>>> report = run_search(settings, out="/tmp/gmgraph-doctest-run", quiet=True)   # doctest: +SKIP
>>> sorted(report)[:3]                                                          # doctest: +SKIP
['arch', 'budget', 'final']
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

import gmgraph
from gmgraph import data as datasets
from gmgraph import spaces
from gmgraph.errors import ConfigError
from gmgraph.graph import space, space_size, trace
from gmgraph.passes.derive import derive
from gmgraph.progress import Progress, log
from gmgraph.report import write_run
from gmgraph.search import SearchResult, argmax, evaluate, evolution, random_search
from gmgraph.search.evaluate import accuracy
from gmgraph.train import distributed
from gmgraph.train.fewshot import METHODS, FewShotConfig, FewShotResult, locate, run
from gmgraph.train.loop import SupernetTrainer, TrainConfig
from gmgraph.train.samplers import SAMPLERS

SEARCHES = ("evolution", "random", "argmax")


@dataclass
class SearchSettings:
    """Every setting of a search run; CLI flags and config-file keys mirror these names."""

    space: str = "nb201"
    data: str = "digits"
    data_root: str | None = None
    method: str = "gm"
    sampler: str = "uniform"
    epochs: int = 30
    split_at: tuple[int, ...] = (10, 20)
    groups: int = 2
    balanced: bool = True
    rounds: int = 10
    distance: str = "cos"
    inherit: bool = True
    search: str = "evolution"
    evaluations: int = 100
    bn_batches: int = 4
    final_epochs: int = 10
    width: int = 16
    cells: int = 5
    batch_size: int = 64
    lr: float = 0.05
    steps_per_epoch: int | None = None
    seed: int = 0

    def validate(self) -> SearchSettings:
        checks = [("space", tuple(spaces.REGISTRY)), ("method", METHODS), ("sampler", SAMPLERS), ("search", SEARCHES)]
        for name, accepted in checks:
            if getattr(self, name) not in accepted:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)!r} is not one of {', '.join(accepted)}")
        for name in ("epochs", "evaluations", "width", "cells", "batch_size", "rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.final_epochs < 0 or self.bn_batches < 0:
            raise ConfigError("--final-epochs and --bn-batches must be 0 or more")
        if self.search == "argmax" and self.sampler not in ("darts", "gdas"):
            raise ConfigError("--search argmax reads architecture parameters: use --sampler darts or gdas")
        self.split_at = tuple(self.split_at) if self.method != "oneshot" else ()
        self.fewshot()  # validates the schedule
        return self

    def fewshot(self) -> FewShotConfig:
        return FewShotConfig(
            method=self.method, epochs=self.epochs, split_at=tuple(self.split_at), groups=self.groups,
            balanced=self.balanced, rounds=self.rounds, distance=self.distance, inherit=self.inherit, seed=self.seed,
        ).validate()

    def training(self) -> TrainConfig:
        return TrainConfig(sampler=self.sampler, epochs=self.epochs, lr=self.lr,
                           steps_per_epoch=self.steps_per_epoch, seed=self.seed)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SearchSettings:
        """Settings from a config file's keys (``split-at`` and ``split_at`` both work)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        out = {}
        for raw, value in values.items():
            name = raw.replace("-", "_")
            if name not in fields:
                raise ConfigError(f"unknown setting {raw!r}; known settings: {', '.join(sorted(fields))}")
            out[name] = tuple(value) if name == "split_at" else value
        return cls(**out)


def build_supernet(settings: SearchSettings, shape: tuple[int, ...], num_classes: int) -> fx.GraphModule:
    """The root supernet of ``settings.space`` for images of ``shape`` and ``num_classes``."""
    torch.manual_seed(settings.seed)
    model = spaces.get(settings.space).build(width=settings.width, cells=settings.cells,
                                             num_classes=num_classes, in_channels=shape[0])
    return trace(model)


def run_search(settings: SearchSettings, out: str | Path, *, resume: bool = False, quiet: bool = False) -> dict | None:
    """Run the whole job, write ``out/report.json``, ``out/arch.txt`` and checkpoints; return the report.

    In a distributed run every rank calls it: the ranks share the supernet
    training (see :func:`gmgraph.train.fewshot.run`); the search, the final
    training and the report are rank 0's alone, and the other ranks return None.
    """
    settings.validate()
    team = distributed.team()
    quiet = quiet or (team is not None and not team.is_root)  # only rank 0 prints
    out = Path(out)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    loaders = datasets.load(settings.data, root=settings.data_root, batch_size=settings.batch_size, seed=settings.seed)
    info = datasets.info(loaders)
    gm = build_supernet(settings, info.shape, info.num_classes)
    log(f"search space {settings.space}: {space_size(gm)} architectures, {len(space(gm))} decisions; "
        f"data {info.name} {info.shape} x {info.sizes[0]} training images", quiet=quiet)
    shared = spaces.get(settings.space).shared
    result = run(gm, loaders, settings.fewshot(), settings.training(), shared=shared,
                 checkpoint=out / "checkpoint.pt", resume=resume, quiet=quiet)
    timings["scoring_seconds"] = result.timings.get("scoring_seconds", 0.0)
    timings["train_seconds"] = result.timings.get("total_seconds", 0.0) - timings["scoring_seconds"]
    if team is not None and not team.is_root:
        return None
    t = time.perf_counter()
    calib = _calibration(loaders, settings)  # drawn once: search and final evaluation share them
    found = _search(settings, gm, result, loaders, calib, quiet)
    timings["search_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    final = _final(settings, result, found, loaders, calib, quiet)
    timings["final_seconds"] = time.perf_counter() - t
    timings["total_seconds"] = time.perf_counter() - start
    report = _report(settings, gm, result, found, final, timings)
    report["input_shape"], report["num_classes"] = list(info.shape), info.num_classes
    write_run(out, report, final.pop("model"))
    _deployables(out, quiet)
    return report


def _deployables(out: Path, quiet: bool) -> None:
    """best.onnx (verified in onnxruntime) and report.html with its drawings, next to report.json."""
    from gmgraph.commands.export import export_run
    from gmgraph.report_html import render_run

    log(f"wrote {export_run(out)} (checked in onnxruntime)", quiet=quiet)
    log(f"wrote {render_run(out)}", quiet=quiet)


def _calibration(loaders, settings: SearchSettings) -> list:
    # Fixed calibration batches: every candidate is recalibrated on the same images.
    return list(itertools.islice(loaders.train, settings.bn_batches))


def _search(settings: SearchSettings, root: fx.GraphModule, result: FewShotResult, loaders, calib: list,
            quiet: bool):
    def fitness(arch):
        leaf = locate(result, arch)
        return evaluate(leaf.gm, arch, loaders.val, calib_loader=calib, bn_batches=settings.bn_batches)

    bar = Progress("search", total=settings.evaluations, quiet=quiet)
    best = [0.0]

    def progress(step, arch, value):
        best[0] = max(best[0], value)
        bar.update(best_val_acc=best[0])

    full = space(root)
    if settings.search == "argmax":
        candidates = [argmax(leaf.trainer.sampler.alphas, leaf.space) for leaf in result.leaves]
        scored = [(arch, fitness(arch)) for arch in candidates]  # one candidate per leaf
        found = SearchResult.from_history(scored, evaluations=len(scored))
    elif settings.search == "random":
        found = random_search(full, fitness, n=settings.evaluations, seed=settings.seed, progress=progress)
    else:
        population = min(20, settings.evaluations)
        found = evolution(full, fitness, population=population, sample_size=min(5, population),
                          cycles=max(settings.evaluations - population, 0), seed=settings.seed, progress=progress)
    bar.close(evaluations=found.evaluations)
    return found


def _final(settings: SearchSettings, result: FewShotResult, found, loaders, calib: list, quiet: bool) -> dict:
    """Test accuracy of the chosen arch on shared weights, and after standalone training from scratch."""
    arch = found.best
    leaf = locate(result, arch)
    final = {
        "leaf": leaf.id,
        "supernet_val_accuracy": found.best_fitness,  # the search measured it on the same calibration batches
        "supernet_test_accuracy": evaluate(leaf.gm, arch, loaders.test, calib_loader=calib, bn_batches=settings.bn_batches),
        "standalone_epochs": settings.final_epochs,
    }
    net = derive(leaf.gm, arch, inherit=settings.final_epochs == 0)
    final["params"] = sum(p.numel() for p in net.parameters())
    if settings.final_epochs > 0:
        config = TrainConfig(epochs=settings.final_epochs, lr=settings.lr, seed=settings.seed)
        trainer = SupernetTrainer(net, loaders, config)
        for _ in range(settings.final_epochs):
            trainer.train_epoch(quiet=quiet, title="[final] ")
        final["standalone_test_accuracy"] = accuracy(net.eval(), loaders.test)
    final["model"] = net
    return final


def _report(settings, root, result: FewShotResult, found, final: dict, timings: dict) -> dict:
    arch = found.best
    report: dict[str, Any] = {
        "gmgraph_version": gmgraph.__version__,
        "settings": dataclasses.asdict(settings),
        "space": {label: list(ops) for label, ops in space(root).items()},
        "space_size": space_size(root),
        "split_tree": result.tree,
        "leaves": [_leaf_report(leaf, found) for leaf in result.leaves],
        "search": {"strategy": settings.search, "evaluations": found.evaluations, "best_fitness": found.best_fitness},
        "arch": arch,
        "final": final,
        "budget": {"supernet_epochs": result.budget, "epochs": settings.epochs},
        "timings": timings,
    }
    spec = spaces.get(settings.space)
    if spec.to_str is not None:
        report["arch_str"] = spec.to_str(arch)
    if settings.space == "nb201":
        from gmgraph.nasbench import nb201 as table

        report["oracle"] = {"note": "NAS-Bench-201 lookup of the chosen arch (CIFAR-10 test, 200 epochs); "
                                    "a reference only, not what the search optimised",
                            "nb201_cifar10_test": table.query(arch)}
    return report


def _leaf_report(leaf, found) -> dict:
    inside = [(a, f) for a, f in found.history if leaf.contains(a)]
    best = max(inside, key=lambda p: p[1]) if inside else (None, None)
    return {
        "id": leaf.id,
        "space": {label: list(ops) for label, ops in leaf.space.items()},
        "space_size": space_size(leaf.gm),
        "history": leaf.trainer.history,
        "evaluated": len(inside),
        "best_arch": best[0],
        "best_val_accuracy": best[1],
    }
