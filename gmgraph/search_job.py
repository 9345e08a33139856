"""The whole few-shot NAS job behind ``gmgraph search``: data, space, training, splits, search, report.

>>> from gmgraph.config import FewShotConfig, SearchConfig, TrainConfig
>>> settings = SearchSettings(width=4, cells=1, final_epochs=1, train=TrainConfig(epochs=2, steps_per_epoch=2),
...                           fewshot=FewShotConfig(method="gm", split_at=(1,), rounds=1),
...                           search=SearchConfig(evaluations=4))
>>> settings.fewshot.split_at, settings.train.epochs
((1,), 2)
>>> report = run_search(settings, out="/tmp/gmgraph-doctest-run", quiet=True)   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from gmgraph import module_copy, spaces
from gmgraph.config import LIMITS, SearchSettings, is_reference
from gmgraph.data.user_data import load_user_data
from gmgraph.device import torch_threads, training_device
from gmgraph.errors import ConfigError, first_line
from gmgraph.graph import choices, space, space_size, trace
from gmgraph.label_sizes import label_kind
from gmgraph.latency import LatencyTable, measure
from gmgraph.passes.derive import derive
from gmgraph.progress import JobEstimate, Progress, active_job, epoch_steps, estimating, log
from gmgraph.registry import task_of
from gmgraph.report import PHASES, count
from gmgraph.run_folder import (
    CHECKPOINT,
    HTML,
    ONNX,
    export_run,
    replacing_outputs,
    write_front,
    write_report,
    write_settings,
)
from gmgraph.run_log import RunLog
from gmgraph.search import STRATEGIES, SearchContext, evaluate
from gmgraph.search.canonical import canonical_form
from gmgraph.search.cost_bounds import smallest_costs
from gmgraph.search.evaluation import accuracy, recalibrate_bn
from gmgraph.search.measured_limit import Pick, first_within
from gmgraph.search.measures import arch_measures, needed
from gmgraph.search.multi_objective import ParetoResult
from gmgraph.search.strategies import constraints_for, objectives_for
from gmgraph.settings import as_dict
from gmgraph.shrinking import trained_space
from gmgraph.task import Task, get_task, split_batch
from gmgraph.train import distributed
from gmgraph.train.fewshot import FewShotResult, locate, run_fewshot
from gmgraph.train.loop import SupernetTrainer
from gmgraph.train.penalty import LatencyPenalty
from gmgraph.train.training_data import TrainingData


def load_data(settings: SearchSettings) -> tuple[datasets.Loaders, datasets.DataInfo]:
    """The run's loaders and their description: a dataset of the table, or the user's (``--data module:function``)."""
    if is_reference(settings.data):
        return load_user_data(settings.data, batch_size=settings.batch_size, seed=settings.seed)
    loaders = datasets.load(settings.data, root=settings.data_root, batch_size=settings.batch_size,
                            seed=settings.seed, image_size=settings.image_size)
    return loaders, datasets.info(loaders)


def build_supernet(settings: SearchSettings, shape: tuple[int, ...], num_classes: int) -> fx.GraphModule:
    """The root supernet of ``settings.space`` for images of ``shape`` and ``num_classes``."""
    torch.manual_seed(settings.seed)
    model = spaces.get(settings.space, settings.rules).make(settings.width, settings.cells, num_classes, shape[0],
                                            kernel_transform=settings.kernel_transform)
    return trace(model)


def run_search(settings: SearchSettings, out: str | Path, *, resume: bool = False, quiet: bool = False,
               device: torch.device | None = None) -> dict | None:
    """Run the whole job; write the run folder (:mod:`gmgraph.run_folder`) and return the report.

    In a distributed run every rank calls it: the ranks share the supernet
    training (see :func:`gmgraph.train.fewshot.run_fewshot`); the search, the
    final training and the report are rank 0's alone, and the other ranks return None.

    The report's ``timings`` split this call's wall time by phase (:func:`run_timings`).
    ``settings.threads`` sets torch's threads for the length of the call (the caller's come back after).
    ``device``: where to train, as :func:`~gmgraph.device.training_device` resolved ``settings.train``'s
    (default: resolved here, once); every training of the run (supernets, children, the final one) uses it.
    """
    if device is None:
        device = training_device(settings.train.device, settings.train.precision)
    with _long_lived_objects_frozen() as freeze, torch_threads(settings.threads), estimating(JobEstimate()):
        return _run_job(settings, Path(out), resume, quiet, freeze, device)


def _run_job(settings: SearchSettings, out: Path, resume: bool, quiet: bool, freeze,
             device: torch.device) -> dict | None:
    """:func:`run_search`'s phases in order: data, supernet, latency, training, search, final training, outputs."""
    team = distributed.team()
    quiet = quiet or (team is not None and not team.is_root)  # only rank 0 prints
    clock = Clock()
    with clock.phase("data"):
        loaders, info = load_data(settings)
    _check_memory(settings, info, device, quiet)  # before the supernet takes any: a run that cannot fit says so here
    with clock.phase("data"):
        gm = _built_supernet(settings, info)
    check_limits(settings, gm, info.shape)  # an impossible limit is refused before any training
    log(f"search space {settings.space}: {space_size(gm)} architectures, {len(space(gm))} decisions; "
        f"data {info.name} {info.shape} x {info.sizes[0]} training images", quiet=quiet)
    with clock.phase("latency"):
        table = _latency_table(settings, gm, info.shape, quiet)
    check_latency_limit(settings, table)
    penalty = LatencyPenalty(table, settings.train.latency_weight) if settings.train.latency_weight > 0 else None
    _plan_job(settings, loaders)
    if team is None or team.is_root:
        write_settings(out, settings)  # what --resume takes back
    checkpoint = out / CHECKPOINT
    earlier = _checkpoint_timings(checkpoint) if resume and (team is None or team.is_root) else None
    run_log = RunLog(settings.log_dir, quiet=quiet) if settings.log_dir and (team is None or team.is_root) else None

    def after_epoch(epochs: int, result: FewShotResult) -> None:
        freeze()
        if run_log is not None:
            run_log.fewshot(epochs, result)
            run_log.flush()

    with clock.phase("train"):  # training, checkpoints and (taken out below) split scoring
        result = run_fewshot(gm, loaders, settings.fewshot, settings.train, seed=settings.seed,
                             shared=spaces.get(settings.space, settings.rules).shared, checkpoint=checkpoint,
                             resume=resume, quiet=quiet, record=settings.shaping(), on_epoch=after_epoch,
                             arch_penalty=penalty, device=device,
                             before_phase=spaces.get(settings.space, settings.rules).before_phase,
                             task=run_task(settings))
    # The few-shot timings add up over every invocation of a resumed run: this one's is the difference.
    clock.seconds["scoring"] = result.timings.get("scoring_seconds", 0.0) - (earlier or {}).get("scoring_seconds", 0.0)
    clock.seconds["train"] -= clock.seconds["scoring"]
    if team is not None and not team.is_root:
        return None
    cores = _note_shared_cores(clock, result.leaves[0].trainer.device, quiet)
    with clock.phase("search"):
        calib = _calibration(loaders, settings)  # drawn once: search and final evaluation share them
        measures = arch_measures(gm, info.shape, latency=table)
        found = _search_architectures(settings, gm, result, loaders, calib, measures, quiet)
        found, pick = _keep_latency_limit_measured(settings, result, found, info.shape, quiet)
    with clock.phase("final"):
        final = _final(settings, result, found, loaders, calib, device, quiet)
        final.update(_costs(settings, found.best, measures, final["model"], info.shape, pick))
    if run_log is not None:
        if run_log.first_epoch is None:  # a finished run resumed: its curves are complete, nothing new to draw
            run_log.first_epoch = settings.train.epochs
        run_log.fewshot(settings.train.epochs, result)
        run_log.rows("final", "final", final.get("history", []))
        run_log.close()
    # This invocation's outputs replace the folder's as a set: written aside, moved in together at the end.
    with replacing_outputs(out) as staging:
        with clock.phase("export"):
            report = _report(settings, gm, result, found, final, run_timings(clock, earlier))
            report["hardware"]["cores_used_in_training"] = cores
            report["input_shape"], report["num_classes"] = list(info.shape), info.num_classes
            write_report(staging, report, final.pop("model"))
            if isinstance(found, ParetoResult):
                write_front(staging, [(arch, _front_net(result, arch, calib)) for arch, _ in found.front])
            if settings.export:
                export_run(staging)
        report["timings"] = run_timings(clock, earlier)
        write_report(staging, report)  # report.json again, now with the export timed too
        if settings.html:
            _render(staging)  # drawn from the finished report.json (well under a second, not in the timings)
    log(_written(settings, out), quiet=quiet)
    return report


