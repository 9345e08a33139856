"""The whole few-shot NAS job behind ``gmgraph search``: data, space, training, splits, search, report.

>>> settings = SearchSettings(width=4, cells=1, final_epochs=1, train=TrainConfig(epochs=2, steps_per_epoch=2),
...                           fewshot=FewShotConfig(split_at=(1,), rounds=1), search=SearchConfig(evaluations=4))
>>> settings.fewshot.split_at, settings.train.epochs
((1,), 2)
>>> report = run_search(settings, out="/tmp/gmgraph-doctest-run", quiet=True)   # doctest: +SKIP
"""

from __future__ import annotations

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
from gmgraph.device import check_precision, resolve_device
from gmgraph.errors import ConfigError
from gmgraph.graph import space, space_size, trace
from gmgraph.passes.derive import derive
from gmgraph.progress import Progress, log
from gmgraph.run import export_run, write_report
from gmgraph.samplers import SAMPLERS
from gmgraph.search import STRATEGIES, SearchConfig, SearchContext, evaluate
from gmgraph.search.evaluation import accuracy
from gmgraph.settings import as_dict, nested, setting
from gmgraph.train import distributed
from gmgraph.train.fewshot import FewShotConfig, FewShotResult, locate, run_fewshot
from gmgraph.train.loop import SupernetTrainer, TrainConfig


