"""Splitters: which decision of a (sub-)supernet to split next, and into which groups of ops.

A splitter takes a :class:`SplitRequest` (the graph, its unsplit labels in
order, fresh scoring batches and the split options) and returns a decision
``{"label", "groups", "score", ...}``, or None when it never splits. The table
:data:`SPLITTERS` names them; ``metric:<name>`` works for every zero-cost
metric of :data:`~gmgraph.scores.zero_cost.METRICS`::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    >>> request = SplitRequest(gm, labels=list(nb201.LABELS), batches=iter([]))
    >>> get_splitter("exhaustive")(request)["groups"]
    [['none'], ['skip_connect'], ['nor_conv_1x1'], ['nor_conv_3x3'], ['avg_pool_3x3']]
    >>> "metric:synflow" in method_names() and get_splitter("oneshot")(request) is None
    True

The ``gm`` splitter follows one of two partition rules (:data:`gmgraph.config.PARTITION_RULES`,
``--partition-rule``): ``largest-cut`` (GM-NAS on NAS-Bench-201, the default)
splits the label whose best partition cuts the most distance, over the
partitions ``groups`` and ``balanced`` allow; ``smallest-within`` (GM-NAS on
the DARTS space) splits the label whose best partition keeps the least
distance inside its groups, over unbalanced partitions whose groups hold two
ops or more (2|5 or 3|4 of DARTS's 7 ops)::

    >>> d = [[0, 1, 4, 4], [1, 0, 4, 4], [4, 4, 0, 1], [4, 4, 1, 0]]
    >>> label_split(d, "smallest-within", groups=2, balanced=True)
    (((0, 1), (2, 3)), 2.0)

Adding a splitter is one function ``(request) -> decision | None`` and one entry
in :data:`SPLITTERS`; ``gmgraph search --method`` reads its names from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import fx

from gmgraph import registry
from gmgraph.config import METRIC_PREFIX, PARTITION_RULES, method_names
from gmgraph.errors import ConfigError
from gmgraph.graph import space
from gmgraph.samplers import Sampler
from gmgraph.scores.gradient_matching import SharedRule, gradient_matching
from gmgraph.scores.metric_split import exhaustive_partition, metric_split, random_partition
from gmgraph.scores.partition import Partition, best_partition, name_groups, within_distance
from gmgraph.scores.zero_cost import METRICS
from gmgraph.task import Task, get_task

SMALLEST_WITHIN = "smallest-within"
"""The partition rule whose label is the one with the smallest score (the other rules: the largest)."""

Scored = tuple[torch.Tensor, list[list[str]], float]
"""One label's ``(distance matrix, best groups, score)``."""

LabelScorer = Callable[["SplitRequest", Sequence[str], Callable[[str], Scored]], dict[str, Scored]]
"""``(request, labels, score_one) -> {label: scored}``: how the labels get scored (serially, or over ranks)."""


def score_serially(request: SplitRequest, labels: Sequence[str], score_one: Callable[[str], Scored]) -> dict:
    """Score each label in this process, in order."""
    return {label: score_one(label) for label in labels}


@dataclass
class SplitRequest:
    """What a splitter sees.

    Attributes:
        gm: the (sub-)supernet to split.
        labels: its unsplit labels with two or more ops, in split order.
        batches: a stream of fresh ``(x, y)`` training batches for scoring.
        groups, balanced: partition options (2 or 3 groups; sizes differ by at most one).
        partition_rule: how gradient matching picks the partition and the label
            (:data:`~gmgraph.config.PARTITION_RULES`).
        rounds: batches per label for gradient matching; ``distance``: its gradient distance.
        metric_children: sampled children per metric distance.
        seed: seeds scoring draws and random partitions.
        shared: gradient matching's shared-parameter rule (None: automatic).
        sampler: how gradient matching runs the other decisions (the node's own sampler).
        score_labels: how several labels are scored (a distributed run spreads them over ranks).
        task: whose loss the scores' gradients are of (:mod:`gmgraph.task`).
    """

    gm: fx.GraphModule
    labels: list[str]
    batches: Iterator
    groups: int = 2
    balanced: bool = True
    partition_rule: str = "largest-cut"
    rounds: int = 10
    distance: str = "cos"
    metric_children: int = 4
    seed: int = 0
    shared: SharedRule | None = None
    sampler: Sampler | str = "uniform"
    score_labels: LabelScorer = field(default=score_serially)
    task: Task | str = "classification"

    def skip(self, label: str) -> None:
        """Draw the batches ``label`` would have used (another rank scores it)."""
        for _ in range(self.rounds):
            next(self.batches)


Splitter = Callable[[SplitRequest], "dict | None"]


def never(request: SplitRequest) -> None:
    """One-shot: never split."""
    return None


def split_exhaustive(request: SplitRequest) -> dict:
    """Few-shot NAS: one child per op of the next label in order."""
    label = request.labels[0]
    return {"label": label, "groups": exhaustive_partition(request.gm, label), "score": 0.0}


