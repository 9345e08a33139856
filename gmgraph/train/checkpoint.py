"""Checkpoints: tensors and JSON-able data only, written atomically, loaded without running code.

>>> import tempfile, pathlib, torch
>>> path = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
>>> save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, path)
>>> load_checkpoint(path)["epoch"]
3
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from gmgraph.errors import CheckpointError

FORMAT = "gmgraph-checkpoint/1"


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(tmp_path)`` then move the file into place: no half-written ``path`` ever.

    Raises:
        CheckpointError: when the folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise CheckpointError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with a clear error for a missing or corrupt file.

    Raises:
        CheckpointError: the file is missing, truncated, or holds more than tensors and plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint: {exc}") from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: loading never runs code.

    Raises:
        CheckpointError: when the file is missing, truncated, not a gmgraph
            checkpoint, or holds anything but tensors and plain data.
    """
    path = Path(path)
    state = load_tensors(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gmgraph checkpoint (expected format {FORMAT!r})")
    return state
