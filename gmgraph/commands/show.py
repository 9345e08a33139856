"""``gmgraph show``: a search space as a table, or one architecture with its cost and a drawing.

    $ gmgraph show --space nb201
    $ gmgraph show --space nb201 --arch '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|'
    $ gmgraph show --run runs/search-...      # the run's space and chosen architecture
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gmgraph import registry
from gmgraph.commands import HELP


def add_parser(sub) -> None:
    p = sub.add_parser("show", help=HELP["show"],
                       description="Print a search space as a table; with --arch, one architecture's cost and cell.")
    p.add_argument("--space", default="nb201", help=f"one of {', '.join(registry.SPACES)} (default nb201)")
    p.add_argument("--run", type=Path, help="a `gmgraph search` output folder: show its space and chosen arch")
    p.add_argument("--arch", help="an architecture string of the space (NB201: |op~0|+|op~0|op~1|+...)")
    p.add_argument("--width", type=int, default=16, help="channels of the first stage (default 16)")
    p.add_argument("--cells", type=int, default=5, help="cells per stage (default 5)")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--image-size", type=int, default=32, help="input height and width for FLOPs (default 32)")
    p.add_argument("--png", type=Path, help="also draw the architecture into this PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from gmgraph import spaces
    from gmgraph.graph import trace

    shape, arch = _shape(args)
    torch.manual_seed(0)
    gm = trace(shape.supernet())
    if args.arch is not None:
        arch = spaces.parse_arch(shape.space, args.arch)
    print(space_table(gm))
    if arch is not None:
        print()
        print(arch_summary(gm, arch, (shape.in_channels, *shape.image_size)))
        if args.png is not None:
            from gmgraph import viz

            print(f"drawing: {viz.draw_cell(arch, args.png, title=args.arch or '')}")
    return 0


def _shape(args: argparse.Namespace):
    """The network ``args`` name, and the arch of the run it names (None without ``--run``): a run's shape is
    read from its report.json as export and predict read it, so a ``--model``/``--rules`` run gets its own space."""
    from gmgraph.run_folder import Shape, read_report

    if args.run is None:
        size = (args.image_size, args.image_size)
        return Shape(args.space, args.width, args.cells, args.num_classes, args.in_channels, size), None
    report = read_report(args.run)
    return Shape.of_report(report), report["arch"]


def space_table(gm) -> str:
    """Labels, candidates and Choices per label, where each label runs, the space size and its parameter range.

    A label nested in other decisions' candidates (an OFA block's expansion inside its stage's depth) runs only
    with them: its ``runs`` column names them (:func:`runs_when`).
    """
    from gmgraph.graph import choices, space, space_size
    from gmgraph.nesting import places

    labels = space(gm)
    where = places(gm)
    runs = {label: runs_when(where.get(label, {None}), labels) for label in labels}
    nested = any(text != "always" for text in runs.values())  # else the column would say "always" throughout
    width = max([14, *map(len, labels)])
    listed = {label: ", ".join(ops) for label, ops in labels.items()}
    listed_width = max(map(len, listed.values()), default=0) if nested else 0
    rows = [f"{'label':<{width}} {'choices':>7}  {'candidates':<{listed_width}}{'  runs' if nested else ''}"]
    groups = choices(gm)
    for label in labels:
        row = f"{label:<{width}} {len(groups[label]):>7}  {listed[label]:<{listed_width}}"
        rows.append(f"{row}  {runs[label]}" if nested else row)
    low, high = param_range(gm)
    rows.append(f"space size: {space_size(gm):,} architectures; parameters: {low:,} to {high:,} "
                "(ops whose output is unused counted)")
    return "\n".join(rows)


def runs_when(places: set, labels: dict[str, tuple[str, ...]]) -> str:
    """When a label's Choices run, from where they sit (:func:`gmgraph.nesting.places`): ``always`` at the top
    level, else each enclosing decision with the candidates that hold them (``in`` it when every one does).

    >>> labels = {"depth": ("d2", "d3", "d4"), "expand": ("e3", "e6")}
    >>> runs_when({None}, labels), runs_when({("depth", "d3"), ("depth", "d4")}, labels)
    ('always', 'depth = d3|d4')
    >>> runs_when({("expand", "e3"), ("expand", "e6")}, labels)
    'in expand'
    """
    if None in places:
        return "always"
    held: dict[str, set[str]] = {}
    for label, op in places:
        held.setdefault(label, set()).add(op)
    parts = []
    for label, ops in held.items():
        order = labels.get(label, tuple(sorted(ops)))
        every = set(order) <= ops
        parts.append(f"in {label}" if every else f"{label} = {'|'.join(op for op in order if op in ops)}")
    return "; ".join(sorted(parts))


def param_range(gm) -> tuple[int, int]:
    """Fewest and most parameters of any architecture (a label's op applies to all its Choices).

    As derived: an elastic view counts its slice of the shared tensor, a Choice nested in an op
    counts only with that op (each nested Choice bounded on its own, so the range stays a true bound).
    """
    from gmgraph.search.cost_bounds import op_param_bounds, own_parameters

    fixed, top = own_parameters(gm)
    by_label: dict[str, list[dict[str, tuple[int, int]]]] = {}
    for choice in top:
        by_label.setdefault(choice.label, []).append(op_param_bounds(choice))
    low = high = fixed
    for bounds in by_label.values():
        low += min(sum(b[op][0] for b in bounds) for op in bounds[0])
        high += max(sum(b[op][1] for b in bounds) for op in bounds[0])
    return low, high


def arch_summary(gm, arch: dict[str, str], shape: tuple[int, int, int]) -> str:
    """Parameters, FLOPs and a text drawing of one architecture."""
    import torch

    from gmgraph.passes.derive import derive
    from gmgraph.scores.zero_cost import zero_cost

    net = derive(gm, arch)
    params = sum(p.numel() for p in net.parameters())
    flops = zero_cost(gm, arch, "flops", (torch.zeros(1, *shape), None))
    lines = [f"parameters: {params:,} (derived network, dead ops pruned)",
             f"FLOPs: {flops / 1e6:.2f} M multiply-adds for one {shape[0]}x{shape[1]}x{shape[2]} input"]
    return "\n".join(lines + ["", text_drawing(arch)])


def text_drawing(arch: dict[str, str]) -> str:
    """``node i = op(node j) + ...`` per node of each cell; ``label: op`` lines otherwise."""
    from gmgraph.viz import cells_of

    cells = cells_of(arch)
    if cells is None:
        return "\n".join(f"{label}: {op}" for label, op in arch.items())
    lines = []
    for name, edges in cells.items():
        if len(cells) > 1:
            lines.append(f"[{name}]")
        for dst in sorted({d for _, d, _ in edges}):
            terms = [f"{op}(node {src})" for src, d, op in sorted(edges) if d == dst and op != "none"]
            lines.append(f"node {dst} = {' + '.join(terms) if terms else 'zero'}")
    return "\n".join(lines)
