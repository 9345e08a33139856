"""Hard limits a searched architecture must meet (max params, FLOPs, latency), and the screen searches use.

A :class:`Constraint` names a measure of an architecture and its maximum;
:class:`Constraints` groups them. A search asks a fresh :class:`Screen` about
every candidate *before* scoring it: a candidate that breaks a limit is
rejected (and counted) without costing a fitness evaluation, and the search
draws another one. A limit nothing meets is an error, never an empty result::

    >>> space = {"a": ("x", "y", "z")}
    >>> size = lambda arch: {"x": 1.0, "y": 2.0, "z": 3.0}[arch["a"]]
    >>> screen = Screen(Constraints([Constraint("size", size, maximum=2.0)]))
    >>> [screen.allows({"a": op}) for op in space["a"]], screen.rejected
    ([True, True, False], 1)
    >>> Screen(Constraints([Constraint("size", size, maximum=0.5)], max_draws=10)).draw(lambda: {"a": "x"})
    Traceback (most recent call last):
    ...
    gmgraph.errors.ConfigError: no architecture met size <= 0.5 in 10 draws: the constraint is probably \
impossible (the smallest size seen was 1); raise the limit

``Constraints`` holds no state, so one object can serve many searches; the
counting and the cache of measured values live in the per-search ``Screen``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from gmgraph.arch import Arch, key
from gmgraph.errors import ConfigError, GmGraphError

Measure = Callable[[Arch], float]
"""Measures one architecture (params in millions, FLOPs in millions, latency in ms, ...)."""


@dataclass(frozen=True)
class Constraint:
    """``measure(arch) <= maximum``.

    Attributes:
        name: what is measured, used in messages and reports (``"params"``, ``"latency_ms"``).
        measure: arch -> value, in the unit of ``maximum``.
        maximum: the largest value allowed; a finite number > 0.

    Raises:
        ConfigError: ``maximum`` is not a finite positive number, or ``name`` is empty.

    Example:
        >>> Constraint("flops", lambda arch: 10.0, maximum=-1)
        Traceback (most recent call last):
        ...
        gmgraph.errors.ConfigError: the limit on flops must be a positive number, got -1; leave it out for no limit
    """

    name: str
    measure: Measure
    maximum: float

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a constraint needs a name (e.g. 'params'), got {self.name!r}")
        m = self.maximum
        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m) or m <= 0:
            raise ConfigError(f"the limit on {self.name} must be a positive number, got {m!r}; "
                              "leave it out for no limit")

    def describe(self) -> str:
        """``"params <= 0.5"``."""
        return f"{self.name} <= {self.maximum:g}"


@dataclass(frozen=True)
class Constraints:
    """All the limits of one search (none: everything is allowed).

    Attributes:
        items: the constraints; an architecture must meet every one.
        max_draws: how many candidates in a row a search may reject before it
            gives up (see :meth:`Screen.draw`).

    Example:
        >>> c = Constraints([Constraint("params", lambda arch: 1.0, maximum=2.0)])
        >>> bool(c), bool(Constraints()), c.describe()
        (True, False, 'params <= 2')
    """

    items: tuple[Constraint, ...] = ()
    max_draws: int = 10_000

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))
        for item in self.items:
            if not isinstance(item, Constraint):
                raise ConfigError(f"Constraints holds Constraint objects, got {type(item).__name__}")
        names = [item.name for item in self.items]
        if len(set(names)) != len(names):
            raise ConfigError(f"each quantity can be limited once, got {names}")
        m = self.max_draws
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ConfigError(f"max_draws must be a positive integer, got {m!r}")

    def __bool__(self) -> bool:
        return bool(self.items)

    def describe(self) -> str:
        """The limits joined with ``" and "``, e.g. ``"params <= 0.5 and flops <= 100"``."""
        return " and ".join(item.describe() for item in self.items)


@dataclass
class Screen:
    """One search's check of candidates against ``constraints``: cached, counted.

    Attributes:
        constraints: the limits (``None`` or empty: everything passes, nothing is measured).
        rejected: candidates turned down so far (a candidate drawn twice and
            rejected twice counts twice: it is draws that were wasted).
        allowed: distinct architectures that met every limit.
        smallest: per constraint name, the smallest value measured so far.
    """

    constraints: Constraints | None = None
    rejected: int = 0
    allowed: int = 0
    smallest: dict[str, float] = field(default_factory=dict)
    _values: dict[str, tuple[float, ...]] = field(default_factory=dict, repr=False)
    _passed: set[str] = field(default_factory=set, repr=False)

    @property
    def max_draws(self) -> int:
        """Rejections in a row a search accepts before giving up (1 without constraints: nothing is rejected)."""
        return self.constraints.max_draws if self.constraints else 1

    @property
    def refused(self) -> int:
        """Distinct architectures known to break a limit."""
        return len(self._values) - len(self._passed)

    def allows(self, arch: Arch) -> bool:
        """Whether ``arch`` meets every limit; every constraint is measured once per architecture."""
        if not self.constraints:
            return True
        k = key(arch)
        if k not in self._values:
            self._values[k] = tuple(self._measure(item, arch) for item in self.constraints.items)
        values = self._values[k]
        if all(v <= item.maximum for v, item in zip(values, self.constraints.items)):
            if k not in self._passed:
                self._passed.add(k)
                self.allowed += 1
            return True
        self.rejected += 1
        return False

    def known_to_break(self, arch: Arch) -> bool:
        """Whether ``arch`` was measured before and broke a limit (asking does not count a rejection).

        Example:
            >>> screen = Screen(Constraints([Constraint("n", lambda arch: len(arch["a"]), maximum=1)]))
            >>> screen.known_to_break({"a": "xy"}), screen.allows({"a": "xy"}), screen.known_to_break({"a": "xy"})
            (False, False, True)
        """
        k = key(arch)
        return k in self._values and k not in self._passed

    def first(self, make: Callable[[], Arch], tries: int) -> Arch | None:
        """The first of up to ``tries`` calls of ``make()`` that is allowed, or ``None``.

        Example:
            >>> Screen().first(lambda: {"a": "x"}, tries=1)
            {'a': 'x'}
        """
        for _ in range(tries):
            arch = make()
            if self.allows(arch):
                return arch
        return None

    def draw(self, make: Callable[[], Arch]) -> Arch:
        """The first allowed result of ``make()``, tried at most ``max_draws`` times.

        Raises:
            ConfigError: every try was rejected (the message names the smallest values seen).

        Example:
            >>> draws = iter([{"a": "xyz"}, {"a": "xy"}, {"a": "x"}])
            >>> screen = Screen(Constraints([Constraint("n", lambda arch: len(arch["a"]), maximum=2)]))
            >>> screen.draw(lambda: next(draws)), screen.rejected
            ({'a': 'xy'}, 1)
        """
        arch = self.first(make, self.max_draws)
        if arch is None:
            raise self._failure(self.max_draws)
        return arch

    def feasible(self, candidates: Iterable[Arch]) -> Iterator[Arch]:
        """The allowed ones among ``candidates``, in order.

        Stops after ``max_draws`` rejections in a row. Raises if that, or the
        end of ``candidates``, comes before any candidate was allowed.

        Raises:
            ConfigError: no candidate met the limits.

        Example:
            >>> screen = Screen(Constraints([Constraint("n", lambda arch: len(arch["a"]), maximum=2)]))
            >>> list(screen.feasible([{"a": "x"}, {"a": "xyz"}, {"a": "xy"}]))
            [{'a': 'x'}, {'a': 'xy'}]
        """
        in_a_row = 0
        for arch in candidates:
            if self.allows(arch):
                in_a_row = 0
                yield arch
                continue
            in_a_row += 1
            if in_a_row >= self.max_draws:
                if self.allowed == 0:
                    raise self._failure(in_a_row)
                return
        if self.constraints and self.allowed == 0:
            raise self._failure(in_a_row, exhausted=True)

    def _failure(self, draws: int, *, exhausted: bool = False) -> ConfigError:
        """The error for ``draws`` rejections in a row (``exhausted``: the whole space was tried)."""
        limits = self.constraints.describe() if self.constraints else "the constraints"
        seen = ", ".join(f"the smallest {name} seen was {value:g}" for name, value in self.smallest.items())
        if exhausted:
            return ConfigError(f"no architecture of the space meets {limits} ({seen}); raise the limit")
        if self.allowed == 0:
            return ConfigError(f"no architecture met {limits} in {draws} draws: the constraint is probably "
                               f"impossible ({seen}); raise the limit")
        return ConfigError(f"only {self.allowed} architectures met {limits}, then {draws} draws in a row broke "
                           f"it ({seen}); the limit is too tight for this search: raise it")

    def as_dict(self) -> dict:
        """``{"rejected", "limits": {name: maximum}, "smallest": {name: value}}`` for reports.

        Example:
            >>> screen = Screen(Constraints([Constraint("n", lambda arch: len(arch["a"]), maximum=2)]))
            >>> screen.allows({"a": "xyz"})
            False
            >>> screen.as_dict()
            {'rejected': 1, 'limits': {'n': 2}, 'smallest': {'n': 3.0}}
        """
        items = self.constraints.items if self.constraints else ()
        return {"rejected": self.rejected, "limits": {item.name: item.maximum for item in items},
                "smallest": dict(self.smallest)}

    def _measure(self, item: Constraint, arch: Arch) -> float:
        value = float(item.measure(dict(arch)))
        if math.isnan(value):
            raise GmGraphError(f"the {item.name} measure returned NaN for architecture {key(arch)}")
        self.smallest[item.name] = min(value, self.smallest.get(item.name, math.inf))
        return value


def from_limits(limits: Mapping[str, float | None], measures: Mapping[str, Measure], *,
                flags: Mapping[str, str] | None = None) -> Constraints:
    """Constraints for each limit that is set (``None`` = no limit), measured by ``measures[name]``.

    Args:
        limits: name -> maximum or ``None``.
        measures: name -> function arch -> value; needed for each limit that is set.
        flags: name -> the flag that set it, for the message when a measure is missing.

    Raises:
        ConfigError: a limit is set but no measure for it is given, or a limit is not positive.

    Example:
        >>> c = from_limits({"params": 0.5, "flops": None}, {"params": lambda arch: 0.1})
        >>> c.describe()
        'params <= 0.5'
    """
    items = []
    for name, maximum in limits.items():
        if maximum is None:
            continue
        if name not in measures:
            flag = (flags or {}).get(name, name)
            raise ConfigError(f"{flag} needs a {name} measure for the searched architectures, and none is "
                              f"available here (available: {', '.join(measures) or 'none'})")
        items.append(Constraint(name, measures[name], maximum))
    return Constraints(tuple(items))