def split_randomly(request: SplitRequest) -> dict:
    """The baseline: a random partition of the next label in order (seeded by the seed and the depth)."""
    label = request.labels[0]
    seed = request.seed + len(request.gm.meta.get("lineage", []))
    groups = random_partition(space(request.gm)[label], request.groups, request.balanced, seed=seed)
    return {"label": label, "groups": [list(g) for g in groups], "score": 0.0}


def split_by_gradient_matching(request: SplitRequest) -> dict:
    """GM-NAS: score every unsplit label by gradient matching; split the one its partition rule prefers."""
    def score_one(label: str) -> Scored:
        distances = gradient_matching(request.gm, label, request.batches, rounds=request.rounds,
                                      sampler=request.sampler, shared=request.shared,
                                      distance=request.distance, seed=request.seed, task=request.task)
        ops = space(request.gm)[label]
        partition, score = label_split(distances, request.partition_rule, groups=min(request.groups, len(ops)),
                                       balanced=request.balanced)
        return distances, [list(g) for g in name_groups(partition, ops)], score

    scored = request.score_labels(request, request.labels, score_one)
    return decide(request.gm, scored, smallest=request.partition_rule == SMALLEST_WITHIN)


def label_split(distances, rule: str, *, groups: int, balanced: bool) -> tuple[Partition, float]:
    """One label's partition and score under partition rule ``rule``.

    ``largest-cut``: the partition ``groups``/``balanced`` allow with the smallest within-group distance;
    the score is the distance it cuts (the label with the largest score is split).
    ``smallest-within``: unbalanced partitions whose groups hold two ops or more (one, where the
    label has fewer than ``2 x groups`` ops; ``balanced`` is not read); the score is the best one's
    within-group distance (the label with the smallest score is split).

    Raises:
        ConfigError: an unknown rule. SpaceError: a bad distance matrix.

    Example:
        >>> d = [[0, .1, .9, .9, .9], [.1, 0, .9, .9, .9], [.9, .9, 0, .2, .2], [.9, .9, .2, 0, .2],
        ...      [.9, .9, .2, .2, 0]]
        >>> label_split(d, "largest-cut", groups=2, balanced=True)
        (((0, 1), (2, 3, 4)), 5.4)
    """
    if rule not in PARTITION_RULES:
        raise ConfigError(f"unknown partition rule {rule!r}; choose one of {', '.join(PARTITION_RULES)}")
    if rule != SMALLEST_WITHIN:
        return best_partition(distances, groups=groups, balanced=balanced)
    k = len(distances)
    partition, _ = best_partition(distances, groups=groups, balanced=False, min_size=2 if k >= 2 * groups else 1)
    return partition, within_distance(distances, partition)


def split_by_metric(metric: str) -> Splitter:
    """Ly-Manson et al.: distances from zero-cost ``metric``, the next label in a fixed order."""
    def splitter(request: SplitRequest) -> dict:
        def score_one(label: str) -> Scored:
            ops = space(request.gm)[label]
            groups, score, distances = metric_split(
                request.gm, label, metric, request.batches, groups=min(request.groups, len(ops)),
                balanced=request.balanced, n_children=request.metric_children, seed=request.seed,
                loss_fn=get_task(request.task).loss)
            return distances, [list(g) for g in groups], score

        return decide(request.gm, request.score_labels(request, request.labels[:1], score_one))

    splitter.__name__ = f"split_by_{metric}"
    return splitter


def decide(gm: fx.GraphModule, scored: dict[str, Scored], *, smallest: bool = False) -> dict:
    """The decision for the label with the largest score, or the smallest with ``smallest`` (ties: the
    first label in order)."""
    pick = min if smallest else max
    best = pick(scored, key=lambda label: scored[label][2])
    distances, groups, score = scored[best]
    return {
        "label": best, "ops": list(space(gm)[best]), "groups": groups, "score": score,
        "scores": {label: s[2] for label, s in scored.items()},
        "distances": {label: s[0].tolist() for label, s in scored.items()},
    }


SPLITTERS = registry.SPLITTERS
"""The splitter table (:data:`gmgraph.registry.SPLITTERS`): name -> splitter. ``metric:<name>``
splitters come from the metric table."""



def get_splitter(name: str) -> Splitter:
    """The splitter called ``name``.

    Raises:
        ConfigError: naming the accepted splitters.
    """
    if name in SPLITTERS:
        return SPLITTERS[name]
    if name.startswith(METRIC_PREFIX) and name[len(METRIC_PREFIX):] in METRICS:
        return split_by_metric(name[len(METRIC_PREFIX):])
    raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(method_names())}")


def unsplit_labels(gm: fx.GraphModule, order: Sequence[str] | None = None) -> list[str]:
    """Labels of ``gm`` not split yet in its lineage and still holding two or more ops, in ``order``.

    Raises:
        ConfigError: ``order`` names a label the graph does not have.
    """
    current = space(gm)
    done = {step["label"] for step in gm.meta.get("lineage", [])}
    labels = list(order) if order is not None else list(current)
    unknown = [label for label in labels if label not in current]
    if unknown:
        raise ConfigError(f"split order names unknown label(s) {unknown}; labels are {list(current)}")
    return [label for label in labels if label not in done and len(current[label]) >= 2]
