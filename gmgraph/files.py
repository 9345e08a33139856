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
import pickle
import tempfile
import zipfile
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


def load_tensors(path: str | Path, what: str = "torch file") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with one clear error for a bad file.

    ``what`` names the file in errors (``"checkpoint"``, ``"network file"``)::

        >>> import tempfile, pathlib
        >>> cut = pathlib.Path(tempfile.mkdtemp()) / "cut.pt"
        >>> _ = save_tensors({"w": torch.ones(2)}, cut)
        >>> _ = cut.write_bytes(cut.read_bytes()[:-50])  # cut short, as by a full disk
        >>> load_tensors(cut, "checkpoint")
        Traceback (most recent call last):
        ...
        gmgraph.errors.FileError: checkpoint .../cut.pt is damaged: it is truncated (... bytes; the end of its zip archive is missing)

    Raises:
        FileError: the file is missing, empty, truncated, corrupt, not a torch file, or holds more
            than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails in many ways on a bad file (UnpicklingError, KeyError, OSError ...)
        raise FileError(f"{what} {path} {_why_unreadable(path, exc)}") from exc


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (gmgraph never writes torch's legacy format)


def _why_unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed on ``path``, in a few words.

    Told from the file itself, not from torch's message: those run to pages, change between
    versions, and advise ``weights_only=False``, which would let the file run code.
    """
    if isinstance(exc, PermissionError):
        return f"cannot be read ({exc.strerror})"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if size == 0:
        return "is damaged: it is empty (0 bytes)"
    if head != _ZIP_MAGIC:
        return f"is corrupt or not a torch file ({size} bytes, not in torch's zip format)"
    if not zipfile.is_zipfile(path):
        return f"is damaged: it is truncated ({size} bytes; the end of its zip archive is missing)"
    broken = _broken_part(path)
    if broken is not None:
        return f"is damaged: {broken}"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return ("holds Python objects besides tensors and plain data, which gmgraph does not load "
                "(loading them could run code): it is not a file gmgraph wrote")
    return f"is damaged: its zip archive holds no readable torch data ({type(exc).__name__})"


def _broken_part(path: Path) -> str | None:
    """What in zip archive ``path`` fails its check (a part's CRC or a header), in words; None if all pass."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return f"its zip archive is corrupt ({exc})"
    # torch names the archive's folder after the file it first wrote (a temporary name here): leave it out
    return None if name is None else f"its part {name.split('/', 1)[-1]} fails its checksum (bytes changed after writing)"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
