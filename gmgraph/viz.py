"""Drawings of architectures, split trees, training curves and rankings (matplotlib, Agg).

Every function writes one PNG of a fixed size (``size`` inches x ``DPI``; a
split tree with more than three splits grows taller) and returns its path;
files are written atomically::

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> arch = {"1<-0": "nor_conv_3x3", "2<-0": "none", "2<-1": "skip_connect",
    ...         "3<-0": "avg_pool_3x3", "3<-1": "none", "3<-2": "nor_conv_1x1"}
    >>> draw_cell(arch, out / "cell.png").name
    'cell.png'

Cells are drawn from labels of the form ``[cell/]i<-j`` (NB201, DARTS): nodes
and labelled edges, ``none`` edges left out. Any other architecture is drawn
as the chain of its decisions in graph order.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display needed, works on CI
import matplotlib.pyplot as plt  # noqa: E402

from gmgraph.files import atomic_write  # noqa: E402

DPI = 100
_EDGE = re.compile(r"^(?:(?P<cell>[^/]+)/)?(?P<dst>\d+)<-(?P<src>\d+)$")
_COLOURS = plt.get_cmap("tab10")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    plt.close(fig)
    return path


def cells_of(arch: Mapping[str, str]) -> dict[str, list[tuple[int, int, str]]] | None:
    """Group ``[cell/]i<-j`` labels into cells: ``{cell: [(src, dst, op), ...]}``; None if not a cell space."""
    cells: dict[str, list[tuple[int, int, str]]] = {}
    for label, op in arch.items():
        match = _EDGE.match(label)
        if match is None:
            return None
        cells.setdefault(match["cell"] or "cell", []).append((int(match["src"]), int(match["dst"]), op))
    return cells


def draw_cell(arch: Mapping[str, str], path: str | Path, *, title: str = "", size=(8, 4.5)) -> Path:
    """One panel per cell (NB201: one; DARTS: normal and reduce); a chain of decisions otherwise."""
    cells = cells_of(arch)
    if cells is None:
        return draw_chain(arch, path, title=title, size=size)
    fig, axes = plt.subplots(1, len(cells), figsize=size, squeeze=False)
    ops = sorted({op for edges in cells.values() for _, _, op in edges})
    for ax, (name, edges) in zip(axes[0], cells.items()):
        _cell_panel(ax, name if len(cells) > 1 else "", edges, ops)
    fig.suptitle(title or "architecture", fontsize=9)
    return _save(fig, path)


def _cell_panel(ax, name: str, edges: list[tuple[int, int, str]], ops: list[str]) -> None:
    nodes = sorted({n for src, dst, _ in edges for n in (src, dst)})
    x = {n: i for i, n in enumerate(nodes)}
    for src, dst, op in edges:
        if op == "none":
            continue
        bend = 0.35 * (dst - src - 1) + 0.15
        colour = _COLOURS(ops.index(op) % 10)
        ax.annotate("", xy=(x[dst], 0), xytext=(x[src], 0),
                    arrowprops={"arrowstyle": "->", "color": colour, "lw": 2,
                                "connectionstyle": f"arc3,rad={-bend}"})
        ax.text((x[src] + x[dst]) / 2, bend * (x[dst] - x[src]) / 2 + 0.05, op, ha="center", fontsize=7, color=colour)
    for n in nodes:
        ax.add_patch(plt.Circle((x[n], 0), 0.18, color="#dddddd", zorder=3))
        ax.text(x[n], 0, str(n), ha="center", va="center", zorder=4)
    ax.set_xlim(-0.5, len(nodes) - 0.5)
    ax.set_ylim(-0.4, 0.35 * len(nodes) + 0.3)
    ax.set_aspect("equal")
    ax.axis("off")
    if name:
        ax.set_title(name)


def draw_chain(arch: Mapping[str, str], path: str | Path, *, title: str = "", size=(8, 4.5)) -> Path:
    """Decisions as a vertical chain of boxes ``label: op`` in arch order."""
    fig, ax = plt.subplots(figsize=size)
    items = list(arch.items())
    for i, (label, op) in enumerate(items):
        y = len(items) - i
        ax.text(0.5, y, f"{label}: {op}", ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "facecolor": "#eef3ff"})
        if i:
            ax.annotate("", xy=(0.5, y + 0.3), xytext=(0.5, y + 0.7), arrowprops={"arrowstyle": "<-"})
    ax.set_xlim(0, 1)
    ax.set_ylim(0.3, len(items) + 0.7)
    ax.axis("off")
    fig.suptitle(title or "architecture")
    return _save(fig, path)


def draw_split_tree(tree: Sequence[Mapping], path: str | Path, *, size=(10, 6)) -> Path:
    """The split tree (one box per node: label split, groups, score) over heatmaps of each split's distances.

    ``size`` fits the tree and one row of three heatmaps; every further row of
    heatmaps adds half its height, so names and titles keep their room.
    """
    splits = [s for s in tree if s.get("distances")]
    rows = 1 + math.ceil(len(splits) / 3) if splits else 1
    fig = plt.figure(figsize=(size[0], size[1] * max(rows, 2) / 2))
    ax = fig.add_subplot(rows, 1, 1)
    _tree_panel(ax, tree)
    for i, split in enumerate(splits):
        heat = fig.add_subplot(rows, 3, 4 + i)
        _heatmap(heat, split)
    fig.tight_layout()
    return _save(fig, path)


def _tree_panel(ax, tree: Sequence[Mapping]) -> None:
    depth = {"root": 0}
    order: dict[int, list[str]] = {0: ["root"]}
    for split in tree:
        for child in split["children"]:
            depth[child] = depth.get(split["node"], 0) + 1
            order.setdefault(depth[child], []).append(child)
    where = {node: ((i + 1) / (len(nodes) + 1), -d) for d, nodes in order.items() for i, node in enumerate(nodes)}
    split_of = {s["node"]: s for s in tree}
    for split in tree:
        for child in split["children"]:
            (x0, y0), (x1, y1) = where[split["node"]], where[child]
            ax.plot([x0, x1], [y0, y1], color="#888888", zorder=1)
    for node, (x, y) in where.items():
        label, _, ops = node.rsplit("/", 1)[-1].partition("=")
        text = f"{label} in\n" + "\n".join(ops.split("+")) if ops else label
        if node in split_of:
            s = split_of[node]
            text += f"\nsplit {s['label']} (score {s['score']:.3g})"
        ax.text(x, y, text, ha="center", va="center", fontsize=6, zorder=2,
                bbox={"boxstyle": "round", "facecolor": "#fff6e0" if node in split_of else "#e8f6e8"})
    ax.set_ylim(-max(order) - 0.5, 0.5)
    ax.set_xlim(0, 1)
    ax.axis("off")
    ax.set_title("split tree")


def _heatmap(ax, split: Mapping) -> None:
    matrix = split["distances"][split["label"]]
    ops_in_order = split.get("ops") or [op for group in split["groups"] for op in group]
    ax.imshow(matrix, cmap="viridis")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=5, color="white")
    # Whole op names: tight_layout makes room for them (a cut name like 'nor_conv_1' is ambiguous).
    ax.set_xticks(range(len(ops_in_order)), list(ops_in_order), rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=6)
    ax.set_yticks(range(len(ops_in_order)), list(ops_in_order), fontsize=6)
    ax.set_title(heatmap_title(split), fontsize=7)


def heatmap_title(split: Mapping) -> str:
    """The title of a split's heatmap, wrapped to fit a third of the figure's width.

    >>> print(heatmap_title({"label": "3<-0", "node": "root/1<-0=skip_connect+avg_pool_3x3"}))
    split of 3<-0 in the sub-supernet where
    1<-0 in {skip_connect, avg_pool_3x3}
    """
    node = split["node"]
    if node == "root":
        return f"split of {split['label']} in the root supernet"
    lines = [f"split of {split['label']} in the sub-supernet where"]
    for step in node.split("/")[1:]:  # one line per split of its lineage; long op lists wrap, names stay whole
        label, _, ops = step.partition("=")
        lines += textwrap.wrap(f"{label} in {{{', '.join(ops.split('+'))}}}", width=44, subsequent_indent="    ",
                               break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


_SHORT = {"none": "0", "skip_connect": "skip", "nor_conv_1x1": "c1", "nor_conv_3x3": "c3", "avg_pool_3x3": "pool"}


def short_name(node_id: str) -> str:
    """A compact name of a split-tree node: ``1<-0={c1,c3} 3<-0={skip}`` (``root`` for the root)."""
    steps = [step.partition("=") for step in node_id.split("/")[1:]]
    if not steps:
        return node_id
    return " ".join(f"{label}={{{','.join(_SHORT.get(op, op[:6]) for op in ops.split('+'))}}}"
                    for label, _, ops in steps)


def draw_training_curves(histories: Mapping[str, Sequence[Mapping]], path: str | Path, *, size=(10, 4)) -> Path:
    """Loss and accuracy per epoch for each (sub-)supernet, one line each."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=size)
    for i, (name, history) in enumerate(histories.items()):
        epochs = [h["epoch"] for h in history]
        label = short_name(name)
        loss_ax.plot(epochs, [h["loss"] for h in history], color=_COLOURS(i % 10), label=label)
        acc_ax.plot(epochs, [h["accuracy"] for h in history], color=_COLOURS(i % 10), label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="training accuracy (sampled paths)", title="accuracy")
    acc_ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def draw_ranking(estimated: Sequence[float], true: Sequence[float], path: str | Path, *, title: str = "",
                 size=(5, 5)) -> Path:
    """Estimated vs true accuracy, Kendall tau in the title."""
    from gmgraph.search.ranking import kendall_tau

    fig, ax = plt.subplots(figsize=size)
    ax.scatter(true, estimated, s=8, alpha=0.7)
    ax.set(xlabel="true accuracy", ylabel="estimated accuracy")
    ax.set_title(f"{title + ': ' if title else ''}Kendall tau = {kendall_tau(estimated, true):.3f}")
    return _save(fig, path)


