"""The whole few-shot NAS job behind ``gmgraph search``: data, space, training, splits, search, report.

>>> from gmgraph.config import FewShotConfig, SearchConfig, TrainConfig
>>> settings = SearchSettings(width=4, cells=1, final_epochs=1, train=TrainConfig(epochs=2, steps_per_epoch=2),
...                           fewshot=FewShotConfig(split_at=(1,), rounds=1), search=SearchConfig(evaluations=4))
>>> settings.fewshot.split_at, settings.train.epochs
((1,), 2)
>>> report = run_search(settings, out="/tmp/gmgraph-doctest-run", quiet=True)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import fx

import gmgraph
from gmgraph import data as datasets
from gmgraph import spaces
from gmgraph.config import SearchSettings
from gmgraph.graph import space, space_size, trace
from gmgraph.latency import LatencyTable, measure
from gmgraph.passes.derive import derive
from gmgraph.progress import Progress, log
from gmgraph.report import PHASES
from gmgraph.run import CHECKPOINT, export_run, write_front, write_report
from gmgraph.search import STRATEGIES, SearchContext, evaluate
from gmgraph.search.evaluation import accuracy, recalibrate_bn
from gmgraph.search.measures import arch_measures, needed
from gmgraph.search.multi_objective import ParetoResult
from gmgraph.search.strategies import constraints_for, objectives_for
from gmgraph.settings import as_dict
from gmgraph.train import distributed
from gmgraph.train.fewshot import FewShotResult, locate, run_fewshot
from gmgraph.train.loop import SupernetTrainer, TrainConfig
from gmgraph.train.penalty import LatencyPenalty


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

    The report's ``timings`` split this call's wall time by phase (:func:`run_timings`).
    """
    with _long_lived_objects_frozen() as freeze:
        return _run_search(settings, Path(out), resume, quiet, freeze)


def _run_search(settings: SearchSettings, out: Path, resume: bool, quiet: bool, freeze) -> dict | None:
    team = distributed.team()
    quiet = quiet or (team is not None and not team.is_root)  # only rank 0 prints
    clock = Clock()
    with clock.phase("data"):
        loaders = datasets.load(settings.data, root=settings.data_root, batch_size=settings.batch_size,
                                seed=settings.seed)
        info = datasets.info(loaders)
        gm = build_supernet(settings, info.shape, info.num_classes)
    log(f"search space {settings.space}: {space_size(gm)} architectures, {len(space(gm))} decisions; "
        f"data {info.name} {info.shape} x {info.sizes[0]} training images", quiet=quiet)
    with clock.phase("latency"):
        table = _latency_table(settings, gm, info.shape, quiet)
    penalty = LatencyPenalty(table, settings.train.latency_weight) if settings.train.latency_weight > 0 else None
    checkpoint = out / CHECKPOINT
    earlier = _checkpoint_timings(checkpoint) if resume and (team is None or team.is_root) else None
    with clock.phase("train"):  # training, checkpoints and (taken out below) split scoring
        result = run_fewshot(gm, loaders, settings.fewshot, settings.train, seed=settings.seed,
                             shared=spaces.get(settings.space).shared, checkpoint=checkpoint,
                             resume=resume, quiet=quiet, record=settings.shaping(), on_epoch=freeze,
                             arch_penalty=penalty)
    # The few-shot timings add up over every invocation of a resumed run: this one's is the difference.
    clock.seconds["scoring"] = result.timings.get("scoring_seconds", 0.0) - (earlier or {}).get("scoring_seconds", 0.0)
    clock.seconds["train"] -= clock.seconds["scoring"]
    if team is not None and not team.is_root:
        return None
    cores = _note_shared_cores(clock, result.leaves[0].trainer.device, quiet)
    with clock.phase("search"):
        calib = _calibration(loaders, settings)  # drawn once: search and final evaluation share them
        measures = arch_measures(gm, info.shape, latency=table)
        found = _search(settings, gm, result, loaders, calib, measures, quiet)
    with clock.phase("final"):
        final = _final(settings, result, found, loaders, calib, quiet)
        final.update(_costs(settings, found.best, measures, final["model"], info.shape))
    with clock.phase("export"):
        report = _report(settings, gm, result, found, final, run_timings(clock, earlier))
        report["hardware"]["cores_used_in_training"] = cores
        report["input_shape"], report["num_classes"] = list(info.shape), info.num_classes
        write_report(out, report, final.pop("model"))
        if isinstance(found, ParetoResult):
            write_front(out, [(arch, _front_net(result, arch, calib)) for arch, _ in found.front])
        log(f"wrote {export_run(out)} (checked in onnxruntime)", quiet=quiet)
    report["timings"] = run_timings(clock, earlier)
    write_report(out, report)  # report.json again, now with the export timed too
    _render(out, quiet)  # drawn from the finished report.json (well under a second, not in the timings)
    return report