def _written(settings: SearchSettings, out: Path) -> str:
    """What the run's end wrote besides report.json, and how to write what it skipped."""
    outputs = ((settings.export, f"{out / ONNX} (checked in onnxruntime)",
                f"no best.onnx (--export false): `gmgraph export --run {out}` writes it"),
               (settings.html, str(out / HTML), f"no report.html (--html false): `gmgraph report {out}` draws it"))
    done = [written for wanted, written, _ in outputs if wanted]
    skipped = [hint for wanted, _, hint in outputs if not wanted]
    return "; ".join(([f"wrote {' and '.join(done)}"] if done else []) + skipped)


def _built_supernet(settings: SearchSettings, info: datasets.DataInfo) -> fx.GraphModule:
    """:func:`build_supernet`, with running out of memory as one line (the estimate before it is a floor)."""
    try:
        return build_supernet(settings, info.shape, info.num_classes)
    except RuntimeError as exc:  # torch.OutOfMemoryError too
        if "memory" not in str(exc) and "alloc" not in str(exc):
            raise
        raise ConfigError(f"the supernet does not fit in memory at --width {settings.width} --cells "
                          f"{settings.cells} ({first_line(exc, 120)}); choose a smaller --width") from None


def _check_memory(settings: SearchSettings, info: datasets.DataInfo, device: torch.device, quiet: bool) -> None:
    """Refuse a run whose training cannot fit this machine (or GPU); warn when it may not fit what is free now.

    Built on the meta device: the estimate allocates nothing (:mod:`gmgraph.train.memory`)."""
    from gmgraph.train.memory import check_training, element_bytes

    spec = spaces.get(settings.space, settings.rules)

    def build(width: int) -> torch.nn.Module:
        return spec.make(width, settings.cells, info.num_classes, info.shape[0],
                         kernel_transform=settings.kernel_transform)

    t = settings.train
    batch = min(settings.batch_size, info.sizes[0] or settings.batch_size)  # a size of 0: not known
    note = check_training(build, settings.width, info.shape, batch,
                          device, every_op=t.sampler == "darts",  # darts weighs every op; gdas one
                          momentum=t.momentum > 0, element_bytes=element_bytes(t.precision),
                          workers=int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # --nproc workers of this machine
    if note:
        log(note, quiet=quiet)


def check_limits(settings: SearchSettings, root: fx.GraphModule, shape: tuple[int, ...]) -> None:
    """Refuse limits no architecture of the space can meet, from the supernet alone (before any training).

    ``--max-params``/``--max-flops`` below the least any architecture costs
    (:func:`~gmgraph.search.cost_bounds.smallest_costs`), and any limit with ``--search argmax``,
    which takes each leaf's argmax as it is.

    Raises:
        ConfigError: naming the flag, its value and the least the space allows.
    """
    limits = {name: value for name, value in settings.search.limits().items() if value is not None}
    if limits and settings.search.strategy == "argmax":
        names = ", ".join(f"--{LIMITS[name].replace('_', '-')}" for name in limits)
        raise ConfigError(f"--search argmax cannot honour {names}: it takes each leaf's argmax as it is; "
                          "use --search evolution, random or pareto")
    costed = [name for name in ("params", "flops") if name in limits]
    if not costed:
        return
    least = smallest_costs(root, shape, measures=costed)
    for name in costed:
        if limits[name] < least[name]:
            what = {"params": "parameters", "flops": "FLOPs (multiply-adds)"}[name]
            raise ConfigError(f"--{LIMITS[name].replace('_', '-')} {limits[name]:g} cannot be met: every architecture "
                              f"of this space has at least {least[name]:.6g} M {what} (inputs "
                              f"{'x'.join(map(str, shape))}); raise the limit")


def check_latency_limit(settings: SearchSettings, table: LatencyTable | None) -> None:
    """Refuse ``--max-latency-ms`` below the latency table's prediction for the space's fixed part alone
    (stem, reductions, head: every network runs it), before any training.

    Raises:
        ConfigError: naming the limit and that least latency.
    """
    limit = settings.search.max_latency_ms
    if limit is None or not hasattr(table, "corrected"):  # no table, or a stand-in predictor without a fixed part
        return
    correction = table.correction
    if correction is not None and correction["scale"] < 0:
        return  # a line falling with the ops' time: no floor to read off
    least = table.corrected(0.0)
    if limit < least:
        raise ConfigError(f"--max-latency-ms {limit:g} cannot be met: every network of this space takes at least "
                          f"{least:.4g} ms on this machine (the part all of them run, as the latency table predicts "
                          "it); raise the limit")


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
    would change the numbers (sums split differently), so the run keeps torch's default unless
    ``--threads`` says otherwise, and says why it is slow.
    """
    wall, cpu = clock.seconds.get("train", 0.0) + clock.seconds.get("scoring", 0.0), clock.cpu_seconds.get("train")
    if device.type != "cpu" or cpu is None or wall < 10:
        return None
    cores = cpu / wall
    threads = min(torch.get_num_threads(), os.cpu_count() or 1)
    if threads > 1 and cores < 0.75 * threads:
        log(f"note: training kept {cores:.1f} of {threads} cores busy on average: other processes were using "
            f"them, and torch's {threads} threads per op wait for each other, so this run takes several times "
            "longer than on a quiet machine (--threads 1 is faster then, with slightly different numbers)",
            quiet=quiet)
    return round(cores, 2)


def _render(out: Path) -> None:
    """report.html with its drawings, next to report.json."""
    from gmgraph.report_html import render_run

    render_run(out)


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
        return LatencyTable.build(module_copy.deepcopy(root).cpu(), shape, quiet=quiet)

    team = distributed.team()
    if team is None:
        return build()
    # rank 0 times it and every rank uses its table: ranks timing at once would slow each other and could
    # disagree, and a latency weight that differed between ranks would pull their alphas apart
    return LatencyTable.from_dict(team.on_root(lambda: build().to_dict(), "timing the latency table"))


def _costs(settings: SearchSettings, arch, measures: dict, net: torch.nn.Module, shape, pick: Pick | None) -> dict:
    """What the chosen arch costs by the search's measures, and its latency measured end to end when it had a limit
    or objective: the predictor's word is checked, not trusted (under a limit, ``pick`` holds that check's timing:
    latency depends on the network's structure, not its weights, so it is not timed again)."""
    out = {f"{name}_estimate": measures[name](arch) for name in measures if name != "params"}
    out["params_estimate"] = sum(p.numel() for p in net.parameters()) / 1e6  # the network _final derived
    if "latency" in measures:
        timing = pick.timing if pick is not None else _timing(module_copy.deepcopy(net), shape)
        out["latency_ms_measured"] = timing.median_ms
        out["latency_measurement"] = {"stable": timing.stable, "spread": timing.spread, "runs": timing.runs}
        limit = settings.search.max_latency_ms
        if limit is not None:
            out["latency_limit_met_when_measured"] = timing.median_ms <= limit
        if pick is not None and pick.passed_over:
            out["latency_passed_over"] = [{"arch": arch, "arch_str": spaces.arch_to_str(settings.space, arch),
                                           "latency_ms_measured": ms} for arch, ms in pick.passed_over]
    return out


def _timing(net: torch.nn.Module, shape):
    """``net``'s latency end to end, as the latency limit means it: onnxruntime, one thread, batch 1."""
    return measure(net.cpu().eval(), tuple(shape), runtime="onnxruntime", threads=1, batch=1)


def _keep_latency_limit_measured(settings: SearchSettings, result: FewShotResult, found, shape, quiet: bool):
    """``(found, pick)``: under ``--max-latency-ms``, the search's result with the first candidate (the best
    first) whose measured latency keeps the limit as its best, and that check (:func:`first_within`); else
    ``(found, None)``. A Pareto search offers its front, the others their evaluated archs, fittest first.

    Raises:
        ConfigError: none of the candidates timed keeps the limit.
    """
    limit = settings.search.max_latency_ms
    if limit is None:
        return found, None
    if isinstance(found, ParetoResult):
        candidates = [(arch, values[0]) for arch, values in found.front]
    else:
        candidates = sorted(found.history, key=lambda point: -point[1])  # stable: the first of equals first
    pick = first_within(candidates, lambda arch: _timing(derive(locate(result, arch).gm, arch), shape), limit)
    if pick.passed_over:
        over = ", ".join(f"{ms:.4g} ms" for _, ms in pick.passed_over)
        log(f"latency: {count(len(pick.passed_over), 'better candidate')} measured over --max-latency-ms {limit:g} "
            f"({over}); chose the next, measured {pick.latency_ms:.4g} ms", quiet=quiet)
        found = dataclasses.replace(found, best=pick.arch, best_fitness=pick.fitness)
    return found, pick


def _search_architectures(settings: SearchSettings, root: fx.GraphModule, result: FewShotResult, loaders,
                          calib: list, measures: dict, quiet: bool):
    """The search strategy over the trained sub-supernets: each candidate scored on its leaf's shared weights."""
    # Read once, not per candidate: each leaf's space (what `locate` recomputes from the graph every call).
    leaves = [(leaf, leaf.space) for leaf in result.leaves]
    val = _held(loaders.val)

    def fitness(arch):
        leaf = next((leaf for leaf, ops in leaves if all(arch[label] in ops[label] for label in ops)), None)
        if leaf is None:
            leaf = locate(result, arch)  # raises the SpaceError that names the leaves
        return evaluate(leaf.gm, arch, val, calib_loader=calib, bn_batches=settings.search.bn_batches,
                        task=run_task(settings))

    bar = Progress("search", total=settings.search.evaluations, quiet=quiet,
                   job_steps=evaluation_steps(settings, val))
    best = [0.0]

    def progress(step, arch, value):
        best[0] = max(best[0], value)
        bar.update(best_val_acc=best[0])

    alphas = [(leaf.trainer.sampler.alphas, leaf.space) for leaf in result.leaves
              if hasattr(leaf.trainer.sampler, "alphas")]
    context = SearchContext(_searched_space(settings, root, quiet), fitness,
                            evaluations=settings.search.evaluations, seed=settings.seed, progress=progress, alphas=alphas,
                            constraints=constraints_for(settings.search, measures),
                            objectives=objectives_for(settings.search, fitness, measures),
                            canonical=canonical_form(root))  # each derived network evaluated once
    found = STRATEGIES[settings.search.strategy](context)
    job = active_job()
    if job is not None:  # a search that stopped early (a small space) leaves nothing planned
        job.plan("search", 0)
    bar.close(evaluations=found.evaluations)
    return found


def _searched_space(settings: SearchSettings, root: fx.GraphModule, quiet: bool) -> dict[str, tuple[str, ...]]:
    """The space the strategy searches: the root's, less the values a ``--shrink`` schedule never trained."""
    searched = trained_space(root, settings.train.shrink, settings.train.epochs)
    left_out = sorted({label_kind(group) for label, group in choices(root).items()
                       if len(searched[label]) < len(group[0].names)})
    if left_out:
        kinds = " and ".join(left_out)
        log(f"search: over what --shrink {settings.train.shrink} trained: the {kinds} labels at their largest "
            f"value only (the schedule has no {kinds} phase)", quiet=quiet)
    return searched


def run_task(settings: SearchSettings) -> Task:
    """The task the run learns: ``--task``, else its data's own (:func:`gmgraph.registry.task_of`)."""
    return get_task(task_of(settings.train.task, settings.data))


def _plan_job(settings: SearchSettings, loaders) -> None:
    """The run's work ahead for its ETA, in training steps (:class:`~gmgraph.progress.JobEstimate`): the supernets'
    (planned by :func:`~gmgraph.train.fewshot.run_fewshot` each epoch), the search's and the final training's."""
    job = active_job()
    if job is None:
        return
    steps = epoch_steps(TrainingData(loaders.train).batches_per_epoch(), settings.train.steps_per_epoch) or 0
    job.plan("supernets", 0)
    job.plan("search", settings.search.evaluations * evaluation_steps(settings, loaders.val))
    job.plan("final", settings.final_epochs * steps)


def evaluation_steps(settings: SearchSettings, val) -> float:
    """What one candidate's evaluation costs in training steps: its BN recalibration and validation batches,
    forward only (about a third of a training step each)."""
    try:
        batches = len(val)
    except TypeError:  # an iterable that does not say its length: its evaluations are left out of the ETA
        return 0.0
    return (settings.search.bn_batches + batches) / 3


def _held(loader, limit: int = 512 * 2**20):
    """An evaluation loader's batches as a list, loaded once for every candidate, if they fit in ``limit`` bytes.

    Validation and test loaders neither shuffle nor augment: every pass yields the same batches, so
    holding them changes no number, and saves decoding the images again for each of the search's candidates.
    """
    x, _ = split_batch(next(iter(loader)))
    size = len(loader.dataset) if hasattr(loader, "dataset") and hasattr(loader.dataset, "__len__") else None
    if size is None or x.element_size() * x[0].numel() * size > limit:
        return loader  # too large to hold, or an iterable that does not say how large
    return list(loader)


def _final(settings: SearchSettings, result: FewShotResult, found, loaders, calib: list, device: torch.device,
           quiet: bool) -> dict:
    """Test accuracy of the chosen arch on shared weights, and after standalone training from scratch."""
    arch = found.best
    leaf = locate(result, arch)
    test = _held(loaders.test)  # measured twice
    final = {
        "leaf": leaf.id,
        "supernet_val_accuracy": found.best_fitness,  # the search measured it on the same calibration batches
        "metric": run_task(settings).metric,  # what the *_accuracy numbers measure (accuracy, r2, miou)
        "supernet_test_accuracy": evaluate(leaf.gm, arch, test, calib_loader=calib, task=run_task(settings),
                                           bn_batches=settings.search.bn_batches),
        "standalone_epochs": settings.final_epochs,
    }
    net = derive(leaf.gm, arch, inherit=settings.final_epochs == 0)
    final["params"] = sum(p.numel() for p in net.parameters())
    config = settings.final_train()  # the [train] settings, epochs from --final-epochs
    final["train_settings"] = None if config is None else as_dict(config)
    if config is not None:
        trainer = SupernetTrainer(net, loaders, config, seed=settings.seed, device=device, task=run_task(settings))
        for _ in range(config.epochs):
            trainer.train_epoch(quiet=quiet, title="[final] ")
        # The curve without its wall times: the same run gives the same report (the times are in `timings`).
        final["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in trainer.history]
        final["standalone_test_accuracy"] = accuracy(net.eval(), test, task=run_task(settings))
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
        # evaluations: distinct networks evaluated, the one count (the leaves' "evaluated" add up to it)
        "search": {"strategy": settings.search.strategy, "evaluations": found.evaluations,
                   "evaluations_asked": None if settings.search.strategy == "argmax" else settings.search.evaluations,
                   "best_fitness": found.best_fitness, "rejected": found.rejected,
                   "limits": {name: value for name, value in settings.search.limits().items() if value is not None}},
        "arch": arch,
        "arch_str": spaces.arch_to_str(settings.space, arch),
        "final": final,
        "budget": {"supernet_epochs": result.budget, "epochs": settings.train.epochs},
        "timings": timings,
        "hardware": _hardware(result.leaves[0].trainer.device, settings.train.precision),
        "sampler": result.leaves[0].trainer.sampler.name,  # what --sampler auto resolved to
    }
    if isinstance(found, ParetoResult):
        report["pareto"] = _front_report(settings, found)
    else:  # every evaluation in order: report.html's search-progress plot
        report["search"]["history"] = [{"arch": dict(a), "fitness": f} for a, f in found.history]
    oracle = spaces.get(settings.space, settings.rules).oracle
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
    out = {"device": str(device), "precision": precision, "torch": torch.__version__,
           "threads": torch.get_num_threads()}  # torch's threads for CPU work (--threads, or one per core)
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