def draw_front(pareto: Mapping, leaves: Sequence[Mapping], path: str | Path, *, size=(7, 5)) -> Path:
    """The Pareto front of a search: every evaluated arch by leaf, each leaf's front, the whole front, the chosen point.

    Args:
        pareto: report.json's ``pareto``: ``objectives`` (name, sense), ``front`` and ``history``
            (points ``{"arch", "values"}``), ``chosen`` (index into ``front``).
        leaves: report.json's ``leaves`` (``id`` and ``space``), to colour points by sub-supernet.

    The first two objectives are drawn: the second on x, the first (accuracy) on y.

    >>> import tempfile, pathlib
    >>> pts = [{"arch": {"a": op}, "values": {"accuracy": acc, "params": p}}
    ...        for op, acc, p in (("x", 0.5, 1.0), ("y", 0.7, 2.0), ("z", 0.6, 3.0))]
    >>> pareto = {"objectives": [{"name": "accuracy", "sense": "max"}, {"name": "params", "sense": "min"}],
    ...           "front": pts[:2], "history": pts, "chosen": 1}
    >>> leaves = [{"id": "root/a=x", "space": {"a": ["x"]}}, {"id": "root/a=y+z", "space": {"a": ["y", "z"]}}]
    >>> draw_front(pareto, leaves, pathlib.Path(tempfile.mkdtemp()) / "front.png").name
    'front.png'
    """
    from gmgraph.search.pareto import non_dominated

    (y_name, y_sense), (x_name, x_sense) = [(o["name"], o["sense"]) for o in pareto["objectives"][:2]]
    fig, ax = plt.subplots(figsize=size)
    for i, leaf in enumerate(leaves):
        inside = [p for p in pareto.get("history", pareto["front"])
                  if all(p["arch"].get(label) in ops for label, ops in leaf["space"].items())]
        if not inside:
            continue
        xy = np.array([[p["values"][x_name], p["values"][y_name]] for p in inside])
        colour = _COLOURS(i % 10)
        ax.scatter(xy[:, 0], xy[:, 1], s=10, alpha=0.35, color=colour, label=short_name(leaf["id"]))
        own = xy[non_dominated(xy, (x_sense, y_sense))]
        own = own[np.argsort(own[:, 0])]
        ax.step(own[:, 0], own[:, 1], where="post", color=colour, alpha=0.8, linewidth=1)
    front = np.array([[p["values"][x_name], p["values"][y_name]] for p in pareto["front"]])
    order = np.argsort(front[:, 0])
    ax.step(front[order, 0], front[order, 1], where="post", color="black", linewidth=2, label="front")
    ax.scatter(front[:, 0], front[:, 1], s=24, color="black", zorder=3)
    chosen = front[pareto["chosen"]]
    ax.scatter([chosen[0]], [chosen[1]], s=160, marker="*", color="gold", edgecolor="black", zorder=4,
               label=f"chosen (point {pareto['chosen']})")
    for i, (x, y) in enumerate(front):
        ax.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel=f"{x_name} ({'lower' if x_sense == 'min' else 'higher'} is better)",
           ylabel=f"{y_name} ({'higher' if y_sense == 'max' else 'lower'} is better)",
           title=f"Pareto front: {y_name} vs {x_name} (points numbered for --pick)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)
