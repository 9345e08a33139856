"""Imports only point down the layers of docs/design.md, and the import graph has no cycle.

schema -> tensors -> passes -> analyses -> training -> runs -> CLI (lowest first).

The graph is read with ``ast`` from three kinds of edge, all of them real dependencies:

* every ``import gmgraph...`` / ``from gmgraph... import`` (function-level imports included: a lazy
  import is still a dependency); ``from gmgraph.pkg import name`` is an edge to ``pkg.name`` when that
  is a module, else to ``pkg``;
* a look-up in an extension table of :mod:`gmgraph.registry` (``SAMPLERS[name]``, ``METRICS.get(name)``):
  the table imports its built-in entries' modules, named in ``"module:attribute"`` strings, on first
  look-up, so the look-up is an edge to each of them;
* any other string in the package that names a gmgraph module (``"gmgraph.x.y"`` or
  ``"gmgraph.x.y:attr"``): a reference that something will import.

Each module is placed in its layer by the table below (``LAYERS``; docs/design.md and the README show it).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gmgraph"

LAYERS = {  # module prefix (dotted, under gmgraph) -> layer; the longest prefix wins
    "errors": 0, "registry": 0, "settings": 0, "config": 0,
    "": 1,  # gmgraph/__init__.py and the tensor-level files: choice, graph, arch, device, data, samplers, ...
    "kernels": 1, "data": 1, "onnx_export": 1,
    "passes": 2,
    "scores": 3, "search": 3, "spaces": 3, "nasbench": 3, "viz": 3, "latency": 3,
    "train": 4,
    "run_folder": 5, "search_job": 5, "report": 5, "report_html": 5, "rank_job": 5, "run_log": 5,
    "cli": 6, "commands": 6, "__main__": 6,
}
NAMES = ["schema", "tensors", "passes", "analyses", "training", "runs", "CLI"]

REFERENCE = re.compile(r"^gmgraph((?:\.\w+)+)(?::|$)")


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


def package_sources() -> dict[str, str]:
    return {module_of(path): path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(package: str, name: str, modules: set[str]) -> str:
    """``from gmgraph.<package> import <name>``: the submodule when there is one, else the package."""
    candidate = f"{package}.{name}" if package else name
    return candidate if candidate in modules else package


def tables(registry_source: str) -> dict[str, set[str]]:
    """``{table name: modules its built-in entries name}`` for every ``NAME = Table(...)`` of the registry."""
    out = {}
    for node in ast.parse(registry_source).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "Table"):
            strings = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            targets = {m.group(1)[1:] for s in strings if (m := REFERENCE.match(s))}
            out.update({t.id: targets for t in node.targets if isinstance(t, ast.Name)})
    return out


def edges(here: str, source: str, modules: set[str], table_targets: dict[str, set[str]]) -> list[tuple[int, str, str]]:
    """``(line, gmgraph module, kind)`` for every dependency of ``here`` (see the module docstring)."""
    found = []
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gmgraph":  # from gmgraph import data, spaces
                found += [(node.lineno, _resolve("", a.name, modules), "import") for a in node.names]
            elif node.module.startswith("gmgraph."):
                package = node.module[len("gmgraph."):]
                found += [(node.lineno, _resolve(package, a.name, modules), "import") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name[len("gmgraph."):], "import") for a in node.names
                      if a.name.startswith("gmgraph.")]
        elif isinstance(node, ast.Subscript | ast.Call):
            table = _looked_up_table(node)
            found += [(node.lineno, t, f"{table} look-up") for t in sorted(table_targets.get(table, ()))]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and here != "registry":
            match = REFERENCE.match(node.value)
            if match:
                found.append((node.lineno, match.group(1)[1:], "string"))
    return list(dict.fromkeys((line, target, kind) for line, target, kind in found if target != here))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (annotations only: never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def _looked_up_table(node: ast.AST) -> str | None:
    """``X`` of ``X[...]`` or ``X.get(...)`` (``X`` a name or ``registry.X``), else None."""
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Attribute) and node.func.attr == "get"):
            return None
        node = node.func
    target = node.value
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else None


def graph(sources: dict[str, str]) -> dict[str, list[tuple[int, str, str]]]:
    modules = set(sources)
    table_targets = tables(sources.get("registry", ""))
    return {here: edges(here, source, modules, table_targets) for here, source in sources.items()}


def upward_edges(sources: dict[str, str]) -> list[str]:
    """One line per dependency on a higher layer, for ``{module: source}``."""
    out = []
    for here, found in graph(sources).items():
        for line, target, kind in found:
            if layer(target) > layer(here):
                out.append(f"gmgraph.{here}:{line} ({NAMES[layer(here)]}) {_verb(kind)} "
                           f"gmgraph.{target} ({NAMES[layer(target)]})")
    return out


def _verb(kind: str) -> str:
    return {"import": "imports", "string": "names"}.get(kind, f"loads, by a {kind},")


def cycles(sources: dict[str, str], node=lambda module: module) -> list[list[str]]:
    """The cycles of the dependency graph, its modules grouped by ``node`` (one cycle per strongly
    connected group of more than one node)."""
    adjacent: dict[str, set[str]] = {}
    for here, found in graph(sources).items():
        for _, target, _ in found:
            a, b = node(here), node(target)
            if a != b:
                adjacent.setdefault(a, set()).add(b)
            adjacent.setdefault(b, set())
    return [sorted(group) for group in _strongly_connected(adjacent) if len(group) > 1]


def folder(module: str) -> str:
    """The folder of ``gmgraph.<module>`` (``scores``), or the module itself for a file at the top."""
    first = module.split(".")[0]
    return first if (PACKAGE / first).is_dir() else module


def _strongly_connected(adjacent: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(adjacent):
        if root in index:
            continue
        work = [(root, iter(sorted(adjacent[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(adjacent[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                out.append(group)
    return out


# ------------------------------------------------------------------ the package


def test_no_dependency_points_up_a_layer():
    sources = package_sources()
    assert len(sources) > 50
    assert upward_edges(sources) == []


def test_no_cycle_between_files():
    assert cycles(package_sources()) == []


def test_no_cycle_between_folders():
    assert cycles(package_sources(), node=folder) == []


def test_every_registry_reference_names_a_module_that_exists():
    sources = package_sources()
    targets = tables(sources["registry"])
    assert {"SAMPLERS", "SPLITTERS", "METRICS", "STRATEGIES", "DATASETS", "SPACES"} <= set(targets)
    assert all(t in sources for names in targets.values() for t in names), targets


@pytest.mark.parametrize("module, expected", [
    ("config", "schema"), ("registry", "schema"), ("device", "tensors"), ("samplers", "tensors"),
    ("proxyless", "tensors"), ("snas", "tensors"), ("train.unrolled", "training"), ("files", "tensors"), ("module_copy", "tensors"), ("kernels.reference", "tensors"), ("data.builders", "tensors"), ("onnx_export", "tensors"),
    ("passes.derive", "passes"), ("train.data_parallel", "training"),
    ("scores.splitters", "analyses"), ("train.fewshot", "training"), ("run_folder", "runs"), ("search_job", "runs"),
    ("rank_job", "runs"), ("commands.search", "CLI"), ("spaces.ofa", "analyses"),
])
def test_modules_sit_in_their_layers(module, expected):
    assert NAMES[layer(module)] == expected


def test_the_layer_table_is_the_design_documents():
    design = (PACKAGE.parent / "docs" / "design.md").read_text()
    readme = (PACKAGE.parent / "README.md").read_text()
    for name in NAMES:
        assert f"| {name} |" in design, name
        assert f"| {name} |" in readme, name


# ------------------------------------------------------------------ planted probes: the check sees each kind

REGISTRY = 'SPLITTERS = Table("method", {"gm": "gmgraph.scores.splitters:split_by_gradient_matching"})\n'


def test_a_planted_module_level_import_is_seen():
    sources = {"passes.probe": "from gmgraph import search_job\nimport gmgraph.choice\n", "search_job": "",
               "choice": "",
               "passes.typed": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gmgraph import run_folder\n"}
    assert upward_edges(sources) == ["gmgraph.passes.probe:1 (passes) imports gmgraph.search_job (runs)"]


def test_a_planted_function_level_import_is_seen():
    sources = {"scores.probe": "import torch\ndef f():\n    from gmgraph.train.loop import SupernetTrainer\n",
               "train.probe": "from gmgraph.scores import splitters\n", "train.loop": "", "scores.splitters": ""}
    assert upward_edges(sources) == ["gmgraph.scores.probe:3 (analyses) imports gmgraph.train.loop (training)"]


def test_a_planted_registry_look_up_is_seen():
    sources = {"registry": REGISTRY, "scores.splitters": "",
               "config": "from gmgraph.registry import SPLITTERS\ndef f(m):\n    return SPLITTERS[m]\n",
               "samplers": "from gmgraph import registry\ndef f(m):\n    return registry.SPLITTERS.get(m)\n"}
    assert upward_edges(sources) == [
        "gmgraph.config:3 (schema) loads, by a SPLITTERS look-up, gmgraph.scores.splitters (analyses)",
        "gmgraph.samplers:3 (tensors) loads, by a SPLITTERS look-up, gmgraph.scores.splitters (analyses)",
    ]


def test_a_planted_module_name_in_a_string_is_seen():
    sources = {"spaces.probe": 'import importlib\nLOOP = importlib.import_module("gmgraph.train.loop")\n',
               "train.loop": "", "registry": REGISTRY}  # the registry's own strings are its look-ups' edges
    assert upward_edges(sources) == ["gmgraph.spaces.probe:2 (analyses) names gmgraph.train.loop (training)"]


def test_a_planted_cycle_is_seen_between_files_and_between_folders():
    sources = {"search.a": "from gmgraph.search import b\n", "search.b": "def f():\n    from gmgraph.search import a\n",
               "scores.c": "from gmgraph.search import a\n"}
    assert cycles(sources) == [["search.a", "search.b"]]
    sources["search.a"] += "from gmgraph.scores import c\n"
    assert cycles(sources, node=lambda m: m.split(".")[0]) == [["scores", "search"]]


def design_rows() -> dict[str, set[str]]:
    """docs/design.md's layer table: layer name -> the files and folders its row names (`x.py`, `pkg/`)."""
    rows = {}
    for line in (PACKAGE.parent / "docs" / "design.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[1] in NAMES:
            rows[cells[1]] = set(re.findall(r"`([^`]+)`", cells[2]))
    return rows


def test_every_file_of_the_package_is_in_its_layers_row_of_the_design_table():
    rows = design_rows()
    entries = {p.name: p.stem for p in PACKAGE.glob("*.py")} | {
        f"{p.name}/": p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    misplaced = {entry: NAMES[layer("" if module == "__init__" else module)] for entry, module in entries.items()
                 if entry not in rows.get(NAMES[layer("" if module == "__init__" else module)], set())}
    assert misplaced == {}, f"add these to docs/design.md's layer table, in the row named: {misplaced}"