class Clock:
    """Wall seconds per phase of one invocation.

    >>> clock = Clock()
    >>> with clock.phase("data"):
    ...     pass
    >>> list(clock.seconds), clock.total() >= clock.seconds["data"]
    (['data'], True)
    """

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}  # CPU time of all this process's threads

    @contextlib.contextmanager
    def phase(self, name: str):
        t, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu

    def total(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.start


def run_timings(clock: Clock, earlier: dict | None = None) -> dict[str, float]:
    """report.json's ``timings``: this invocation's seconds by phase and in all (``total_seconds``).

    After a resume (``earlier``: the checkpoint's few-shot timings, which add up
    over invocations) also ``earlier_seconds``, the time the checkpoint records
    for the invocations before this one, and ``all_invocations_seconds``.

    >>> clock = Clock()
    >>> clock.seconds = {"train": 30.0, "scoring": 10.0}
    >>> out = run_timings(clock, {"total_seconds": 50.0, "scoring_seconds": 20.0})
    >>> out["train_seconds"], out["earlier_seconds"], out["all_invocations_seconds"] - out["total_seconds"]
    (30.0, 50.0, 50.0)
    """
    out = {f"{phase}_seconds": clock.seconds.get(phase, 0.0) for phase in PHASES}
    out["total_seconds"] = clock.total()
    if earlier is not None:
        # Few-shot time (training with its checkpoints and scoring) of the earlier invocations; what they
        # did after their last checkpoint is redone here, so it does not count.
        out["earlier_seconds"] = max(earlier.get("total_seconds", 0.0), earlier.get("scoring_seconds", 0.0))
        out["all_invocations_seconds"] = out["total_seconds"] + out["earlier_seconds"]
    return out


def _checkpoint_timings(path: Path) -> dict | None:
    """The few-shot timings a checkpoint holds (None without one); the tensors are mapped, not read."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a bad checkpoint: run_fewshot says what is wrong with it
        return None
    found = state.get("timings") if isinstance(state, dict) else None
    return dict(found) if isinstance(found, dict) else {}


@contextlib.contextmanager
def _long_lived_objects_frozen():
    """Keep Python's cycle collector off the objects that outlive the run's steps; yields ``freeze(*_)``.

    A full collection walks every tracked object: about 0.2 s each here, nearly
    all of it the imported libraries, and the collector ran about 3 s in a
    default run. Frozen objects are skipped: those that exist when the run starts
    (modules, torch, the caller's), and what exists whenever ``freeze`` is called
    (after each epoch: the sub-supernets and their optimizers). They go back to the
    collector when the run ends. A caller that froze objects itself keeps its own
    arrangement (``freeze`` then does nothing).
    """
    if gc.get_freeze_count():
        yield lambda *_: None
        return
    gc.freeze()
    try:
        yield lambda *_: gc.freeze()
    finally:
        gc.unfreeze()


def _note_shared_cores(clock: Clock, device: torch.device, quiet: bool) -> float | None:
    """Cores the CPU training kept busy on average (report.json's ``hardware``); a note when others took them.

    Torch splits each op over ``torch.get_num_threads()`` threads (one per core), which wait for each
    other: with one other busy process on a 2-core machine training ran 4x slower here. Fewer threads
    would change the numbers (sums split differently), so the run keeps them and says why it is slow.
    """
    wall, cpu = clock.seconds.get("train", 0.0) + clock.seconds.get("scoring", 0.0), clock.cpu_seconds.get("train")
    if device.type != "cpu" or cpu is None or wall < 10:
        return None
    cores = cpu / wall
    threads = min(torch.get_num_threads(), os.cpu_count() or 1)
    if threads > 1 and cores < 0.75 * threads:
        log(f"note: training kept {cores:.1f} of {threads} cores busy on average: other processes were using "
            f"them, and torch's {threads} threads per op wait for each other, so this run takes several times "
            "longer than on a quiet machine", quiet=quiet)
    return round(cores, 2)


def _render(out: Path, quiet: bool) -> None:
    """report.html with its drawings, next to report.json."""
    from gmgraph.report_html import render_run

    log(f"wrote {render_run(out)}", quiet=quiet)


def _calibration(loaders, settings: SearchSettings) -> list:
    # Fixed calibration batches: every candidate is recalibrated on the same images.
    return list(itertools.islice(loaders.train, settings.search.bn_batches))


def _latency_table(settings: SearchSettings, root: fx.GraphModule, shape: tuple[int, ...], quiet: bool):
    """The space's latency table when a limit, an objective or the latency weight reads it; else None.

    Built before training (only the graph matters, not its weights) in every process of a distributed
    run alike; measured once per machine and cached."""
    wanted = "latency" in needed(settings.search.objectives, settings.search.limits())
    if not wanted and settings.train.latency_weight == 0:
        return None
    log("latency: timing the space's ops in onnxruntime (1 thread, batch 1; cached for later runs)", quiet=quiet)

    def build() -> LatencyTable:
        return LatencyTable.build(copy.deepcopy(root).cpu(), shape, quiet=quiet)

    team = distributed.team()
    if team is None:
        return build()
    # rank 0 times it and every rank uses its table: ranks timing at once would slow each other and could
    # disagree, and a latency weight that differed between ranks would pull their alphas apart
    return LatencyTable.from_dict(team.on_root(lambda: build().to_dict(), "timing the latency table"))


def _costs(settings: SearchSettings, arch, measures: dict, net: torch.nn.Module, shape) -> dict:
    """What the chosen arch costs by the search's measures, and its latency measured end to end when it had a limit
    or objective: the predictor's word is checked, not trusted."""
    out = {f"{name}_estimate": measures[name](arch) for name in measures if name != "params"}
    out["params_estimate"] = sum(p.numel() for p in net.parameters()) / 1e6  # the network _final derived
    if "latency" in measures:
        timing = measure(copy.deepcopy(net).cpu().eval(), tuple(shape), runtime="onnxruntime", threads=1, batch=1)
        out["latency_ms_measured"] = timing.median_ms
        out["latency_measurement"] = {"stable": timing.stable, "spread": timing.spread, "runs": timing.runs}
        limit = settings.search.max_latency_ms
        if limit is not None:
            out["latency_limit_met_when_measured"] = timing.median_ms <= limit
    return out


def _search(settings: SearchSettings, root: fx.GraphModule, result: FewShotResult, loaders, calib: list,
            measures: dict, quiet: bool):
    # Read once, not per candidate: each leaf's space (what `locate` recomputes from the graph every call).
    leaves = [(leaf, leaf.space) for leaf in result.leaves]
    val = _held(loaders.val)

    def fitness(arch):
        leaf = next((leaf for leaf, ops in leaves if all(arch[label] in ops[label] for label in ops)), None)
        if leaf is None:
            leaf = locate(result, arch)  # raises the SpaceError that names the leaves
        return evaluate(leaf.gm, arch, val, calib_loader=calib, bn_batches=settings.search.bn_batches)

    bar = Progress("search", total=settings.search.evaluations, quiet=quiet)
    best = [0.0]

    def progress(step, arch, value):
        best[0] = max(best[0], value)
        bar.update(best_val_acc=best[0])

    alphas = [(leaf.trainer.sampler.alphas, leaf.space) for leaf in result.leaves
              if hasattr(leaf.trainer.sampler, "alphas")]
    context = SearchContext(space(root), fitness, evaluations=settings.search.evaluations, seed=settings.seed,
                            progress=progress, alphas=alphas,
                            constraints=constraints_for(settings.search, measures),
                            objectives=objectives_for(settings.search, fitness, measures))
    found = STRATEGIES[settings.search.strategy](context)
    bar.close(evaluations=found.evaluations)
    return found


def _held(loader, limit: int = 512 * 2**20):
    """An evaluation loader's batches as a list, loaded once for every candidate, if they fit in ``limit`` bytes.

    Validation and test loaders neither shuffle nor augment: every pass yields the same batches, so
    holding them changes no number, and saves decoding the images again for each of the search's candidates.
    """
    x, _ = next(iter(loader))[:2]
    if x.element_size() * x[0].numel() * len(loader.dataset) > limit:
        return loader
    return list(loader)


def _final(settings: SearchSettings, result: FewShotResult, found, loaders, calib: list, quiet: bool) -> dict:
    """Test accuracy of the chosen arch on shared weights, and after standalone training from scratch."""
    arch = found.best
    leaf = locate(result, arch)
    test = _held(loaders.test)  # measured twice
    final = {
        "leaf": leaf.id,
        "supernet_val_accuracy": found.best_fitness,  # the search measured it on the same calibration batches
        "supernet_test_accuracy": evaluate(leaf.gm, arch, test, calib_loader=calib,
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
        final["standalone_test_accuracy"] = accuracy(net.eval(), test)
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
                   "best_fitness": found.best_fitness, "rejected": found.rejected,
                   "limits": {name: value for name, value in settings.search.limits().items() if value is not None}},
        "arch": arch,
        "arch_str": spaces.arch_to_str(settings.space, arch),
        "final": final,
        "budget": {"supernet_epochs": result.budget, "epochs": settings.train.epochs},
        "timings": timings,
        "hardware": _hardware(result.leaves[0].trainer.device, settings.train.precision),
    }
    if isinstance(found, ParetoResult):
        report["pareto"] = _front_report(settings, found)
    oracle = spaces.get(settings.space).oracle
    if oracle is not None:
        report["oracle"] = oracle(arch)
    return report


def _front_net(result: FewShotResult, arch, calib: list) -> torch.nn.Module:
    """A front point's network: derived from its sub-supernet with its weights, BatchNorm recalibrated."""
    net = derive(locate(result, arch).gm, arch)
    recalibrate_bn(net, calib)
    return net


def _front_report(settings: SearchSettings, found: ParetoResult) -> dict:
    """The Pareto front for report.json: objectives with senses, each point's arch (and its text) and values,
    every evaluated point, and which point was chosen."""
    record = found.as_dict()
    front = record["front"]
    chosen = next(i for i, point in enumerate(front) if point["arch"] == dict(found.best))
    for point in front:
        point["arch_str"] = spaces.arch_to_str(settings.space, point["arch"])
    return {"objectives": record["objectives"], "front": front, "chosen": chosen, "history": record["history"]}


def _hardware(device: torch.device, precision: str) -> dict:
    """Where the run trained (report.json says so)."""
    out = {"device": str(device), "precision": precision, "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _leaf_report(leaf, found) -> dict:
    # a Pareto search records every objective per arch: accuracy is the first
    inside = [(a, f[0] if isinstance(found, ParetoResult) else f) for a, f in found.history if leaf.contains(a)]
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
