"""The ``gmgraph`` command line: one module per subcommand under ``gmgraph/commands``.

``gmgraph search`` runs few-shot NAS (defaults: gradient-matching splits of
NAS-Bench-201 over the bundled digits data). A user error prints one line and
exits 2; no traceback::

    $ gmgraph search --epochs 0
    gmgraph: error: --epochs must be a positive integer, got 0
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gmgraph.errors import GmGraphError

# Each module has add_parser(subparsers), which registers its command and sets `func`.
COMMANDS = ("search", "export", "predict", "rank", "show", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gmgraph", description="Few-shot neural architecture search on torch.fx.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"gmgraph.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gmgraph`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GmGraphError as exc:
        print(f"gmgraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gmgraph: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
