"""A latency limit kept when measured, not only when predicted.

A search keeps ``--max-latency-ms`` by the latency table's prediction; the
chosen network is then timed end to end, and a prediction can be off for it.
:func:`first_within` takes the candidates in order of preference (the best
first), times them one by one and returns the first whose measured latency
keeps the limit; when none of the first ``tries`` does, the run fails with one
line, since the user asked for a limit::

    >>> ms = {"a": 0.04, "b": 0.02, "c": 0.01}
    >>> pick = first_within([({"x": k}, 0.9) for k in "abc"], lambda arch: ms[arch["x"]], limit=0.03)
    >>> pick.arch, pick.fitness, pick.latency_ms, pick.passed_over
    ({'x': 'b'}, 0.9, 0.02, [({'x': 'a'}, 0.04)])
    >>> first_within([({"x": "a"}, 0.9)], lambda arch: ms[arch["x"]], limit=0.03)
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: --max-latency-ms 0.03: the chosen arch measured 0.04 ms in onnxruntime \
(its prediction kept the limit) and no other candidate was left to try; raise the limit
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gmgraph.arch import Arch
from gmgraph.errors import ConfigError

TRIES = 10
"""Candidates timed at most before the run gives up (each timing exports and runs the network: about a second)."""


@dataclass(frozen=True)
class Pick:
    """The candidate chosen by :func:`first_within`.

    Attributes:
        arch: the architecture.
        fitness: its search score, as given with it.
        latency_ms: its measured latency.
        timing: what ``measure`` returned for it (a :class:`~gmgraph.latency.measure.Timing` in a run).
        passed_over: the better candidates measured over the limit, ``(arch, ms)``, best first.
    """

    arch: Arch
    fitness: Any
    latency_ms: float
    timing: Any = None
    passed_over: list[tuple[Arch, float]] = field(default_factory=list)


def first_within(candidates: Sequence[tuple[Arch, Any]], measure: Callable[[Arch], Any], limit: float, *,
                 tries: int = TRIES) -> Pick:
    """The first of ``candidates`` whose measured latency is at most ``limit`` ms.

    Args:
        candidates: ``(arch, fitness)`` in order of preference, the search's choice first.
        measure: arch -> its latency in ms, or an object with ``median_ms`` (a ``Timing``).
        limit: the ``--max-latency-ms`` to keep.
        tries: candidates timed at most.

    Raises:
        ConfigError: none of the first ``tries`` candidates keeps the limit when measured.
    """
    over: list[tuple[Arch, float]] = []
    for arch, fitness in list(candidates)[:tries]:
        timing = measure(dict(arch))
        ms = float(getattr(timing, "median_ms", timing))
        if ms <= limit:
            return Pick(dict(arch), fitness, ms, timing, over)
        over.append((dict(arch), ms))
    raise _failure(over, limit, len(candidates))


def _failure(over: list[tuple[Arch, float]], limit: float, candidates: int) -> ConfigError:
    fastest = min(ms for _, ms in over)
    if len(over) == 1:
        what = f"the chosen arch measured {fastest:.4g} ms in onnxruntime (its prediction kept the limit)"
    else:
        what = (f"the {len(over)} best candidates all measured over it in onnxruntime (the fastest "
                f"{fastest:.4g} ms; their predictions kept the limit)")
    rest = "no other candidate was left to try" if len(over) == candidates else f"{candidates - len(over)} more were not timed"
    return ConfigError(f"--max-latency-ms {limit:g}: {what} and {rest}; raise the limit")
