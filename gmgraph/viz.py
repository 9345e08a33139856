"""Drawings of architectures, split trees, training curves, search progress, Pareto fronts and rankings.

Every function writes one PNG (matplotlib, Agg) of a fixed size (``size``
inches x ``DPI``; a split tree with more than three splits or two levels, and
a plot with a legend below it, grow taller) and returns its path; no text is
smaller than ``SMALL`` points; files are written atomically::

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
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from gmgraph.files import atomic_write  # noqa: E402

DPI = 100
SMALL = 8
"""The smallest font size (points) any drawing uses: 11 px at ``DPI``, as report.html shows the PNGs."""
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
        ax.text((x[src] + x[dst]) / 2, bend * (x[dst] - x[src]) / 2 + 0.05, op, ha="center", fontsize=SMALL + 1,
                color=colour)
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

    ``size`` fits a tree of one split and one row of three heatmaps; every
    further row of heatmaps adds half its height, and a tree more than two
    levels deep ``_LEVEL`` inches per level, so names and titles keep their room.
    """
    splits = [s for s in tree if s.get("distances")]
    heat_rows = math.ceil(len(splits) / 3)
    tree_height = max(size[1] / 2, _LEVEL * (1 + max(_depths(tree).values())))
    heights = [tree_height] + [size[1] / 2] * heat_rows
    fig = plt.figure(figsize=(size[0], sum(heights) if heat_rows else max(tree_height, size[1])),
                     layout="constrained")
    top, *rows = fig.subfigures(1 + heat_rows, 1, height_ratios=heights, squeeze=False)[:, 0]
    _tree_panel(top.subplots(), tree)  # a figure of its own: the heatmaps' labels take none of its height
    for i, split in enumerate(splits):
        _heatmap(rows[i // 3].add_subplot(1, 3, 1 + i % 3), split)
    return _save(fig, path)


_LEVEL = 1.1
"""Inches per level of the split tree: a box of five lines of node text and the edge to the next level."""


def _depths(tree: Sequence[Mapping]) -> dict[str, int]:
    """Each node's depth in the split tree (the root: 0), parents before children."""
    depth = {"root": 0}
    for split in tree:
        for child in split["children"]:
            depth[child] = depth.get(split["node"], 0) + 1
    return depth


def tree_layout(tree: Sequence[Mapping]) -> dict[str, tuple[float, float]]:
    """Where each split-tree node is drawn, ``(x in (0, 1), -depth)``: the leaves evenly spaced in depth-first
    order, each parent centred over its children, so no two edges cross.

    >>> tree_layout([{"node": "root", "children": ["root/a=x", "root/a=y"]}])
    {'root': (0.5, 0), 'root/a=x': (0.3333333333333333, -1), 'root/a=y': (0.6666666666666666, -1)}
    """
    children = {split["node"]: split["children"] for split in tree}
    parent = {child: node for node, below in children.items() for child in below}
    depth = _depths(tree)

    def route(node: str) -> list[int]:  # child positions from the root: sorting by it is depth-first order
        return [] if node not in parent else [*route(parent[node]), children[parent[node]].index(node)]

    leaves = sorted((node for node in depth if node not in children), key=route)
    where: dict[str, tuple[float, float]] = {}

    def place(node: str) -> float:
        if node in children:
            below = [place(child) for child in children[node]]
            x = (below[0] + below[-1]) / 2
        else:
            x = (leaves.index(node) + 1) / (len(leaves) + 1)
        where[node] = (x, -depth[node])
        return x

    place("root")
    return {node: where[node] for node in depth}


def _tree_panel(ax, tree: Sequence[Mapping]) -> None:
    where = tree_layout(tree)
    order = {-y for _, y in where.values()}
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
        ax.text(x, y, text, ha="center", va="center", fontsize=SMALL + 1, zorder=2,
                bbox={"boxstyle": "round", "facecolor": "#fff6e0" if node in split_of else "#e8f6e8"})
    ax.set_ylim(-max(order) - 0.5, 0.5)
    ax.set_xlim(0, 1)
    ax.axis("off")
    ax.set_title("split tree")


def _heatmap(ax, split: Mapping) -> None:
    matrix = split["distances"][split["label"]]
    ops_in_order = split.get("ops") or [op for group in split["groups"] for op in group]
    image = ax.imshow(matrix, cmap="viridis")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=SMALL,
                    color=text_colour_on(image.cmap(image.norm(value))))
    # Whole op names: tight_layout makes room for them (a cut name like 'nor_conv_1' is ambiguous).
    ax.set_xticks(range(len(ops_in_order)), list(ops_in_order), rotation=45, ha="right", rotation_mode="anchor",
                  fontsize=SMALL)
    ax.set_yticks(range(len(ops_in_order)), list(ops_in_order), fontsize=SMALL)
    ax.set_title(heatmap_title(split), fontsize=SMALL)


def luminance(colour) -> float:
    """The relative luminance of an RGB(A) colour (WCAG 2): 0 for black, 1 for white."""
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def contrast(a, b) -> float:
    """The WCAG contrast ratio of two colours, from 1 (the same) to 21 (black on white); 4.5 reads as body text."""
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def text_colour_on(background) -> str:
    """Black or white, whichever contrasts more with ``background`` (numbers on a heatmap's cells).

    >>> text_colour_on("yellow"), text_colour_on("#440154")  # viridis' two ends
    ('black', 'white')
    """
    return max(("black", "white"), key=lambda text: contrast(text, background))


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
    """Loss and accuracy per epoch for each (sub-)supernet, one colour each, the legend below the plots.

    Accuracy is drawn solid on the training batches and dashed on the
    validation batches where the history has ``val_accuracy``: both are of
    sampled paths, so the gap between them shows overfitting. ``size`` is
    the plots' size; each row of the legend (three names) adds ``_LEGEND_ROW`` inches.
    """
    validated = any("val_accuracy" in h for history in histories.values() for h in history)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=size)
    for i, (name, history) in enumerate(histories.items()):
        colour, epochs = _COLOURS(i % 10), [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["loss"] for h in history], color=colour, marker=".")
        acc_ax.plot(epochs, [h["accuracy"] for h in history], color=colour, marker=".", label=short_name(name))
        checked = [h for h in history if "val_accuracy" in h]
        if checked:
            acc_ax.plot([h["epoch"] for h in checked], [h["val_accuracy"] for h in checked], color=colour,
                        marker=".", linestyle="--")
    if validated:  # what the two line styles mean, in black
        acc_ax.plot([], [], color="black", label="training")
        acc_ax.plot([], [], color="black", linestyle="--", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (sampled paths)",
               title="accuracy: training (solid), validation (dashed)" if validated else "training accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.25
    _legend_below(fig, acc_ax, size[1])
    return _save(fig, path)


_LEGEND_ROW = 0.22
"""Inches per row of a legend set below the plots (font ``SMALL + 1`` and its spacing)."""


def _legend_below(fig, ax, height: float, columns: int = 3) -> None:
    """``ax``'s legend under the plots, ``columns`` wide: the figure grows by its rows, the plots keep ``height``
    (a legend inside a plot hides lines, and beside it takes a third of the width)."""
    handles, labels = ax.get_legend_handles_labels()
    rows = math.ceil(len(labels) / columns)
    fig.set_figheight(height + _LEGEND_ROW * rows)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=SMALL + 1, frameon=False)
    fig.tight_layout(rect=(0, (_LEGEND_ROW * rows + 0.05) / fig.get_figheight(), 1, 1))


