"""The few-shot driver: train, split at set epochs, train the sub-supernets (ALGORITHMS.md §2-§4).

>>> import gmgraph
>>> from gmgraph import data
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
>>> result = run(gm, data.load("digits"), FewShotConfig(method="gm", epochs=2, split_at=(1,), rounds=1),
...              TrainConfig(steps_per_epoch=2), quiet=True)
>>> len(result.leaves), result.budget
(2, 3)

Splitters (``method``): ``oneshot`` (never split), ``exhaustive`` (one child
per op of the next label in order), ``gm`` (gradient matching: each node
scores its unsplit labels and splits the one with the largest cut),
``metric:<name>`` (distances from a zero-cost metric, labels in a fixed
order), ``random`` (a random partition of the next label in order). The
budget counts supernet-epochs: one epoch of one (sub-)supernet is one.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import fx
from torch.utils.data import DataLoader

from gmgraph.data import infinite
from gmgraph.errors import CheckpointError, ConfigError, SpaceError
from gmgraph.graph import space
from gmgraph.passes.restrict import lineage_id, restrict, split
from gmgraph.progress import log
from gmgraph.scores.gradient_matching import DISTANCES, SharedRule, gradient_matching
from gmgraph.scores.metric_split import exhaustive_partition, metric_distances, random_partition
from gmgraph.scores.partition import best_partition, name_groups
from gmgraph.scores.zero_cost import METRICS
from gmgraph.train import distributed
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from gmgraph.train.loop import SupernetTrainer, TrainConfig

METHODS = ("oneshot", "exhaustive", "gm", "random") + tuple(f"metric:{m}" for m in METRICS)


@dataclass
class FewShotConfig:
    """The few-shot schedule.

    Attributes:
        method: the splitter (see the module docstring).
        epochs: epochs of the whole schedule; every live node trains each epoch.
        split_at: epochs (0-based, before that epoch's training) at which every leaf splits.
        groups: groups per split (2 or 3; ``exhaustive`` ignores it).
        balanced: group sizes differ by at most one.
        rounds: R, batches averaged by gradient matching.
        distance: gradient distance (``cos``, ``per-filter-cos``, ``mse``).
        metric_children: sampled children per metric distance (``metric:*``).
        inherit: children continue the parent's optimizer, schedule and sampler
            state (True) or restart them (False); weights are inherited either way.
        labels: label order for the in-order splitters (default: the space's order).
        seed: seeds scoring and random partitions.
    """

    method: str = "gm"
    epochs: int = 30
    split_at: tuple[int, ...] = (10, 20)
    groups: int = 2
    balanced: bool = True
    rounds: int = 10
    distance: str = "cos"
    metric_children: int = 4
    inherit: bool = True
    labels: tuple[str, ...] | None = None
    seed: int = 0

    def validate(self) -> FewShotConfig:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not isinstance(self.epochs, int) or self.epochs <= 0:
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        bad = [e for e in self.split_at if not 0 < e < self.epochs]
        if bad or len(set(self.split_at)) != len(self.split_at):
            raise ConfigError(f"split epochs must be distinct and between 1 and {self.epochs - 1}, got {list(self.split_at)}")
        if self.groups not in (2, 3):
            raise ConfigError(f"groups must be 2 or 3, got {self.groups!r}")
        if self.distance not in DISTANCES:
            raise ConfigError(f"unknown distance {self.distance!r}; choose one of {', '.join(DISTANCES)}")
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be a positive integer, got {self.rounds!r}")
        self.split_at = tuple(sorted(self.split_at))
        return self


@dataclass
class Node:
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

    leaves: list[Node]
    tree: list[dict] = field(default_factory=list)
    budget: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def leaf_of(self, arch: dict[str, str]) -> Node:
        return locate(self, arch)


def locate(result: FewShotResult, arch: dict[str, str]) -> Node:
    """The leaf whose space contains ``arch`` (leaves partition the root space).

    Raises:
        SpaceError: when no leaf holds it (the arch is outside the searched space).
    """
    for leaf in result.leaves:
        if leaf.contains(arch):
            return leaf
    raise SpaceError(f"no sub-supernet contains {arch}; leaves are {[leaf.id for leaf in result.leaves]}")


def run(
    gm: fx.GraphModule,
    data: Sequence[DataLoader],
    config: FewShotConfig | None = None,
    train: TrainConfig | None = None,
    *,
    shared: SharedRule | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    on_epoch: Callable[[int, FewShotResult], None] | None = None,
) -> FewShotResult:
    """Run the few-shot schedule on ``gm`` (trained in place; children are new graphs).

    Args:
        gm: the root supernet.
        data: ``(train, val, test)`` loaders.
        config: the schedule; ``train``: the supernet training settings.
        shared: the shared-parameter rule for gradient matching (None: automatic).
        checkpoint: file written after every epoch (atomically) with every live node.
        resume: continue from ``checkpoint`` if it exists.
        quiet: no progress display.
        on_epoch: called with (epochs done, result so far) after each epoch's checkpoint.

    In a distributed run (a process group of several ranks, see
    :mod:`gmgraph.train.distributed`) every rank calls ``run`` with the same
    arguments: leaves are placed on ranks by
    :func:`~gmgraph.train.distributed.placement` (fewer leaves than ranks:
    data-parallel groups), split scores are spread over the ranks, rank 0
    writes the checkpoint and prints, and every rank returns the same result.
    """
    config = (config or FewShotConfig()).validate()
    train = dataclasses.replace(train or TrainConfig(), epochs=config.epochs).validate()
    team = distributed.team()  # None: this process works alone
    quiet = quiet or (team is not None and not team.is_root)  # only rank 0 prints
    result = FewShotResult(leaves=[Node("root", gm, SupernetTrainer(gm, data, train, total_epochs=config.epochs))])
    first = 0
    state = _load(checkpoint, team) if resume and checkpoint is not None else None
    if state is not None:
        first = _restore(result, gm, data, config, state)
    ranks = _place(result, team)
    start = time.perf_counter()
    for epoch in range(first, config.epochs):
        if epoch in config.split_at and config.method != "oneshot":
            t = time.perf_counter()
            result.leaves = _split_leaves(result, epoch, config, shared, quiet, team)
            result.timings["scoring_seconds"] = result.timings.get("scoring_seconds", 0.0) + time.perf_counter() - t
            ranks = _place(result, team)
        for node, owners in zip(result.leaves, ranks):
            if team is None or team.rank in owners:
                node.trainer.train_epoch(quiet=quiet, title=f"[{node.id}] " if len(result.leaves) > 1 else "")
        result.budget += len(result.leaves)
        if team is not None:
            everyone = epoch + 1 in config.split_at or epoch + 1 == config.epochs  # a split or the end is next
            if everyone or checkpoint is not None:
                _share(result, ranks, team, everyone=everyone, quiet=quiet)
        if checkpoint is not None and (team is None or team.is_root):
            save_checkpoint(_state(result, config, epoch + 1), checkpoint)
        if on_epoch is not None:
            on_epoch(epoch + 1, result)
    result.timings["total_seconds"] = result.timings.get("total_seconds", 0.0) + time.perf_counter() - start
    return result


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
        node.trainer.distribute(team.data_parallel(owners))
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
            log(f"[{node.id}] epoch {stats['epoch']}/{node.trainer.total_epochs} (rank {ranks[i][0]})  "
                f"loss={stats['loss']:.4g}  acc={stats['accuracy']:.4g}", quiet=quiet)


def _split_leaves(result: FewShotResult, epoch: int, config: FewShotConfig, shared, quiet: bool,
                  team: distributed.Team | None) -> list[Node]:
    leaves, offset = [], 0
    for node in result.leaves:
        children, scored = _split_node(node, epoch, config, shared, result, quiet, team, offset)
        leaves += children
        offset += scored  # the next node's labels continue the round robin over ranks
    return leaves


def _split_node(node: Node, epoch: int, config: FewShotConfig, shared, result: FewShotResult,
                quiet: bool, team: distributed.Team | None = None, offset: int = 0) -> tuple[list[Node], int]:
    batches = scoring_batches(node.trainer.train_set, node.trainer.batch_size, seed=_seed(config.seed, node.id, epoch))
    decision = choose_split(node.gm, config, batches, shared=shared, trainer=node.trainer, team=team, offset=offset)
    if decision is None:
        log(f"[{node.id}] nothing left to split", quiet=quiet)
        return [node], 0
    children = split(node.gm, decision["label"], decision["groups"])
    nodes = [Node(lineage_id(c), c, node.trainer.fork(c, inherit=config.inherit)) for c in children]
    result.tree.append({"node": node.id, "epoch": epoch, **decision, "children": [n.id for n in nodes]})
    groups = " | ".join("+".join(g) for g in decision["groups"])
    log(f"[{node.id}] epoch {epoch}: split {decision['label']} into {groups} (score {decision['score']:.4g})", quiet=quiet)
    return nodes, len(decision.get("scores", ()))


def scoring_batches(dataset, batch_size: int, *, seed: int) -> Iterator:
    """Fresh random training batches for scoring, from a stream of their own.

    Seeded per node and epoch, so a decision never depends on what was drawn
    before it (resumed runs and any order of nodes decide the same).
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    return infinite(loader)


def _seed(seed: int, node_id: str, epoch: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{node_id}@{epoch}".encode())) % (2**31)


def choose_split(gm: fx.GraphModule, config: FewShotConfig, batches, *, shared=None,
                 trainer: SupernetTrainer | None = None, team: distributed.Team | None = None,
                 offset: int = 0) -> dict | None:
    """Which label of ``gm`` to split and how: ``{"label", "groups", "score", "scores", "distances"}``.

    Returns None when no unsplit label has two or more ops. With a ``team``
    (every rank calls it with the same graph), the labels are scored round
    robin over the ranks, starting at rank ``offset % team.size``, and every
    rank returns the same decision.
    """
    order = _unsplit_labels(gm, config.labels)
    if not order:
        return None
    if config.method == "exhaustive":
        return {"label": order[0], "groups": exhaustive_partition(gm, order[0]), "score": 0.0}
    if config.method == "random":
        seed = config.seed + len(gm.meta.get("lineage", []))
        groups = random_partition(space(gm)[order[0]], config.groups, config.balanced, seed=seed)
        return {"label": order[0], "groups": [list(g) for g in groups], "score": 0.0}
    if config.method.startswith("metric:"):
        candidates = order[:1]  # the paper splits a fixed order of edges
    else:
        candidates = order
    scored = _score_labels(gm, candidates, config, batches, shared, trainer, team, offset)
    best = max(scored, key=lambda label: scored[label][2])  # ties: the first label in order
    distances, groups, score = scored[best]
    return {
        "label": best, "ops": list(space(gm)[best]), "groups": groups, "score": score,
        "scores": {label: s[2] for label, s in scored.items()},
        "distances": {label: s[0].tolist() for label, s in scored.items()},
    }


def _score_labels(gm, labels, config: FewShotConfig, batches, shared, trainer, team, offset: int) -> dict:
    """Score each label; a team spreads the labels over its ranks and swaps the results."""
    if team is None or len(labels) < 2:
        return {label: _score(gm, label, config, batches, shared, trainer) for label in labels}
    stream = iter(batches) is batches  # a stream: each label takes the next `rounds` batches
    mine = {}
    for i, label in enumerate(labels):
        if (offset + i) % team.size == team.rank:
            mine[label] = _score(gm, label, config, batches, shared, trainer)
        elif stream:  # draw the label's batches anyway: each label scores on the batches it gets in one process
            for _ in range(config.rounds):
                next(batches)
    merged = {label: s for part in team.all_gather(mine, "exchanging split scores") for label, s in part.items()}
    return {label: merged[label] for label in labels}


def _score(gm, label, config: FewShotConfig, batches, shared, trainer) -> tuple[torch.Tensor, list[list[str]], float]:
    if config.method == "gm":
        sampler = trainer.sampler if trainer is not None else "uniform"
        distances = gradient_matching(gm, label, batches, rounds=config.rounds, sampler=sampler, shared=shared,
                                      distance=config.distance, seed=config.seed)
    else:
        metric = config.method.split(":", 1)[1]
        distances = metric_distances(gm, label, metric, batches, n_children=config.metric_children, seed=config.seed)
    ops = space(gm)[label]
    groups = min(config.groups, len(ops))
    partition, score = best_partition(distances, groups=groups, balanced=config.balanced)
    return distances, [list(g) for g in name_groups(partition, ops)], score


def _unsplit_labels(gm: fx.GraphModule, order: Sequence[str] | None) -> list[str]:
    current = space(gm)
    done = {step["label"] for step in gm.meta.get("lineage", [])}
    labels = list(order) if order is not None else list(current)
    unknown = [label for label in labels if label not in current]
    if unknown:
        raise ConfigError(f"split order names unknown label(s) {unknown}; labels are {list(current)}")
    return [label for label in labels if label not in done and len(current[label]) >= 2]


def _state(result: FewShotResult, config: FewShotConfig, epoch: int) -> dict:
    return {
        "kind": "fewshot",
        "epoch": epoch,
        "fewshot": dataclasses.asdict(config),
        "tree": result.tree,
        "budget": result.budget,
        "timings": dict(result.timings),
        "nodes": [{"id": n.id, "lineage": n.gm.meta.get("lineage", []), "trainer": n.trainer.state_dict()}
                  for n in result.leaves],
    }


def _restore(result: FewShotResult, root: fx.GraphModule, data, config: FewShotConfig, state: dict) -> int:
    """Rebuild the live nodes of a checkpoint: restrict the root by each lineage, load each trainer."""
    if state.get("kind") != "fewshot":
        raise CheckpointError("this checkpoint was not written by a few-shot run")
    saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in state["fewshot"].items()}
    current = dataclasses.asdict(config)
    differ = [k for k in current if saved.get(k) != current[k]]
    if differ:
        raise CheckpointError(f"the checkpoint was written with other few-shot settings ({', '.join(differ)})")
    nodes = []
    for entry in state["nodes"]:
        gm = root
        for step in entry["lineage"]:
            gm = restrict(gm, {step["label"]: step["ops"]})
        train = TrainConfig(**entry["trainer"]["config"])
        trainer = SupernetTrainer(gm, data, train, total_epochs=entry["trainer"]["total_epochs"])
        trainer.load_state_dict(entry["trainer"])
        nodes.append(Node(entry["id"], gm, trainer))
    result.leaves, result.tree, result.budget = nodes, state["tree"], state["budget"]
    result.timings = dict(state["timings"])
    return state["epoch"]
