"""The ``gmgraph`` command line: one module per subcommand under ``gmgraph/commands``.

``gmgraph search`` runs few-shot NAS (defaults: gradient-matching splits of
NAS-Bench-201 over ``digits16``, the bundled digits placed on a noisy canvas).
A user error prints one line and exits 2; no traceback::

    $ gmgraph search --epochs 0
    gmgraph: error: epochs must be a positive integer, got 0
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys
import threading

from gmgraph.commands import HELP
from gmgraph.errors import GmGraphError

# Each module has add_parser(subparsers), which registers its command and sets `func` to the module's
# handler, `run(args) -> exit code` in every command module.
COMMANDS = tuple(HELP)


class _Parser(argparse.ArgumentParser):
    """argparse with gmgraph's error format: one line and exit 2, not the usage block."""

    def error(self, message: str):
        self.exit(2, f"gmgraph: error: {message} (see `{self.prog} --help`)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command ``argv`` names is built in full (importing its heavy parts).

    ``gmgraph --help`` and a mistyped command therefore answer without importing torch.
    """
    parser = _Parser(prog="gmgraph", description="Few-shot neural architecture search on torch.fx.")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = _command(sys.argv[1:] if argv is None else argv)
    for name in COMMANDS:
        if name == chosen:
            importlib.import_module(f"gmgraph.commands.{name}").add_parser(sub)
        else:  # listed in `gmgraph --help`, never parsed
            sub.add_parser(name, help=HELP[name])
    return parser


def _command(argv: list[str]) -> str | None:
    """The command ``argv`` runs (its first word), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in HELP else None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `kill`'s stop): handled like Ctrl-C, so the run says how to resume."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gmgraph`` command; returns the exit code."""
    args = build_parser(argv).parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return args.func(args)
    except GmGraphError as exc:
        print(f"gmgraph: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        resume = getattr(exc, "resume_hint", "continue with --resume")
        if isinstance(exc, Terminated):
            print(f"gmgraph: terminated (SIGTERM); {resume}", file=sys.stderr)
            return 143
        print(f"gmgraph: interrupted; {resume}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe broke (a worker's): a real error, shown as one
        # The reader went away (`gmgraph show | head`): stop quietly as other tools do, and point stdout at
        # devnull so that Python's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end has closed (poll reports an error on the writing end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor behind stdout, or no poll on this platform
        return False


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal handlers live there only


if __name__ == "__main__":
    sys.exit(main())
