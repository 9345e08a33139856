"""Running the ranking benchmark's jobs: one-shot runs that leave a fork, few-shot runs from it, estimates.

A job (``ranking_protocol.Job``) trains one method with one seed and
estimates every ground-truth architecture on the val split: accuracy *and*
mean cross-entropy, so accuracy ties can be broken by the loss. Its result is
one JSON file in ``<workdir>/results/``, written atomically; a rerun skips
every job whose file exists, so an interrupted run resumes, and a job that
was cut off resumes mid-run: every training job (one-shot or few-shot)
writes its state after each epoch to its own checkpoint in
``<workdir>/ckpt/`` (removed when its result is written), and a rerun
continues from it.

**The fork.** The one-shot run of seed ``s`` and length ``E`` of every
method that some few-shot method forks from (uniform; DARTS and SNAS for
``gm-darts`` and the others of ``SAMPLER_SPLIT_METHODS``) saves its whole
trainer state (weights, optimizer, scheduler, architecture parameters,
sampler, RNG streams) at its first split epoch in ``<workdir>/forks/``. A few-shot run
starts from it through ``run_fewshot``'s resume: :func:`fork_state` turns the
saved state into a few-shot checkpoint with the few-shot settings, so the
few-shot run's first epochs *are* the one-shot run's, bit for bit (a test
checks this against a few-shot run from scratch). gmgraph has no public hook
for this; the benchmark builds the checkpoint itself (see :func:`fork_state`).

``ranking_pool`` runs many jobs in worker processes. The examples here use a
tiny synthetic ground truth (:func:`example_plan`)::

    >>> from ranking_protocol import schedule_a
    >>> plan = example_plan()
    >>> job = Job("oneshot", "oneshot", 0, "a", 2, schedule_a(method("oneshot"), 2, (0.5,)))
    >>> result = run_job(plan, job)
    >>> result["cost"], len(result["estimates"]), plan.result_path(job).exists(), plan.fork_path(2, 0).exists()
    (2, 4, True, True)
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
import groundtruth_lib as local  # noqa: E402
from ranking_protocol import BASELINE, ZERO_COST, Job, gm_rounds, leaves_fork, method, split_epochs  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph import data  # noqa: E402
from gmgraph.arch import parse_nb201  # noqa: E402
from gmgraph.config import TrainConfig  # noqa: E402
from gmgraph.errors import ConfigError, DataError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402
from gmgraph.passes.derive import derive  # noqa: E402
from gmgraph.scores.zero_cost import zero_cost  # noqa: E402
from gmgraph.search.evaluation import recalibrate_bn  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import fewshot  # noqa: E402
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from gmgraph.train.fewshot import FewShotConfig, FewShotResult, locate, run_fewshot  # noqa: E402
from gmgraph.train.loop import SupernetTrainer  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """Settings every job of a run shares (picklable: workers receive it)."""

    groundtruth: str
    workdir: str
    archs: int = 0  # the first N ground-truth architectures (0: all)
    fractions: tuple[float, ...] = (0.25, 0.5)
    steps_per_epoch: int | None = None
    bn_batches: int = 4
    rounds_small: int = 0  # 0: gm_rounds (scoring costs at most one epoch)
    rounds_large: int = 10
    metric_children: int = 4
    threads: int = 1

    def shaping(self) -> dict:
        """What a result depends on besides the ground truth; a work folder holds results of one setting only.

        The ground truth enters through :func:`task_of` and its architecture
        list (see :func:`claim_workdir`), not its file: another ground truth of
        the same task and archs (e.g. longer training) reads the same estimates.
        """
        out = {k: v for k, v in asdict(self).items() if k not in ("workdir", "threads", "groundtruth")}
        out["fractions"] = list(self.fractions)
        return out

    def result_path(self, job: Job) -> Path:
        return Path(self.workdir) / "results" / f"{job.id}.json"

    def fork_path(self, parent: int, seed: int, base: str = BASELINE) -> Path:
        """Where the one-shot run of method ``base``, length ``parent`` and ``seed`` leaves its fork."""
        sampler = "" if base == BASELINE else f"{base}-"  # the uniform forks keep their older names
        return Path(self.workdir) / "forks" / f"E{parent}-{sampler}s{seed}.pt"

    def fork_of(self, job: Job) -> Path:
        """The fork a few-shot ``job`` starts from (its method's :attr:`~ranking_protocol.Method.base` run)."""
        return self.fork_path(job.schedule.parent, job.seed, method(job.method).base)

    def checkpoint_path(self, job: Job) -> Path:
        return Path(self.workdir) / "ckpt" / f"{job.id}.pt"


def claim_workdir(plan: Plan) -> None:
    """Record the plan's settings (and its architecture list) in its work folder, or check them.

    A folder written before the task was recorded (it named the ground-truth
    file instead) is checked on its architecture list and settings, and
    upgraded in place.

    Raises:
        ConfigError: the folder holds results of other settings.

    Example:
        >>> import dataclasses
        >>> plan = example_plan()
        >>> claim_workdir(plan); claim_workdir(plan)   # the same settings: fine
        >>> claim_workdir(dataclasses.replace(plan, bn_batches=2))
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: ... holds results of other settings (bn_batches); choose another ...
    """
    side = Path(plan.workdir) / "settings.json"
    archs = list(local.load_groundtruth(plan.groundtruth))[: plan.archs or None]
    # results hold one estimate per architecture, by position: the list must stay the same
    now = {**plan.shaping(), "archs_sha1": hashlib.sha1("\n".join(archs).encode()).hexdigest()[:16],
           "task": task_of(plan.groundtruth)}
    if side.exists():
        saved = json.loads(side.read_text())
        legacy = "task" not in saved
        if legacy:  # it named the ground-truth file; the arch list and the settings still have to match
            saved = {k: v for k, v in saved.items() if k != "groundtruth"} | {"task": now["task"]}
        differ = sorted(k for k in set(now) | set(saved) if saved.get(k) != now.get(k))
        if differ:
            raise ConfigError(f"{plan.workdir} holds results of other settings ({', '.join(differ)}); "
                              "choose another --workdir or delete it")
        if not legacy:
            return
    atomic_write(side, lambda tmp: Path(tmp).write_text(json.dumps(now, indent=2) + "\n"))


def ground_truth_settings(groundtruth: str | Path) -> dict:
    """The side JSON written beside a ground-truth CSV by ``benchmarks/groundtruth.py``."""
    side = Path(groundtruth).with_suffix(".json")
    if not side.is_file():
        raise DataError(f"no settings file {side} beside the ground truth; regenerate it with benchmarks/groundtruth.py")
    return json.loads(side.read_text())


def task_of(groundtruth: str | Path) -> dict:
    """What the supernets train on, from a ground truth's side JSON: data, batch size and network size.

    Example:
        >>> task_of(example_plan().groundtruth)
        {'dataset': 'synthetic', 'batch_size': 16, 'C': 2, 'N': 1}
    """
    settings = ground_truth_settings(groundtruth)
    schedule = settings["schedule"]
    return {"dataset": settings["dataset"], "batch_size": schedule["batch_size"], "C": schedule["C"],
            "N": schedule["N"]}


# ------------------------------------------------------------------ what every job shares


@dataclass
class Bench:
    """The ground truth's architectures, its data, and the fixed BN-calibration batches."""

    archs: list[str]
    truth: np.ndarray  # mean accuracy over the ground truth's seeds
    truth_loss: np.ndarray | None  # mean val loss (None: the file has no val_loss column)
    settings: dict  # the ground truth's side file
    loaders: tuple
    calib: list

    @property
    def parsed(self) -> list[dict[str, str]]:
        return [parse_nb201(a) for a in self.archs]


_BENCH: dict[tuple, Bench] = {}


def bench(plan: Plan) -> Bench:
    """The shared setup of ``plan`` (built once per process).

    Example:
        >>> b = bench(example_plan())
        >>> len(b.archs), b.truth.shape, b.truth_loss is not None, len(b.calib)
        (4, (4,), True, 1)
    """
    key = (plan.groundtruth, plan.archs, plan.bn_batches)
    if key not in _BENCH:
        _BENCH[key] = _build_bench(plan)
    return _BENCH[key]


def _build_bench(plan: Plan) -> Bench:
    path = Path(plan.groundtruth)
    settings = ground_truth_settings(path)
    truth = local.load_groundtruth(path)
    archs = list(truth)[: plan.archs or None]
    loaders = local.load_data(settings["dataset"], settings["schedule"]["batch_size"])
    order = DataLoader(loaders.train.dataset, batch_size=loaders.train.batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(12345))
    calib = list(itertools.islice(order, plan.bn_batches))  # the same BN batches for every estimate
    return Bench(archs, np.array([truth[a] for a in archs]), truth_losses(path, archs), settings, loaders, calib)


def truth_losses(path: Path, archs: list[str]) -> np.ndarray | None:
    """Mean val loss per architecture over the ground truth's seeds; None without a val_loss column.

    Example:
        >>> import tempfile, pathlib
        >>> csv = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> a = local.sample_archs(1)[0]
        >>> _ = csv.write_text(",".join(local.COLUMNS) + f"\\n{a},0,0.5,0.5,1,1,2.0\\n{a},1,0.5,0.5,1,1,1.0\\n")
        >>> truth_losses(csv, [a]).tolist()
        [1.5]
    """
    per_arch: dict[str, list[float]] = {}
    for row in local.read_rows(path):
        per_arch.setdefault(row["arch"], []).append(float(row.get("val_loss", float("nan"))))
    losses = np.array([np.mean(per_arch[a]) for a in archs])
    return None if np.isnan(losses).any() else losses


def supernet(b: Bench, seed: int) -> torch.fx.GraphModule:
    """The NB201 supernet of the ground truth's size, initialised from ``seed`` alone.

    Example:
        >>> b = bench(example_plan())
        >>> torch.equal(next(supernet(b, 3).parameters()), next(supernet(b, 3).parameters()))
        True
    """
    sched, info = b.settings["schedule"], data.info(b.loaders)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return gmgraph.trace(nb201.supernet(sched["C"], sched["N"], info.num_classes, info.shape[0]))


def rounds(plan: Plan, b: Bench, which: str | None) -> int:
    """Gradient-matching R of a method: ``large``, or small (scoring costs at most one supernet epoch).

    Example:
        >>> plan = example_plan()
        >>> rounds(plan, bench(plan), "small"), rounds(plan, bench(plan), "large")
        (1, 10)
    """
    if which == "large":
        return plan.rounds_large
    steps = len(b.loaders.train) if plan.steps_per_epoch is None else min(len(b.loaders.train), plan.steps_per_epoch)
    return plan.rounds_small or gm_rounds(steps, len(nb201.LABELS) * len(nb201.OPS))


def _train_config(plan: Plan, sampler: str, epochs: int, darts_order: int = 1) -> TrainConfig:
    return TrainConfig(sampler=sampler, epochs=epochs, steps_per_epoch=plan.steps_per_epoch, device="cpu",
                       darts_order=darts_order)


# ------------------------------------------------------------------ the fork


def oneshot_state(trainer: SupernetTrainer, epoch: int) -> dict:
    """A one-shot run's state after ``epoch`` epochs, as a few-shot checkpoint with one root node.

    A copy: on the CPU ``state_dict()`` shares the live tensors, which the run goes on training.

    Example:
        >>> b = bench(example_plan())
        >>> trainer = SupernetTrainer(supernet(b, 0), b.loaders, TrainConfig(epochs=4), seed=0)
        >>> state = oneshot_state(trainer, 0)
        >>> state["nodes"][0]["trainer"]["model"]["stem.0.weight"] is trainer.gm.get_submodule("stem.0").weight
        False
    """
    return {"kind": "fewshot", "epoch": epoch, "settings": {}, "tree": [], "budget": epoch, "timings": {},
            "nodes": [{"id": "root", "lineage": [], "trainer": copy.deepcopy(trainer.state_dict())}]}


def fork_state(state: dict, config: FewShotConfig, train: TrainConfig, seed: int) -> dict:
    """The few-shot checkpoint that continues the one-shot ``state`` under ``config`` and ``train``.

    ``run_fewshot(..., checkpoint=path, resume=True)`` on it trains exactly
    as a few-shot run from scratch with the same seed would have after the
    fork epoch (the one-shot prefix is the same run). When ``train.epochs``
    differs from the one-shot run's length (rule (b)), the cosine learning
    rate is re-aimed: from the fork on it follows the cosine of a
    ``train.epochs``-long run, scaled to continue from the current rate, and
    reaches its minimum at the last epoch (torch's recursive cosine with the
    new ``T_max``).

    Uses the checkpoint layout of ``gmgraph.train.fewshot`` and its private
    ``_settings_record``: the hook gmgraph lacks is a public way to start
    ``run_fewshot`` from a trainer state.

    Example:
        >>> b = bench(example_plan())
        >>> trainer = SupernetTrainer(supernet(b, 0), b.loaders, TrainConfig(epochs=4), seed=0)
        >>> forked = fork_state(oneshot_state(trainer, 0), FewShotConfig(method="random", split_at=(1,)),
        ...                     TrainConfig(epochs=2), seed=0)
        >>> forked["settings"]["fewshot"]["method"], forked["nodes"][0]["trainer"]["scheduler"]["T_max"]
        ('random', 2)
    """
    out = copy.deepcopy(state)
    out.pop("format", None)
    out["settings"] = fewshot._settings_record(config, train, seed, None)
    trainer = out["nodes"][0]["trainer"]
    if trainer["total_epochs"] != train.epochs:
        trainer["total_epochs"] = train.epochs
        trainer["scheduler"]["T_max"] = train.epochs
    return out


# ------------------------------------------------------------------ estimates


@torch.inference_mode()
def accuracy_and_loss(net: torch.nn.Module, batches) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of ``net`` (eval mode) over ``(x, y)`` batches.

    Example:
        >>> net = torch.nn.Linear(2, 2, bias=False)
        >>> _ = net.weight.data.copy_(torch.eye(2))
        >>> acc, loss = accuracy_and_loss(net, [(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))])
        >>> acc, round(loss, 4)
        (0.5, 0.7201)
    """
    net.eval()
    hits, total, n = 0, 0.0, 0
    for x, y, *_ in batches:
        logits = net(x)
        hits += int((logits.argmax(1) == y).sum())
        total += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    if n == 0:
        raise DataError("no validation samples to estimate on")
    return hits / n, total / n


def estimate(b: Bench, result: FewShotResult) -> tuple[list[float], list[float]]:
    """Val accuracy and loss of every architecture, in its own leaf, BN recalibrated on the fixed batches.

    Example:
        >>> b = bench(example_plan())
        >>> result = run_fewshot(supernet(b, 0), b.loaders, FewShotConfig(method="exhaustive", split_at=(1,)),
        ...                      TrainConfig(epochs=2, steps_per_epoch=1), quiet=True)
        >>> accs, losses = estimate(b, result)
        >>> len(accs), all(0 <= a <= 1 for a in accs), all(loss > 0 for loss in losses)
        (4, True, True)
    """
    accs, losses = [], []
    for arch in b.parsed:
        net = derive(locate(result, arch).gm, arch)
        recalibrate_bn(net, b.calib)
        acc, loss = accuracy_and_loss(net, b.loaders.val)
        accs.append(acc)
        losses.append(loss)
    return accs, losses


# ------------------------------------------------------------------ the jobs


def run_job(plan: Plan, job: Job) -> dict:
    """Run one job, save its result file atomically, and return the result (see the module's example)."""
    torch.set_num_threads(plan.threads)
    b = bench(plan)
    runner = {"oneshot": _run_oneshot, "fork": _run_fork, "zerocost": _run_zero_cost}[job.kind]
    start = time.perf_counter()
    record = {"id": job.id, "kind": job.kind, "method": job.method, "rule": job.rule, "cell": job.cell,
              "seed": job.seed, **runner(plan, job, b)}
    record["seconds"] = time.perf_counter() - start
    path = plan.result_path(job)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
    plan.checkpoint_path(job).unlink(missing_ok=True)
    return record


def _run_oneshot(plan: Plan, job: Job, b: Bench) -> dict:
    m, s = method(job.method), job.schedule
    fork_at = _fork_epoch(plan, s.epochs) if leaves_fork(m.key) else None
    fork, checkpoint = plan.fork_path(s.epochs, job.seed, m.key), plan.checkpoint_path(job)

    def keep_fork(done: int, result: FewShotResult) -> None:
        if done == fork_at:
            save_checkpoint(oneshot_state(result.leaves[0].trainer, done), fork)

    if fork_at is not None and checkpoint.exists() and not fork.exists() and load_checkpoint(checkpoint)["epoch"] >= fork_at:
        checkpoint.unlink()  # cut off between the checkpoint and the fork of that epoch: only a fresh run makes the fork
    result = run_fewshot(supernet(b, job.seed), b.loaders, FewShotConfig(method="oneshot"),
                         _train_config(plan, m.sampler, s.epochs, m.darts_order), seed=job.seed, quiet=True,
                         on_epoch=keep_fork, checkpoint=checkpoint, resume=True)  # a cut-off run goes on from it
    return _finish(b, job, result)


def _fork_epoch(plan: Plan, epochs: int) -> int | None:
    """Where a one-shot run of ``epochs`` leaves its fork: its first split epoch (None if it has none)."""
    try:
        return split_epochs(epochs, plan.fractions)[0]
    except ConfigError:
        return None


def _run_fork(plan: Plan, job: Job, b: Bench) -> dict:
    m, s = method(job.method), job.schedule
    train = _train_config(plan, m.sampler, s.epochs, m.darts_order)  # the sampler of the run it forks from
    r = rounds(plan, b, m.rounds)
    config = FewShotConfig(method=m.splitter, split_at=s.split_at, groups=2, rounds=r,
                           metric_children=plan.metric_children)
    checkpoint = plan.checkpoint_path(job)
    if not checkpoint.exists():  # otherwise: resume this job where it stopped
        fork = plan.fork_of(job)
        if not fork.exists():
            raise DataError(f"{job.id} needs the fork {fork}; run its one-shot job first")
        save_checkpoint(fork_state(load_checkpoint(fork), config, train, job.seed), checkpoint)
    result = run_fewshot(supernet(b, job.seed), b.loaders, config, train, seed=job.seed,
                         shared=nb201.shared_parameters, checkpoint=checkpoint, resume=True, quiet=True)
    return {**_finish(b, job, result), "rounds": r if m.splitter == "gm" else None}


def _finish(b: Bench, job: Job, result: FewShotResult) -> dict:
    start = time.perf_counter()
    accs, losses = estimate(b, result)
    s = job.schedule
    tree = [{k: step[k] for k in ("node", "epoch", "label", "groups", "score")} for step in result.tree]
    return {"epochs": s.epochs, "split_at": list(s.split_at), "parent": s.parent, "fork": s.fork,
            "cost": result.budget, "leaves": len(result.leaves), "tree": tree,
            "lr": [h["lr"] for h in result.leaves[0].trainer.history],  # after each epoch, the fork's included
            "sampler": result.leaves[0].trainer.config.sampler, "darts_order": result.leaves[0].trainer.config.darts_order,
            "train_seconds": result.timings.get("total_seconds", 0.0),
            "scoring_seconds": result.timings.get("scoring_seconds", 0.0),
            "estimate_seconds": time.perf_counter() - start, "estimates": accs, "losses": losses,
            "alpha_scores": alpha_scores(b, result)}


def alpha_scores(b: Bench, result: FewShotResult) -> list[float] | None:
    """Each ground-truth architecture's log-probability under a one-shot run's architecture parameters (the sum
    over labels of log softmax(alpha)[op]): how DARTS, GDAS, SNAS or ProxylessNAS themselves rank it, their argmax
    being the architecture they would hand over. None for samplers without architecture parameters.

    Example:
        >>> b = bench(example_plan())
        >>> result = run_fewshot(supernet(b, 0), b.loaders, FewShotConfig(method="oneshot"),
        ...                      TrainConfig(sampler="darts", epochs=1, steps_per_epoch=1), quiet=True)
        >>> scores = alpha_scores(b, result)
        >>> len(scores), all(s < 0 for s in scores)
        (4, True)
    """
    sampler = result.leaves[0].trainer.sampler
    alphas = getattr(sampler, "alphas", None)
    if not alphas or len(result.leaves) != 1:
        return None
    log_p = {label: alpha.detach().double().cpu().log_softmax(0) for label, alpha in alphas.items()}
    ops = sampler.space
    return [float(sum(log_p[label][ops[label].index(arch[label])] for label in log_p)) for arch in b.parsed]


def _run_zero_cost(plan: Plan, job: Job, b: Bench) -> dict:
    gm = supernet(b, job.seed)
    batch = b.calib[0]
    scores = {metric: [zero_cost(gm, arch, metric, batch, seed=job.seed) for arch in b.parsed]
              for metric in ZERO_COST}
    return {"scores": scores}


def probe(plan: Plan, *, archs: int = 8, methods: tuple[str, ...] = ("oneshot", "pada")) -> dict:
    """Seconds per supernet epoch of each one-shot method's sampler, per estimate and per zero-cost score here.

    For each of ``methods`` (one-shot (uniform) always) trains a fresh
    supernet of the ground truth's size for two epochs with its sampler (the
    second is timed), then estimates ``archs`` architectures and scores them:
    the unit costs :func:`ranking_protocol.job_seconds` multiplies out
    (``epoch_seconds``: uniform's; ``method_epoch_seconds``: each method's).

    Example:
        >>> unit = probe(example_plan(), archs=2, methods=("darts",))
        >>> sorted(unit), sorted(unit["method_epoch_seconds"])
        (['epoch_seconds', 'estimate_seconds', 'method_epoch_seconds', 'zero_cost_seconds'], ['darts', 'oneshot'])
    """
    torch.set_num_threads(plan.threads)
    b = bench(plan)
    per_method = {}
    for key in dict.fromkeys(("oneshot", *methods)):
        m = method(key)
        trainer = SupernetTrainer(supernet(b, 0), b.loaders, _train_config(plan, m.sampler, 2, m.darts_order), seed=0)
        trainer.train_epoch(quiet=True)
        per_method[key] = trainer.train_epoch(quiet=True)["seconds"]
    out = {"epoch_seconds": per_method["oneshot"], "method_epoch_seconds": per_method}
    result = FewShotResult(leaves=[fewshot.SubSupernet("root", trainer.gm, trainer)])
    sample = Bench(b.archs[:archs], b.truth[:archs], None, b.settings, b.loaders, b.calib)
    start = time.perf_counter()
    estimate(sample, result)
    out["estimate_seconds"] = (time.perf_counter() - start) / len(sample.archs)
    start = time.perf_counter()
    _run_zero_cost(plan, Job("zerocost", "zerocost", 0, "zc", 0), sample)
    out["zero_cost_seconds"] = (time.perf_counter() - start) / len(sample.archs)
    return out


_EXAMPLE: dict[str, str] = {}


def example_plan() -> Plan:
    """A plan on a tiny synthetic ground truth (4 archs x 2 seeds, made up once per process), fresh work folder.

    For the examples and tests: one split, at half the epochs; one training step per epoch; one BN batch.

    Example:
        >>> plan = example_plan()
        >>> len(local.load_groundtruth(plan.groundtruth)), plan.workdir != example_plan().workdir
        (4, True)
    """
    if "truth" not in _EXAMPLE:
        truth = Path(tempfile.mkdtemp()) / "gt.csv"
        local.made_up(4, [0, 1], out=truth, schedule=local.Schedule(C=2, N=1, epochs=1, batch_size=16))
        _EXAMPLE["truth"] = str(truth)
    return Plan(_EXAMPLE["truth"], tempfile.mkdtemp(), fractions=(0.5,), steps_per_epoch=1, bn_batches=1)
