"""Where latency tables are kept on disk, and the key that says which table fits which target.

A table is valid for one supernet at one input shape and batch, on one
runtime (and its version), machine and thread count. All of these are the
*key*; its hash names the file, and the file holds the key itself, so a table
is only ever used for the target it was measured on::

    >>> fields = {"runtime": "onnxruntime", "threads": 1}
    >>> key_hash(fields) == key_hash({"threads": 1, "runtime": "onnxruntime"})
    True
    >>> key_hash(fields) == key_hash({**fields, "threads": 2})
    False

Files live in ``cache_dir`` when given, else ``$GMGRAPH_CACHE/latency``, else
``~/.cache/gmgraph/latency``. A file that cannot be read back as the table of
its key is reported as None (and rebuilt by the caller), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path

from torch import fx

from gmgraph.files import write_text

ENV = "GMGRAPH_CACHE"
"""Environment variable naming gmgraph's cache folder (latency tables go to its ``latency`` subfolder)."""

FORMAT = 3  # 2: views are timed as the plain modules derive makes of them; nested Choices have entries;
# 3: InputChoices have entries, and the plain nodes they may leave unread (``nodes``)
"""Version of the table file layout; a file of another version is rebuilt."""


def cache_dir(path: str | Path | None = None) -> Path:
    """The folder of latency tables: ``path``, else ``$GMGRAPH_CACHE/latency``, else ``~/.cache/gmgraph/latency``.

    >>> cache_dir("/tmp/tables")
    PosixPath('/tmp/tables')
    """
    if path is not None:
        return Path(path).expanduser()
    root = os.environ.get(ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "gmgraph") / "latency"


def key_hash(fields: Mapping[str, object]) -> str:
    """16 hex digits of the SHA-256 of the key fields (as sorted JSON)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def table_path(folder: Path, fields: Mapping[str, object]) -> Path:
    """The file of the table with key ``fields`` in ``folder``."""
    return folder / f"latency-{key_hash(fields)}.json"


def machine() -> str:
    """The CPU model as the OS names it (``/proc/cpuinfo`` on Linux), else ``platform.processor()``.

    >>> isinstance(machine(), str) and machine() != ""
    True
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def fingerprint(gm: fx.GraphModule, shapes: Mapping[str, object]) -> str:
    """A hash of what makes a supernet's latency: its code, its modules (with their sizes) and the
    shape of every node's output at the table's input (which also tells strides apart)."""
    text = json.dumps([gm.code, repr(gm), sorted((k, str(v)) for k, v in shapes.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_fields(*, supernet: str, input_shape, batch: int, runtime: str, version: str, threads: int,
               method: Mapping[str, object]) -> dict:
    """Every field a table depends on; ``method`` holds how it was built (calibration archs, seed)."""
    return {
        "format": FORMAT,
        "supernet": supernet,
        "input_shape": list(input_shape),
        "batch": batch,
        "runtime": runtime,
        "runtime_version": version,
        "machine": machine(),
        "platform": platform.platform(),
        "threads": threads,
        "method": dict(method),
    }


def read(path: Path, fields: Mapping[str, object]) -> tuple[dict | None, str | None]:
    """(the stored table data, None), or (None, why it cannot be used); (None, None) when there is no file."""
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(data, dict) or data.get("key") != json.loads(json.dumps(dict(fields))):
        return None, "its key does not match"
    return data, None


def write(path: Path, data: Mapping[str, object]) -> Path:
    """Write the table data as JSON, atomically."""
    return write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