@dataclass(frozen=True)
class SearchSettings:
    """Every setting of a search run. The CLI flags, config-file keys, the flags that start
    distributed workers and the record in report.json and the checkpoint all come from these fields
    (:mod:`gmgraph.settings`). Checked once, when built."""

    space: str = setting("nb201", "search space", choices=lambda: tuple(spaces.REGISTRY))
    data: str = setting("digits", "dataset", choices=lambda: tuple(datasets.DATASETS))
    data_root: str | None = setting(None, "folder holding the dataset files (not needed for digits/synthetic)")
    width: int = setting(16, "channels of the first stage (NB201's C)")
    cells: int = setting(5, "cells per stage (NB201's N)")
    batch_size: int = setting(64, "training batch size")
    seed: int = setting(0, "seeds data order, training, scoring and search")
    final_epochs: int = setting(10, "train the chosen arch from scratch for this many epochs (0: keep the supernet's weights)")
    train: TrainConfig = nested(TrainConfig)
    fewshot: FewShotConfig = nested(FewShotConfig)
    search: SearchConfig = nested(SearchConfig)

    def __post_init__(self):
        if self.space not in spaces.REGISTRY:
            raise ConfigError(f"unknown space {self.space!r}; choose one of {', '.join(spaces.REGISTRY)}")
        if self.data.lower().replace("_", "-") not in datasets.DATASETS:
            raise ConfigError(f"unknown dataset {self.data!r}; choose one of {', '.join(datasets.DATASETS)}")
        for name in ("width", "cells", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be an integer of 0 or more, got {self.seed!r}")
        if not isinstance(self.final_epochs, int) or isinstance(self.final_epochs, bool) or self.final_epochs < 0:
            raise ConfigError(f"final-epochs must be 0 or more, got {self.final_epochs!r}")
        if self.search.strategy == "argmax" and not SAMPLERS[self.train.sampler].bilevel:
            raise ConfigError("--search argmax reads architecture parameters: use --sampler darts or gdas")
        self.fewshot.splits(self.train.epochs)  # split epochs must fall inside the schedule
        check_precision(self.train.precision, resolve_device(self.train.device))  # this machine has the device

    def shaping(self) -> dict:
        """The run-level settings that shape the supernets (a resume must match them).

        Not among them: ``data_root`` (a dataset may move), ``final_epochs`` and the
        search settings (they act after training), and the device (see :meth:`TrainConfig.shaping`).
        """
        return {"space": self.space, "data": self.data, "width": self.width, "cells": self.cells,
                "batch_size": self.batch_size}


def build_supernet(settings: SearchSettings, shape: tuple[int, ...], num_classes: int) -> fx.GraphModule:
    """The root supernet of ``settings.space`` for images of ``shape`` and ``num_classes``."""
    torch.manual_seed(settings.seed)
    model = spaces.get(settings.space).build(width=settings.width, cells=settings.cells,
                                             num_classes=num_classes, in_channels=shape[0])
    return trace(model)


def run_search(settings: SearchSettings, out: str | Path, *, resume: bool = False, quiet: bool = False) -> dict | None:
    """Run the whole job; write the run folder (:mod:`gmgraph.run`) and return the report.

    In a distributed run every rank calls it: the ranks share the supernet
    training (see :func:`gmgraph.train.fewshot.run_fewshot`); the search, the
    final training and the report are rank 0's alone, and the other ranks return None.
    """
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
    result = run_fewshot(gm, loaders, settings.fewshot, settings.train, seed=settings.seed,
                         shared=spaces.get(settings.space).shared, checkpoint=out / "checkpoint.pt",
                         resume=resume, quiet=quiet, record=settings.shaping())
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
    write_report(out, report, final.pop("model"))
    _deployables(out, quiet)
    return report


def _deployables(out: Path, quiet: bool) -> None:
    """best.onnx (verified in onnxruntime) and report.html with its drawings, next to report.json."""
    from gmgraph.report_html import render_run

    log(f"wrote {export_run(out)} (checked in onnxruntime)", quiet=quiet)
    log(f"wrote {render_run(out)}", quiet=quiet)


def _calibration(loaders, settings: SearchSettings) -> list:
    # Fixed calibration batches: every candidate is recalibrated on the same images.
    return list(itertools.islice(loaders.train, settings.search.bn_batches))


def _search(settings: SearchSettings, root: fx.GraphModule, result: FewShotResult, loaders, calib: list,
            quiet: bool):
    def fitness(arch):
        leaf = locate(result, arch)
        return evaluate(leaf.gm, arch, loaders.val, calib_loader=calib, bn_batches=settings.search.bn_batches)

    bar = Progress("search", total=settings.search.evaluations, quiet=quiet)
    best = [0.0]

    def progress(step, arch, value):
        best[0] = max(best[0], value)
        bar.update(best_val_acc=best[0])

    alphas = [(leaf.trainer.sampler.alphas, leaf.space) for leaf in result.leaves
              if hasattr(leaf.trainer.sampler, "alphas")]
    context = SearchContext(space(root), fitness, evaluations=settings.search.evaluations, seed=settings.seed,
                            progress=progress, alphas=alphas)
    found = STRATEGIES[settings.search.strategy](context)
    bar.close(evaluations=found.evaluations)
    return found


def _final(settings: SearchSettings, result: FewShotResult, found, loaders, calib: list, quiet: bool) -> dict:
    """Test accuracy of the chosen arch on shared weights, and after standalone training from scratch."""
    arch = found.best
    leaf = locate(result, arch)
    final = {
        "leaf": leaf.id,
        "supernet_val_accuracy": found.best_fitness,  # the search measured it on the same calibration batches
        "supernet_test_accuracy": evaluate(leaf.gm, arch, loaders.test, calib_loader=calib,
                                           bn_batches=settings.search.bn_batches),
        "standalone_epochs": settings.final_epochs,
    }
    net = derive(leaf.gm, arch, inherit=settings.final_epochs == 0)
    final["params"] = sum(p.numel() for p in net.parameters())
    if settings.final_epochs > 0:
        t = settings.train
        config = TrainConfig(epochs=settings.final_epochs, lr=t.lr, device=t.device, precision=t.precision,
                             cuda_graphs=t.cuda_graphs)
        trainer = SupernetTrainer(net, loaders, config, seed=settings.seed)
        for _ in range(settings.final_epochs):
            trainer.train_epoch(quiet=quiet, title="[final] ")
        final["standalone_test_accuracy"] = accuracy(net.eval(), loaders.test)
    final["model"] = net
    return final


def _report(settings: SearchSettings, root, result: FewShotResult, found, final: dict, timings: dict) -> dict:
    arch = found.best
    report: dict[str, Any] = {
        "gmgraph_version": gmgraph.__version__,
        "settings": as_dict(settings),
        "space": {label: list(ops) for label, ops in space(root).items()},
        "space_size": space_size(root),
        "split_tree": result.tree,
        "leaves": [_leaf_report(leaf, found) for leaf in result.leaves],
        "search": {"strategy": settings.search.strategy, "evaluations": found.evaluations,
                   "best_fitness": found.best_fitness},
        "arch": arch,
        "arch_str": spaces.arch_to_str(settings.space, arch),
        "final": final,
        "budget": {"supernet_epochs": result.budget, "epochs": settings.train.epochs},
        "timings": timings,
        "hardware": _hardware(result.leaves[0].trainer.device, settings.train.precision),
    }
    oracle = spaces.get(settings.space).oracle
    if oracle is not None:
        report["oracle"] = oracle(arch)
    return report


def _hardware(device: torch.device, precision: str) -> dict:
    """Where the run trained (report.json says so)."""
    out = {"device": str(device), "precision": precision, "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


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
