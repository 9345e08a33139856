"""``gmgraph report DIR``: rebuild report.html and its PNGs from a finished run's report.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from gmgraph.commands import HELP


def add_parser(sub) -> None:
    p = sub.add_parser("report", help=HELP["report"],
                       description="Rebuild report.html (images embedded) and the PNGs from DIR/report.json.")
    p.add_argument("run", type=Path, help="a `gmgraph search` output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gmgraph.report_html import render_run

    print(f"wrote {render_run(args.run)}")
    return 0
