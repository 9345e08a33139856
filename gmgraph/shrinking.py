"""Progressive shrinking (Once-for-All) as a schedule of the values each elastic label may take.

The graph is never edited: a sampler asks the schedule, at the start of each
epoch, which ops each label may draw (:meth:`ShrinkSchedule.allowed`).
Phases run in the order given (``gmgraph.config.parse_shrink``); before a
label's kind has had its phase it takes its largest value only, and a phase
of ``n`` stages adds the label's ``m`` smaller values largest first,
``ceil(m * i / n)`` of them by the end of stage ``i`` (OFA's ``depth:5+5``
with depths {4, 3, 2} allows {4, 3} then {4, 3, 2}). After the last phase
everything it reached stays allowed; kinds the schedule never names keep
their largest value. Op choices (kind ``op``) are never limited.

    >>> from torch import nn
    >>> from gmgraph.choice import Choice
    >>> from gmgraph.elastic import ConvView
    >>> shared = nn.Conv2d(2, 4, 7, padding=3)
    >>> groups = {"k": [Choice({f"{k}x{k}": ConvView(shared, kernel=k) for k in (3, 5, 7)}, "k")]}
    >>> schedule = ShrinkSchedule("full:1,kernel:1+1", groups)
    >>> [schedule.allowed(epoch)["k"] for epoch in range(4)]
    [('7x7',), ('5x5', '7x7'), ('3x3', '5x5', '7x7'), ('3x3', '5x5', '7x7')]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from gmgraph.choice import Choice
from gmgraph.config import parse_shrink
from gmgraph.label_sizes import label_kind, largest_first


class ShrinkSchedule:
    """The allowed ops of every label of one graph, epoch by epoch.

    Args:
        text: the schedule, e.g. ``"full:5,kernel:10,depth:5+5,width:5+5"``.
        groups: label -> its Choices (:func:`gmgraph.graph.choices`).

    Raises:
        ConfigError: a schedule that does not parse.
    """

    def __init__(self, text: str, groups: Mapping[str, Sequence[Choice]]):
        self.text = text
        self.phases = parse_shrink(text)
        self.kinds = {label: label_kind(group) for label, group in groups.items()}
        self.order = {label: largest_first(group) for label, group in groups.items()}
        self.names = {label: group[0].names for label, group in groups.items()}

    def unlocked(self, epoch: int) -> dict[str, float]:
        """kind -> the share of its smaller values allowed in ``epoch`` (0-based); kinds not named: 0."""
        shares: dict[str, float] = {}
        start = 0
        for kind, stages in self.phases:
            for i, length in enumerate(stages, 1):
                if epoch < start:
                    return shares
                shares[kind] = i / len(stages)
                start += length
        return shares

    def starting(self, epoch: int) -> str | None:
        """The phase whose first epoch is ``epoch`` (0-based); None when no phase starts then.

        The trainer runs its space's ``before_phase`` hook then (OFA re-sorts channels before ``width``).

        >>> [ShrinkSchedule("full:1,width:2", {}).starting(epoch) for epoch in range(4)]
        ['full', 'width', None, None]
        """
        start = 0
        for kind, stages in self.phases:
            if epoch == start:
                return kind
            start += sum(stages)
        return None

    def allowed(self, epoch: int) -> dict[str, tuple[str, ...]]:
        """label -> the ops it may take in ``epoch`` (0-based), in the label's own order."""
        shares = self.unlocked(epoch)
        out = {}
        for label, order in self.order.items():
            if self.kinds[label] == "op":
                out[label] = self.names[label]
                continue
            extra = math.ceil((len(order) - 1) * shares.get(self.kinds[label], 0.0) - 1e-9)
            keep = set(order[:1 + extra])
            out[label] = tuple(op for op in self.names[label] if op in keep)
        return out


def trained_space(gm, shrink: str | None, epochs: int) -> dict[str, tuple[str, ...]]:
    """label -> the ops a run's supernets were trained on: every op, or under a ``shrink`` schedule what
    its last epoch allowed (a kind the schedule never unlocked keeps its largest value only).

    The search runs over this, as OFA searches what progressive shrinking trained: a width no step
    ever ran has never been trained, so its accuracy on the shared weights means nothing.

    >>> import torch, gmgraph
    >>> from gmgraph.spaces import ofa
    >>> gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, divisor=4))
    >>> trained = trained_space(gm, "full:1,kernel:2", epochs=3)
    >>> trained["s1.b1.kernel"], trained["s1.b1.expand"], trained["s1.depth"]
    (('k3', 'k5', 'k7'), ('e6',), ('d4',))
    >>> len(trained_space(gm, None, epochs=3)["s1.b1.expand"])
    3
    """
    from gmgraph.graph import choices, space

    if shrink is None:
        return space(gm)
    return ShrinkSchedule(shrink, choices(gm)).allowed(epochs - 1)
