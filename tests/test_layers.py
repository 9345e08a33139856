"""Imports only point down the layers of DESIGN.md: core -> passes -> analyses -> training -> runs -> CLI.

Every ``import gmgraph...`` / ``from gmgraph... import`` in the package is read
with ``ast`` (function-level imports included: a lazy import is still a
dependency), and each module is placed in its layer by the table below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gmgraph"

LAYERS = {  # module prefix (dotted, under gmgraph) -> layer; the longest prefix wins
    "": 0,  # gmgraph/__init__.py and the core files: choice, graph, arch, errors, files, progress, data, ...
    "kernels": 0,
    "passes": 1,
    "scores": 2, "search": 2, "spaces": 2, "nasbench": 2, "viz": 2, "latency": 2,
    "train": 3,
    "run": 4, "pipeline": 4, "report": 4, "report_html": 4,
    "cli": 5, "commands": 5, "__main__": 5,
}
NAMES = ["core", "passes", "analyses", "training", "runs", "CLI"]


def layer(module: str) -> int:
    """The layer of ``gmgraph.<module>`` (``module`` dotted, without the ``gmgraph.`` prefix)."""
    parts = module.split(".") if module else []
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return LAYERS[""]


def module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports(source: str) -> list[tuple[int, str]]:
    """(line, imported gmgraph module) for every gmgraph import in ``source``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gmgraph":  # from gmgraph import data, spaces
                found += [(node.lineno, alias.name) for alias in node.names]
            elif node.module.startswith("gmgraph."):
                found.append((node.lineno, node.module[len("gmgraph."):]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len("gmgraph."):]) for a in node.names if a.name.startswith("gmgraph.")]
    return found


def upward_imports(sources: dict[str, str]) -> list[str]:
    """One line per import of a higher layer, for ``{module: source}``."""
    out = []
    for here, source in sources.items():
        for line, target in imports(source):
            if layer(target) > layer(here):
                out.append(f"gmgraph.{here}:{line} ({NAMES[layer(here)]}) imports "
                           f"gmgraph.{target} ({NAMES[layer(target)]})")
    return out


def package_sources() -> dict[str, str]:
    return {module_of(path): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_points_up_a_layer():
    sources = package_sources()
    assert len(sources) > 50
    assert upward_imports(sources) == []


@pytest.mark.parametrize("module, expected", [
    ("samplers", "core"), ("files", "core"), ("kernels.reference", "core"), ("passes.derive", "passes"),
    ("scores.splitters", "analyses"), ("train.fewshot", "training"), ("run", "runs"), ("commands.search", "CLI"),
])
def test_modules_sit_in_their_layers(module, expected):
    assert NAMES[layer(module)] == expected


def test_the_check_sees_upward_imports_also_inside_functions():
    sources = {"scores.probe": "import torch\ndef f():\n    from gmgraph.train.loop import SupernetTrainer\n",
               "passes.probe": "from gmgraph import pipeline\nimport gmgraph.choice\n",
               "train.probe": "from gmgraph.scores import splitters\n"}
    assert upward_imports(sources) == [
        "gmgraph.scores.probe:3 (analyses) imports gmgraph.train.loop (training)",
        "gmgraph.passes.probe:1 (passes) imports gmgraph.pipeline (runs)",
    ]
