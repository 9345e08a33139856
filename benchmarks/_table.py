"""Print a benchmark table and save it under benchmarks/results/ (atomically)."""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def markdown(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, title: str, headers: list[str], rows: list[list], notes: str = "") -> Path:
    """Print the table and write ``benchmarks/results/<name>.md``."""
    text = f"# {title}\n\nMachine: {machine()}\n\n{markdown(headers, rows)}\n"
    if notes:
        text += f"\n{notes}\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path = RESULTS / f"{name}.md"
    os.replace(tmp, path)
    return path
