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
"""

from __future__ import annotations

import sys
import time
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

    def __init__(self, title: str, total: int | None = None, *, stream: TextIO | None = None, quiet: bool = False):
        self.title, self.total = title, total
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
        return "  ".join(parts)


def log(message: str, *, stream: TextIO | None = None, quiet: bool = False) -> None:
    """One plain line of progress news (e.g. 'splitting 1<-0 into ...')."""
    if not quiet:
        print(message, file=stream if stream is not None else sys.stderr, flush=True)
