"""Progress display: a live line on a terminal, plain log lines otherwise.

>>> import io
>>> out = io.StringIO()
>>> bar = Progress("epoch 1/2", total=3, stream=out)
>>> for _ in range(3):
...     bar.update(loss=0.5)
>>> bar.close(acc=0.9)
>>> out.getvalue().split("  ")[:4]
['epoch 1/2', '3/3', 'loss=0.5000', 'acc=0.9000']

Numbers have fixed decimals (4), so lines of one kind line up from epoch to epoch.

A long job (a whole search) plans its training steps in a :class:`JobEstimate`;
while it is active (:func:`estimating`), every line ends with the time the whole
job has left, from the rate of the steps done so far.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO


def _fmt(value: object) -> str:
    """Floats with four decimals (``0.9000``, ``12.3457``); very large or small ones in e-notation."""
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5 or value != value:  # NaN too
            return f"{value:.4f}"
        return f"{value:.3e}"
    return str(value)


class Progress:
    """One unit of long work (an epoch, a scoring pass) with a step counter.

    On a terminal the line is redrawn in place at most 10 times a second;
    elsewhere (a log file, CI) only the closing line is written, so logs stay short.
    ``quiet=True`` writes nothing at all.
    """

    def __init__(self, title: str, total: int | None = None, *, stream: TextIO | None = None, quiet: bool = False,
                 job_steps: float = 0.0):
        self.title, self.total = title, total
        self.job_steps = job_steps  # how many of the active JobEstimate's planned steps one of its steps is
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.live = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.start = self.last_draw = time.perf_counter()
        self.last_due = float("-inf")  # the first due() is True: the line gets numbers at once
        self.fields: dict[str, object] = {}

    def update(self, n: int = 1, **fields: object) -> None:
        """Advance by ``n`` steps and show ``fields`` (e.g. loss=0.3)."""
        self.count += n
        if self.job_steps and _JOB is not None:
            _JOB.step(n * self.job_steps)
        self.fields.update(fields)
        now = time.perf_counter()
        if self.live and now - self.last_draw > 0.1:
            self.last_draw = now
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.stream.flush()

    def due(self, every: float = 1.0) -> bool:
        """Whether the live line is due for new numbers (``every`` seconds since the last draw).

        Callers whose numbers cost something to read (values on a GPU) read them only then;
        off a terminal it is never due, and only :meth:`close` writes.
        """
        now = time.perf_counter()
        if not self.live or now - self.last_due < every:
            return False
        self.last_due = now
        return True

    def close(self, **fields: object) -> None:
        """Write the final line with ``fields`` added."""
        self.fields.update(fields)
        if self.quiet:
            return
        self.stream.write(("\r" if self.live else "") + self._line() + ("\x1b[K\n" if self.live else "\n"))
        self.stream.flush()

    @property
    def rate(self) -> float:
        """Steps per second so far."""
        return self.count / max(time.perf_counter() - self.start, 1e-9)

    def _line(self) -> str:
        done = f"{self.count:>{len(str(self.total))}}/{self.total}" if self.total else str(self.count)
        parts = [self.title, done] + [f"{k}={_fmt(v)}" for k, v in self.fields.items()]
        parts.append(f"{self.rate:5.1f} it/s")
        left = _JOB.left() if _JOB is not None else None
        if left is not None:
            parts.append(f"run ETA {duration(left)}")
        return "  ".join(parts)


class JobEstimate:
    """The steps a job still plans, by part, and the time they should take at the rate of the steps done so far.

    Parts are consumed in the order they were first planned (a search: the supernets' steps, then the final
    training's); a part is re-planned when its shape changes (a split multiplies the sub-supernets).

    >>> now = [0.0]
    >>> job = JobEstimate(clock=lambda: now[0])
    >>> job.plan("supernets", 100); job.plan("final", 20)
    >>> job.left() is None                      # no step yet: no rate
    True
    >>> job.step(); now[0] = 2.0; job.step(10)  # 10 steps in 2 s after the first: 0.2 s a step
    >>> job.remaining(), job.left()
    (109.0, 21.8)
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.parts: dict[str, float] = {}
        self.done = 0
        self.started: float | None = None  # the time of the first step: setup before it is not a step's cost

    def plan(self, part: str, steps: float) -> None:
        """``part`` has ``steps`` steps left from now on."""
        self.parts[part] = max(0.0, float(steps))

    def step(self, n: float = 1) -> None:
        """``n`` planned steps are done (taken from the first part with steps left)."""
        if self.started is None:
            self.started = self.clock()  # the rate counts from the end of the first step
            self.done -= 1
        self.done += n
        for part, left in self.parts.items():
            take = min(left, n)
            self.parts[part], n = left - take, n - take
            if n == 0:
                break

    def remaining(self) -> float:
        """Steps still planned."""
        return sum(self.parts.values())

    def left(self) -> float | None:
        """Estimated seconds to the end of the planned steps (None before the rate is known)."""
        if self.started is None or self.done <= 0:
            return None
        return round(self.remaining() * (self.clock() - self.started) / self.done, 6)


_JOB: JobEstimate | None = None


@contextlib.contextmanager
def estimating(job: JobEstimate) -> Iterator[JobEstimate]:
    """Make ``job`` the active estimate: progress lines end with its ETA while the block runs."""
    global _JOB
    outer, _JOB = _JOB, job
    try:
        yield job
    finally:
        _JOB = outer


def active_job() -> JobEstimate | None:
    """The estimate :func:`estimating` made active (None outside a job)."""
    return _JOB


def epoch_steps(batches: int | None, cap: int | None) -> int | None:
    """Steps of a training epoch over ``batches`` batches (None: unknown) with ``--steps-per-epoch`` ``cap``
    (None: no cap).

    >>> epoch_steps(29, None), epoch_steps(29, 5), epoch_steps(None, 5), epoch_steps(None, None)
    (29, 5, 5, None)
    """
    if batches is None or cap is None:
        return cap if batches is None else batches
    return min(batches, cap)


def duration(seconds: float) -> str:
    """A short human duration: ``45s``, ``3m05s``, ``1h02m``.

    >>> duration(44.6), duration(185), duration(3725)
    ('45s', '3m05s', '1h02m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def log(message: str, *, stream: TextIO | None = None, quiet: bool = False) -> None:
    """One plain line of progress news (e.g. 'splitting 1<-0 into ...')."""
    if not quiet:
        print(message, file=stream if stream is not None else sys.stderr, flush=True)