def draw_search_progress(points: Sequence[tuple[Mapping[str, str], float]], leaves: Sequence[Mapping],
                         path: str | Path, *, name: str = "validation accuracy", size=(10, 4)) -> Path:
    """Each evaluated architecture's ``name`` in evaluation order, coloured by its sub-supernet, and the best so far.

    Args:
        points: ``(arch, value)`` per evaluation, in order; higher is better.
        leaves: report.json's ``leaves`` (``id`` and ``space``), in the order (and so the colours) of the
            training curves.

    >>> import tempfile, pathlib
    >>> leaves = [{"id": "root/a=x", "space": {"a": ["x"]}}, {"id": "root/a=y", "space": {"a": ["y"]}}]
    >>> points = [({"a": "x"}, 0.2), ({"a": "y"}, 0.5), ({"a": "x"}, 0.4)]
    >>> draw_search_progress(points, leaves, pathlib.Path(tempfile.mkdtemp()) / "search.png").name
    'search.png'
    """
    fig, ax = plt.subplots(figsize=size)
    steps = np.arange(1, len(points) + 1)
    values = np.array([value for _, value in points], dtype=float)
    for i, leaf in enumerate(leaves):
        mine = [k for k, (arch, _) in enumerate(points)
                if all(arch.get(label) in ops for label, ops in leaf["space"].items())]
        if mine:
            ax.scatter(steps[mine], values[mine], s=14, alpha=0.7, color=_COLOURS(i % 10), zorder=3,
                       label=short_name(leaf["id"]))
    if len(points):
        ax.step(steps, np.maximum.accumulate(values), where="post", color="black", linewidth=2, label="best so far")
    ax.set(xlabel="evaluation", ylabel=name, title=f"search progress: {len(points)} evaluations")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(fig, ax, size[1])
    return _save(fig, path)


