"""Files gmgraph writes and reads: atomic writes and tensor loads that never run code.

Every file the library writes goes to a temporary name in the same folder and
is moved into place with ``os.replace``, so a crash never leaves a half-written
file; tensor files load with ``torch.load(weights_only=True)``::

    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.pt"
    >>> _ = atomic_write(path, lambda tmp: torch.save({"w": torch.ones(2)}, tmp))
    >>> load_tensors(path)["w"].tolist()
    [1.0, 1.0]
    >>> write_text(path.with_suffix(".txt"), "hello\\n").read_text()
    'hello\\n'

Errors are :class:`~gmgraph.errors.FileError`; callers that know what the file
is (a checkpoint, a run's report) re-raise them with their own error type.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gmgraph.errors import FileError


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the file into place: no half-written ``path`` ever.

    Raises:
        FileError: when the folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write)


def save_tensors(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (tensors and plain data only, so it loads safely)."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with one clear error for a bad file.

    Raises:
        FileError: the file is missing, truncated, or holds more than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(f"no file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on a bad file (UnpicklingError, KeyError, ...)
        raise FileError(f"{path} is corrupt or not a torch file ({type(exc).__name__}: {_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    # torch's messages run to pages of advice; the first line says what failed.
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no detail"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
