"""The few-shot driver: train, split at set epochs, train the sub-supernets (docs/algorithms.md §2-§4).

>>> import gmgraph
>>> from gmgraph import data
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
>>> result = run_fewshot(gm, data.load("digits"), FewShotConfig(method="gm", split_at=(1,), rounds=1),
...                      TrainConfig(epochs=2, steps_per_epoch=2), quiet=True)
>>> len(result.leaves), result.budget
(2, 3)

Splitters (``method``, the table :data:`gmgraph.scores.splitters.SPLITTERS`):
``oneshot`` (never split), ``exhaustive`` (one child per op of the next label
in order), ``gm`` (gradient matching: each sub-supernet scores its unsplit
labels and splits the one with the largest cut), ``metric:<name>`` (distances
from a zero-cost metric, labels in a fixed order), ``random`` (a random
partition of the next label in order). The budget counts supernet-epochs: one
epoch of one (sub-)supernet is one. :func:`train_supernet` is the one-shot
entry point to the same engine.

Children inherit their parent's weights; with ``leaf_restart="weights"`` the
final leaves (every sub-supernet after the last split) start again instead:
fresh weights (:func:`gmgraph.train.restart.reinitialise`, seeded by the leaf's
own seed), optimizer, sampler state and a cosine schedule over the epochs left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import fx
from torch.utils.data import DataLoader

from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.errors import CheckpointError, ConfigError, SpaceError
from gmgraph.graph import space
from gmgraph.passes.restrict import lineage_id, restrict, split
from gmgraph.progress import Progress, active_job, epoch_steps, log
from gmgraph.scores.gradient_matching import SharedRule
from gmgraph.scores.splitters import (
    SplitRequest,
    get_splitter,
    score_serially,
    unsplit_labels,
)
from gmgraph.seeding import derived_seed
from gmgraph.settings import as_dict, replace_settings
from gmgraph.task import Task
from gmgraph.train import data_parallel, distributed
from gmgraph.train.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from gmgraph.train.loop import ArchPenalty, PhaseHook, SupernetTrainer
from gmgraph.train.restart import reinitialise


@dataclass
class SubSupernet:
    """One (sub-)supernet of the split tree and its trainer."""

    id: str
    gm: fx.GraphModule
    trainer: SupernetTrainer

    @property
    def space(self) -> dict[str, tuple[str, ...]]:
        return space(self.gm)

    def contains(self, arch: dict[str, str]) -> bool:
        return all(arch[label] in ops for label, ops in self.space.items())


@dataclass
class FewShotResult:
    """The trained leaves, the split tree and the cost of getting there."""

    leaves: list[SubSupernet]
    tree: list[dict] = field(default_factory=list)
    budget: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def leaf_of(self, arch: dict[str, str]) -> SubSupernet:
        return locate(self, arch)


def locate(result: FewShotResult, arch: dict[str, str]) -> SubSupernet:
    """The leaf whose space contains ``arch`` (leaves partition the root space).

    Raises:
        SpaceError: when no leaf holds it (the arch is outside the searched space).
    """
    for leaf in result.leaves:
        if leaf.contains(arch):
            return leaf
    raise SpaceError(f"no sub-supernet contains {arch}; leaves are {[leaf.id for leaf in result.leaves]}")


def run_fewshot(
    gm: fx.GraphModule,
    data: Sequence[DataLoader],
    config: FewShotConfig | None = None,
    train: TrainConfig | None = None,
    *,
    seed: int = 0,
    shared: SharedRule | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[int, FewShotResult], None] | None = None,
    record: Mapping[str, Any] | None = None,
    arch_penalty: ArchPenalty | None = None,
    device: torch.device | None = None,
    before_phase: PhaseHook | None = None,
    task: Task | str | None = None,
) -> FewShotResult:
    """Run the few-shot schedule on ``gm`` (trained in place; children are new graphs).

    Args:
        gm: the root supernet.
        data: ``(train, val, test)`` loaders.
        config: the split schedule; ``train``: the supernet training settings
            (``train.epochs`` is the length of the whole schedule).
        seed: seeds training, scoring and random splits.
        shared: the shared-parameter rule for gradient matching (None: automatic).
        checkpoint: file written after every epoch (atomically) with every live sub-supernet.
        resume: continue from ``checkpoint`` if it exists (its settings must be these).
        quiet: no progress display.
        on_epoch: called with (epochs done, result so far) after each epoch's checkpoint.
        record: more settings that shaped ``gm`` and ``data`` (space, sizes, dataset, batch size):
            the checkpoint records them and a resume must match them, like the training settings.
        arch_penalty: an extra architecture-loss term for weighted samplers, given to every
            (sub-)supernet's trainer (e.g. :class:`~gmgraph.train.penalty.LatencyPenalty`).
        device: where every (sub-)supernet trains, as the run resolved it
            (:func:`gmgraph.device.training_device`); default ``train.device`` resolved by the root's trainer.
        before_phase: the space's step when a ``--shrink`` phase starts, run by every (sub-)supernet's
            trainer on its own graph (:attr:`gmgraph.spaces.SpaceSpec.before_phase`).
        task: what the supernets learn (:mod:`gmgraph.task`; default: ``train.task``, else classification):
            its loss trains them and scores their splits.

    In a distributed run (a process group of several ranks, see
    :mod:`gmgraph.train.distributed`) every rank calls it with the same
    arguments: leaves are placed on ranks by
    :func:`~gmgraph.train.distributed.placement` (fewer leaves than ranks:
    data-parallel groups), split scores are spread over the ranks, rank 0
    writes the checkpoint and prints, and every rank returns the same result.
    """
    config, train = config or FewShotConfig(), train or TrainConfig()
    splits = config.splits(train.epochs)
    if config.leaf_restart != "none" and train.shrink is not None:
        raise ConfigError(f"--leaf-restart {config.leaf_restart} starts the final leaves' sampler schedule again, "
                          f"and --shrink {train.shrink} lays its phases over the whole run: use one of them")
    settings = _settings_record(config, train, seed, record)
    team = distributed.team()  # None: this process works alone
    quiet = quiet or (team is not None and not team.is_root)  # only rank 0 prints
    result = FewShotResult(leaves=[SubSupernet("root", gm, SupernetTrainer(gm, data, train, seed=seed,
                                                                           arch_penalty=arch_penalty,
                                                                           device=device,
                                                                           before_phase=before_phase,
                                                                           task=task))])
    first = 0
    state = _load(checkpoint, team) if resume and checkpoint is not None else None
    if state is not None:
        first = _restore(result, gm, data, settings, state, checkpoint)
    ranks = _place(result, team)
    before, start = result.timings.get("total_seconds", 0.0), time.perf_counter()  # earlier invocations' time
    for epoch in range(first, train.epochs):
        if epoch in splits:
            t = time.perf_counter()
            result.leaves = _split_leaves(result, epoch, config, seed, shared, quiet, team)
            if config.leaf_restart == "weights" and epoch == splits[-1]:
                result.leaves = [restart(node) for node in result.leaves]
                log(f"epoch {epoch}: the {len(result.leaves)} final leaves restart from fresh weights", quiet=quiet)
            result.timings["scoring_seconds"] = result.timings.get("scoring_seconds", 0.0) + time.perf_counter() - t
            ranks = _place(result, team)
        _plan_steps(result, ranks, team, train.epochs - epoch)
        for node, owners in zip(result.leaves, ranks):
            if team is None or team.rank in owners:
                node.trainer.train_epoch(quiet=quiet, title=f"[{node.id}] " if len(result.leaves) > 1 else "")
                node.trainer.history[-1]["epoch"] = epoch + 1  # the run's epoch (a restarted leaf counts from 0)
        result.budget += len(result.leaves)
        if team is not None:
            everyone = epoch + 1 in splits or epoch + 1 == train.epochs  # a split or the end is next
            if everyone or checkpoint is not None:
                _share(result, ranks, team, everyone=everyone, quiet=quiet)
        result.timings["total_seconds"] = before + time.perf_counter() - start  # the checkpoint carries it on
        if checkpoint is not None and (team is None or team.is_root):
            save_checkpoint(_state(result, settings, epoch + 1), checkpoint)
        if on_epoch is not None:
            on_epoch(epoch + 1, result)
    result.timings["total_seconds"] = before + time.perf_counter() - start
    return result


def _plan_steps(result: FewShotResult, ranks: list, team: distributed.Team | None, epochs_left: int) -> None:
    """Tell the active job estimate (:mod:`gmgraph.progress`) the training steps this process has ahead."""
    job = active_job()
    if job is None:
        return
    mine = sum(1 for owners in ranks if team is None or team.rank in owners)
    trainer = result.leaves[0].trainer
    steps = epoch_steps(trainer.data.batches_per_epoch(), trainer.config.steps_per_epoch)
    if steps is not None:  # an iterable that does not say its length: no plan, no ETA
        job.plan("supernets", mine * epochs_left * steps)


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
    train: TrainConfig | None = None,
    sampler: str | None = None,
    epochs: int | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    task: Task | str | None = None,
    **settings,
) -> TrainResult:
    """Train a supernet in place (one-shot: no split) and return its per-epoch history.

    Args:
        gm: traced supernet (``gmgraph.trace``).
        data: ``(train, val, test)`` loaders, e.g. ``gmgraph.data.load("digits")``.
        train: the training settings as one object (default: ``TrainConfig(sampler="uniform", epochs=10)``);
            ``sampler``, ``epochs`` and ``**settings`` replace its fields.
        sampler: a name of :data:`gmgraph.samplers.SAMPLERS` (default: ``train``'s, uniform).
        epochs: epochs to train (default: ``train``'s, 10 without one).
        seed: seeds the sampler and the data order.
        checkpoint_dir: where ``last.pt`` is written after every epoch (atomically).
        resume: continue from ``checkpoint_dir/last.pt`` if it exists (same settings only).
        quiet: no progress display.
        on_epoch: called with each epoch's statistics after its checkpoint is written.
        task: what is learned: a :class:`~gmgraph.task.Task` of your own, or a built-in's name (default
            ``train.task``, else classification); the history's ``accuracy`` is its metric.
        **settings: any other :class:`TrainConfig` field (lr, weight_decay, ...); an unknown one is a
            ConfigError naming it.

    Raises:
        ConfigError: bad settings. DataError: data the supernet cannot run on.
        TrainError: a non-finite loss. CheckpointError: a corrupt or foreign checkpoint on resume.

    Example:
        >>> import gmgraph
        >>> from gmgraph import data
        >>> from gmgraph.spaces import nb201
        >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
        >>> result = train_supernet(gm, data.load("digits"), epochs=1, steps_per_epoch=2, quiet=True)
        >>> len(result.history), sorted(result.history[0])[:3]
        (1, ['accuracy', 'epoch', 'loss'])
    """
    given = {"sampler": sampler, "epochs": epochs}
    changes = {**{k: v for k, v in given.items() if v is not None}, **settings}
    base = train if train is not None else TrainConfig(sampler="uniform", epochs=10)  # this function's defaults
    train = replace_settings(base, "training", **changes)
    last = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None

    def report(done: int, result: FewShotResult) -> None:
        stats = result.leaves[0].trainer.history[-1]
        if on_epoch is not None:
            on_epoch(stats)

    result = run_fewshot(gm, data, FewShotConfig(method="oneshot"), train, seed=seed, checkpoint=last,
                         resume=resume, quiet=quiet, on_epoch=report, task=task)
    trainer = result.leaves[0].trainer
    return TrainResult(trainer.gm, trainer.history, trainer)


def restart(node: SubSupernet) -> SubSupernet:
    """``node`` trained afresh from here: re-initialised weights (seeded by the seed its trainer got), a new
    optimizer, sampler and cosine schedule over the epochs its trainer has left (``--leaf-restart weights``).

    The history of the epochs its lineage trained stays (as an inheriting child's does); the run numbers
    the epochs after it on (:func:`run_fewshot`), while the trainer counts its own from 0.

    >>> import gmgraph
    >>> from gmgraph import data
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> node = SubSupernet("root", gm, SupernetTrainer(gm, data.load("digits"),
    ...                                                     TrainConfig(epochs=3, lr=0.1, steps_per_epoch=2)))
    >>> _ = node.trainer.train_epoch(quiet=True)
    >>> fresh = restart(node)
    >>> fresh.trainer.total_epochs, fresh.trainer.epoch, fresh.trainer.optimizer.param_groups[0]["lr"]
    (2, 0, 0.1)
    """
    trainer = node.trainer.fork(node.gm, inherit=False)
    reinitialise(node.gm, seed=trainer.seed)
    trainer.history = [dict(h) for h in node.trainer.history]
    return SubSupernet(node.id, node.gm, trainer)


def _load(path: str | Path, team: distributed.Team | None) -> dict | None:
    """The checkpoint if there is one; in a distributed run rank 0 reads it and hands it to everyone."""
    def read():
        return load_checkpoint(path) if Path(path).exists() else None

    return read() if team is None else team.on_root(read, "reading the checkpoint")


def _place(result: FewShotResult, team: distributed.Team | None) -> list[tuple[int, ...]]:
    """Which ranks train each leaf; several ranks on one leaf train it data-parallel."""
    if team is None:
        return [(0,)] * len(result.leaves)
    ranks = team.assign(len(result.leaves))
    for node, owners in zip(result.leaves, ranks):
        node.trainer.distribute(data_parallel.over(team, owners))
    return ranks


def _share(result: FewShotResult, ranks: list[tuple[int, ...]], team: distributed.Team, *,
           everyone: bool, quiet: bool) -> None:
    """Bring the states of leaves trained elsewhere to rank 0 (for the checkpoint) or to every rank.

    Every rank needs every leaf before a split (it scores some of their
    labels and forks all of them) and at the end; a leaf trained by the whole
    team is the same everywhere already.
    """
    moving = [i for i, owners in enumerate(ranks) if len(owners) < team.size]
    if not moving:
        return
    mine = {result.leaves[i].id: result.leaves[i].trainer.state_dict() for i in moving if ranks[i][0] == team.rank}
    if everyone:
        parts = team.all_gather(mine, "sharing the sub-supernets")
    else:
        parts = team.gather(mine, "gathering the sub-supernets for the checkpoint")
    if parts is None:
        return
    states = {node_id: state for part in parts for node_id, state in part.items()}
    for i in moving:
        node = result.leaves[i]
        if team.rank not in ranks[i]:
            node.trainer.load_state_dict(states[node.id])
            stats = node.trainer.history[-1]
            log(f"[{node.id}] epoch {stats['epoch']}/{node.trainer.config.epochs} (rank {ranks[i][0]})  "
                f"loss={stats['loss']:.4g}  acc={stats['accuracy']:.4g}", quiet=quiet)


def _split_leaves(result: FewShotResult, epoch: int, config: FewShotConfig, seed: int, shared, quiet: bool,
                  team: distributed.Team | None) -> list[SubSupernet]:
    leaves, offset = [], 0
    for node in result.leaves:
        children, scored = _split_node(node, epoch, config, seed, shared, result, quiet, team, offset)
        leaves += children
        offset += scored  # the next node's labels continue the round robin over ranks
    return leaves


def _split_node(node: SubSupernet, epoch: int, config: FewShotConfig, seed: int, shared, result: FewShotResult,
                quiet: bool, team: distributed.Team | None, offset: int) -> tuple[list[SubSupernet], int]:
    decision = _decide(node, epoch, config, seed, shared, team, offset, quiet)
    if decision is None:
        log(f"[{node.id}] nothing left to split", quiet=quiet)
        return [node], 0
    children = split(node.gm, decision["label"], decision["groups"])
    nodes = [SubSupernet(lineage_id(c), c, node.trainer.fork(c, inherit=config.inherit)) for c in children]
    result.tree.append({"node": node.id, "epoch": epoch, **decision, "children": [n.id for n in nodes]})
    groups = " | ".join("+".join(g) for g in decision["groups"])
    log(f"[{node.id}] epoch {epoch}: split {decision['label']} into {groups} (score {decision['score']:.4g})", quiet=quiet)
    return nodes, len(decision.get("scores", ()))


def _decide(node: SubSupernet, epoch: int, config: FewShotConfig, seed: int, shared,
            team: distributed.Team | None, offset: int, quiet: bool = True) -> dict | None:
    """The splitter's decision for ``node``; None when it has nothing left to split. Scoring shows its
    progress, one step per label this process scores."""
    labels = unsplit_labels(node.gm, config.labels)
    if not labels:
        return None
    batches = node.trainer.data.scoring_batches(seed=derived_seed(seed, f"{node.id}@{epoch}"))
    request = SplitRequest(node.gm, labels, batches, **split_options(config), seed=seed, shared=shared,
                           sampler=node.trainer.sampler,
                           score_labels=_shown(_over_ranks(team, offset) if team is not None else score_serially,
                                               f"[{node.id}] scoring ({config.method})", quiet),
                           task=node.trainer.task)
    return get_splitter(config.method)(request)


def _shown(score_labels, title: str, quiet: bool):
    """``score_labels`` with a progress line: one step per label scored here (the labels of other ranks are
    theirs to show), closed when the scoring ends."""

    def scored(request, labels, score_one):
        bar = Progress(title, total=len(labels), quiet=quiet)
        done = []

        def one(label):
            out = score_one(label)
            done.append(label)
            bar.update(label=label)
            return out

        result = score_labels(request, labels, one)
        bar.total = len(done)
        bar.close()
        return result

    return scored


def split_options(config: FewShotConfig) -> dict:
    """The schedule's options a splitter reads: every field :class:`SplitRequest` spells as
    :class:`FewShotConfig` does, passed through by name (groups, balanced, rounds, distance, metric_children),
    so an option added to both reaches the splitter with no code here.

    ``labels`` is the one name the two use for different things (the config's is a split order, the
    request's the node's labels not yet split), so it is not passed.

    >>> split_options(FewShotConfig(rounds=3))
    {'balanced': True, 'distance': 'cos', 'groups': 2, 'metric_children': 4, 'partition_rule': 'largest-cut', 'rounds': 3}
    """
    shared = {f.name for f in fields(SplitRequest)} & {f.name for f in fields(config)}
    return {name: getattr(config, name) for name in sorted(shared - {"labels"})}


def _over_ranks(team: distributed.Team, offset: int):
    """Score labels round robin over the team's ranks (from rank ``offset % size``) and swap the results.

    Every rank calls it with the same graph and returns the same scores; each
    label is scored on the batches it would get in one process.
    """
    def score_labels(request: SplitRequest, labels, score_one) -> dict:
        if len(labels) < 2:
            return {label: score_one(label) for label in labels}
        mine = {}
        for i, label in enumerate(labels):
            if (offset + i) % team.size == team.rank:
                mine[label] = score_one(label)
            else:
                request.skip(label)
        merged = {label: s for part in team.all_gather(mine, "exchanging split scores") for label, s in part.items()}
        return {label: merged[label] for label in labels}

    return score_labels


def _settings_record(config: FewShotConfig, train: TrainConfig, seed: int, record: Mapping | None) -> dict:
    """Every setting that shapes a run's training, as the checkpoint records it."""
    return {"fewshot": as_dict(config), "train": train.shaping(), "seed": seed, "run": dict(record or {})}


def _state(result: FewShotResult, settings: dict, epoch: int) -> dict:
    return {
        "kind": "fewshot",
        "epoch": epoch,
        "settings": settings,
        "tree": result.tree,
        "budget": result.budget,
        "timings": dict(result.timings),
        "nodes": [{"id": n.id, "lineage": n.gm.meta.get("lineage", []), "trainer": n.trainer.state_dict()}
                  for n in result.leaves],
    }


def _restore(result: FewShotResult, root: fx.GraphModule, data, settings: dict, state: dict, path) -> int:
    """Rebuild the live sub-supernets of a checkpoint: restrict the root by each lineage, load each trainer."""
    if state.get("kind") != "fewshot":
        raise CheckpointError(f"{path} was not written by a few-shot run")
    check_same_settings(_flat(state["settings"]), _flat(settings), path)
    train = result.leaves[0].trainer.config
    nodes = []
    for entry in state["nodes"]:
        gm = root
        for step in entry["lineage"]:
            gm = restrict(gm, {step["label"]: step["ops"]})
        trainer = SupernetTrainer(gm, data, train, seed=entry["trainer"]["seed"],
                                  total_epochs=entry["trainer"]["total_epochs"],
                                  arch_penalty=result.leaves[0].trainer.arch_penalty,
                                  device=result.leaves[0].trainer.device,
                                  before_phase=result.leaves[0].trainer.before_phase,
                                  task=result.leaves[0].trainer.task)
        trainer.load_state_dict(entry["trainer"])
        nodes.append(SubSupernet(entry["id"], gm, trainer))
    result.leaves, result.tree, result.budget = nodes, state["tree"], state["budget"]
    result.timings = dict(state["timings"])
    return state["epoch"]


def _flat(settings: dict) -> dict:
    """``{"fewshot": {...}, "train": {...}, "seed": s}`` as ``{"fewshot.method": ..., "seed": s}``."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
