"""The one small error hierarchy of gmgraph.

Every error a user can cause derives from :class:`GmGraphError`, so the CLI can
print it as one line and exit 2 instead of showing a traceback::

    >>> from gmgraph.errors import ArchError, GmGraphError
    >>> issubclass(ArchError, GmGraphError)
    True

Messages say what was wrong and what is accepted.
"""

from __future__ import annotations


class GmGraphError(Exception):
    """Base of every error gmgraph raises on bad input or a failed check."""


class ArchError(GmGraphError, ValueError):
    """An architecture (mapping label -> op, or an encoded string) is malformed or invalid."""


class SpaceError(GmGraphError, ValueError):
    """A search space, label, op set or partition is not what an operation needs."""


class ChoiceError(GmGraphError, RuntimeError):
    """A Choice layer was asked to run an op it does not hold, or was not told how to run."""


class TraceError(GmGraphError, RuntimeError):
    """torch.fx could not trace a model (a module needs to be declared a leaf)."""


class DataError(GmGraphError, ValueError):
    """A dataset is missing, malformed or incompatible with the search space."""


class TrainError(GmGraphError, RuntimeError):
    """Training cannot go on (bad settings, non-finite loss, ...)."""


class FileError(GmGraphError, OSError):
    """A file cannot be written, or read back as what it should hold."""


class CheckpointError(GmGraphError, RuntimeError):
    """A checkpoint is missing, corrupt or does not match the graph it is loaded into."""


class ConfigError(GmGraphError, ValueError):
    """A setting (CLI flag or config-file key) has a value that is not accepted."""


class ExportError(GmGraphError, RuntimeError):
    """A graph could not be exported, or the exported model disagrees with torch."""


class RunError(ConfigError):
    """A run folder is missing, incomplete or damaged (no readable report.json, best.pt, ...)."""


class LatencyError(GmGraphError, RuntimeError):
    """A latency timing stayed unstable (its spread above the threshold) after every attempt."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (at most ``limit`` characters), or its type's name when it has none.

    Errors from torch's exporter, onnxruntime or an allocator run to pages; the first line says what failed,
    so a message that quotes one stays one line.

    >>> first_line(RuntimeError("cannot load\\n  at frame 1\\n  at frame 2")), first_line(KeyError())
    ('cannot load', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