def draw_ranking(estimated: Sequence[float], true: Sequence[float], path: str | Path, *, title: str = "",
                 size=(5, 5)) -> Path:
    """Estimated vs true accuracy, Kendall tau in the title."""
    from gmgraph.search.rank_correlation import kendall_tau

    fig, ax = plt.subplots(figsize=size)
    ax.scatter(true, estimated, s=8, alpha=0.7)
    ax.set(xlabel="true accuracy", ylabel="estimated accuracy")
    ax.set_title(f"{title + ': ' if title else ''}Kendall tau = {kendall_tau(estimated, true):.3f}")
    return _save(fig, path)


def draw_front(pareto: Mapping, leaves: Sequence[Mapping], path: str | Path, *, size=(7, 5),
               units: Mapping[str, str] | None = None) -> Path:
    """The Pareto front of a search: every evaluated arch by leaf, each leaf's front, the whole front, the chosen point.

    Args:
        pareto: report.json's ``pareto``: ``objectives`` (name, sense), ``front`` and ``history``
            (points ``{"arch", "values"}``), ``chosen`` (index into ``front``).
        leaves: report.json's ``leaves`` (``id`` and ``space``), to colour points by sub-supernet.
        units: each objective's unit for the axis labels (``{"params": "M params"}``); none by default.

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
    units = units or {}
    ax.set(xlabel=_axis_label(x_name, x_sense, units.get(x_name)),
           ylabel=_axis_label(y_name, y_sense, units.get(y_name)),
           title=f"Pareto front: {y_name} vs {x_name} (points numbered for --pick)")
    ax.margins(0.1)  # room for the numbers of the points at the edges
    _legend_below(fig, ax, size[1])
    number_points(ax, front, chosen=pareto["chosen"])  # after the layout: it places them where they end up
    return _save(fig, path)


def _axis_label(name: str, sense: str, unit: str | None) -> str:
    """``params (M params, lower is better)``."""
    better = f"{'higher' if sense == 'max' else 'lower'} is better"
    return f"{name} ({unit + ', ' if unit else ''}{better})"


_OFFSETS = [(dx * r, dy * r) for r in (5, 13, 22) for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
"""Where a point's number may go (points from the point, nearest first): the corners, then further out."""


def number_points(ax, points: np.ndarray, *, chosen: int | None = None) -> list:
    """Write each point's index next to it so that no two numbers and no number and point overlap.

    Points at one spot (the same values) share one label (``1,2``). Each label
    goes to the first of ``_OFFSETS`` where its box overlaps no point (the
    ``chosen`` one is a larger star) and no label placed before it; where none
    is free it takes the first. Call it after the figure's layout is final.

    Returns:
        The labels (matplotlib ``Annotation`` objects), in the order of their first point.
    """
    renderer = ax.figure.canvas.get_renderer()
    at: dict[tuple[float, float], list[int]] = {}
    for i, (x, y) in enumerate(points):
        at.setdefault((float(x), float(y)), []).append(i)
    scale = ax.figure.dpi / 72  # points to pixels
    taken = []
    for i, (x, y) in enumerate(points):
        cx, cy = ax.transData.transform((x, y))
        r = (9 if i == chosen else 4) * scale
        taken.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    labels = []
    for xy, members in at.items():
        label = _place_label(ax, ",".join(map(str, members)), xy, taken, renderer)
        taken.append(label.get_window_extent(renderer))
        labels.append(label)
    return labels


def _place_label(ax, text: str, xy: tuple[float, float], taken: list, renderer):
    """``text`` at the first of ``_OFFSETS`` from ``xy`` where it overlaps none of the boxes ``taken``
    (at the nearest where every place is taken: the most readable of the crowded ones)."""
    for dx, dy in _OFFSETS:
        label = ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), fontsize=SMALL + 1, zorder=5,
                            ha="left" if dx >= 0 else "right", va="bottom" if dy >= 0 else "top")
        box = label.get_window_extent(renderer)
        if not any(box.overlaps(other) for other in taken):
            return label
        label.remove()
    return ax.annotate(text, xy, textcoords="offset points", xytext=_OFFSETS[0], fontsize=SMALL + 1, zorder=5,
                       ha="left", va="bottom")
