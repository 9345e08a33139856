"""Checkpoints: tensors and JSON-able data only, written atomically, loaded without running code.

>>> import tempfile, pathlib, torch
>>> path = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
>>> _ = save_checkpoint({"epoch": 3, "model": {"w": torch.ones(2)}}, path)
>>> load_checkpoint(path)["epoch"]
3
>>> differences({"lr": 0.1, "seed": 0}, {"lr": 0.2, "seed": 0})
['lr: checkpoint 0.1, now 0.2']
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gmgraph.errors import CheckpointError, FileError
from gmgraph.files import load_tensors, save_tensors
from gmgraph.settings import plain

FORMAT = "gmgraph-checkpoint/2"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.

    Raises:
        CheckpointError: the folder cannot be written.
    """
    try:
        return save_tensors({"format": FORMAT, **state}, path)
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``: loading never runs code.

    Raises:
        CheckpointError: when the file is missing, damaged (empty, truncated, corrupt), not a
            gmgraph checkpoint (or one of an older format), or holds anything but tensors and
            plain data; one line that names the file and says which.
    """
    path = Path(path)
    try:
        state = load_tensors(path, "checkpoint")
    except FileError as exc:
        raise CheckpointError(str(exc)) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise CheckpointError(f"{path} is not a gmgraph checkpoint of format {FORMAT!r}"
                              + (f" (it is {found!r}: start a new run)" if found else ""))
    return state


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One ``'name: checkpoint A, now B'`` entry per setting that differs (lists and tuples compare equal)."""
    out = []
    for name, now in current.items():
        then = saved.get(name)
        if plain(then) != plain(now):
            out.append(f"{name}: checkpoint {plain(then)!r}, now {plain(now)!r}")
    return out


def check_same_settings(saved: Mapping[str, Any], current: Mapping[str, Any], path: str | Path) -> None:
    """Refuse to resume a checkpoint written with other settings, naming each difference.

    Raises:
        CheckpointError: listing every setting that differs.
    """
    differ = differences(saved, current)
    if differ:
        raise CheckpointError(f"{path} was written with other settings ({'; '.join(differ)}); "
                              "resume with the same settings or start a new run")
