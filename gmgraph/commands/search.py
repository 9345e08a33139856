"""``gmgraph search``: train a supernet, split it, search it, report.

>>> from gmgraph.cli import main
>>> main(["search", "--epochs", "0", "--quiet"])  # doctest: +SKIP
2

Scale-out: ``--nproc N`` starts N workers on this machine through torch's
elastic launcher; a worker started by ``torchrun`` (several machines) sees
torchrun's environment and joins its process group. See
:mod:`gmgraph.train.distributed`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from gmgraph.commands import HELP
from gmgraph.errors import CheckpointError, ConfigError, GmGraphError

if TYPE_CHECKING:
    import torch

    from gmgraph.config import SearchSettings
    from gmgraph.train import distributed


def add_parser(sub) -> None:
    from gmgraph.config import SearchSettings
    from gmgraph.settings import add_flags

    p = sub.add_parser("search", help=HELP["search"],
                       description="Train a supernet, split it into sub-supernets, search, and report. "
                                   "Every setting is a flag and a config-file key of the same name.")
    p.add_argument("--config", type=Path, help="TOML or YAML file of settings: flag names as keys "
                   "(flat, or in [train], [fewshot], [search] tables); flags given here win")
    add_flags(p, SearchSettings)
    p.add_argument("--out", type=Path, help="output folder (default runs/search-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="worker processes on this machine, via torch.distributed (default 1); "
                        "for several machines start `python -m gmgraph search` with torchrun instead")
    p.set_defaults(func=run)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = tomllib.loads(text)
    except Exception as exc:  # both parsers raise their own error types
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a table of settings")
    return values.get("search", values) if isinstance(values.get("search"), dict) and len(values) == 1 else values


def _settings(args: argparse.Namespace):
    """The run's settings: the config file's values, then the flags given (checked once, here).

    With ``--resume``: the run's own settings, changed only by the flags given (:func:`_resumed`)."""
    from gmgraph.config import SearchSettings
    from gmgraph.settings import from_flags

    if args.resume:
        return _resumed(args)[0]
    return from_flags(SearchSettings, args, _read_config(args.config) if args.config else None)


def _resumed(args: argparse.Namespace):
    """``(settings, changed)`` of ``--resume``: the run's settings from its folder with the given flags and
    config-file values over them, and one ``'--flag given, the run has ...'`` per value that changes them.

    Raises:
        ConfigError: no checkpoint in --out, or a given value that contradicts the run's training.
    """
    from gmgraph import run_folder
    from gmgraph.config import SearchSettings
    from gmgraph.settings import given

    out = args.out or run_folder.default_out()
    run_folder.check_resumable(out, given_out=args.out is not None)
    values = given(SearchSettings, args, _read_config(args.config) if args.config else None)
    return run_folder.resumed_settings(out, values)


def run(args: argparse.Namespace) -> int:
    """``gmgraph search``: build the settings once, resolve the device once, then run (a torchrun worker
    does both in :func:`_run_in_process`)."""
    from gmgraph.config import check_positive_int

    if args.nproc is not None:
        check_positive_int("--nproc", args.nproc)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # a torchrun worker: its rank 0 reports
        return _start(args, None)
    if args.resume:  # every resume error answers before any data is loaded
        return _check_resume(args)
    return _start(args, _Run.of(_settings(args)))  # a bad setting or device answers before any folder or data


class _Run(NamedTuple):
    """A run's settings, built once, and the device it trains on, resolved once (before any folder or data)."""

    settings: SearchSettings
    device: torch.device

    @classmethod
    def of(cls, settings: SearchSettings) -> _Run:
        from gmgraph.device import training_device

        return cls(settings, training_device(settings.train.device, settings.train.precision))


def _check_resume(args: argparse.Namespace) -> int:
    """``--resume``: refuse a run that cannot continue, say so of a finished one, else continue it."""
    from gmgraph import run_folder

    settings, changed = _resumed(args)
    this = _Run.of(settings)
    if run_folder.finished(args.out):
        if changed:
            raise ConfigError(f"--resume: {args.out} is a finished run, so there is nothing to change "
                              f"({'; '.join(changed)}); start a new run in another --out to search with other "
                              "settings")
        print(f"{args.out} is a finished run; nothing to resume (its results: {args.out / run_folder.REPORT}, "
              f"{args.out / run_folder.HTML}; `gmgraph show --run {args.out}` prints them)")
        return 0
    _check_checkpoint(args.out / run_folder.CHECKPOINT)
    return _start(args, this)


def _check_checkpoint(path: Path) -> None:
    """Load the checkpoint ``--resume`` continues from: a damaged one is refused now, not after the data."""
    from gmgraph.train.checkpoint import load_checkpoint

    if load_checkpoint(path).get("kind") != "fewshot":
        raise CheckpointError(f"{path} was not written by `gmgraph search`: it cannot be resumed")


def _start(args: argparse.Namespace, this: _Run | None) -> int:
    """The run in this process, in ``--nproc`` workers, or as one worker of torchrun's (``this`` is None:
    the worker builds its settings and resolves its own device, in :func:`_run_in_process`)."""
    from gmgraph.train import distributed

    if distributed.launched_by_torchrun():
        if args.nproc is not None and args.nproc > 1:
            raise ConfigError("--nproc starts workers on this machine; under torchrun leave it out "
                              "(torchrun's --nproc-per-node sets the number of workers)")
        with distributed.session() as team:
            return _run_in_process(args, team, None)
    if args.nproc is not None and args.nproc > 1:
        return _launch(args, this.settings)
    return _run_in_process(args, None, this)


def _run_in_process(args: argparse.Namespace, team: distributed.Team | None, this: _Run | None) -> int:
    """The run itself, in one process or in every worker of a distributed run.

    ``this``: the settings and device :func:`run` built and resolved; None in a worker, which builds
    its own here (each worker is a process of its own; its device is its GPU, known inside the session)."""
    from gmgraph import run_folder
    from gmgraph.report import summary
    from gmgraph.search_job import run_search
    from gmgraph.train import distributed

    folder = contextlib.ExitStack()  # rank 0 (or the one process) holds the run folder until the end

    def claim(out: Path) -> Path:
        return folder.enter_context(run_folder.claim(out, args.resume))

    out = None
    try:
        with folder:
            settings, device = (this.settings, this.device) if this is not None else (_settings(args), None)
            out = args.out or run_folder.default_out()
            if team is None:
                out = claim(out)
            else:  # rank 0 checks, names and locks the folder; everyone uses its answer
                out = team.on_root(lambda: claim(out), "checking --out")
            report = run_search(settings, out, resume=args.resume, quiet=args.quiet, device=device)
    except GmGraphError as exc:
        if team is None or team.is_root:
            raise
        if isinstance(exc, ConfigError | CheckpointError):
            return 2  # the same error on every rank: rank 0 reports it
        if isinstance(exc, distributed.WorkerLost):
            raise  # its message names the rank
        raise type(exc)(f"[rank {team.rank}] {exc}") from exc
    except KeyboardInterrupt as exc:
        if team is None or team.is_root:
            exc.resume_hint = _resume_hint(out)
            raise
        return 130  # rank 0 says it
    if report is None:  # a worker other than rank 0: the report is rank 0's
        return 0
    print(summary(report))
    written = (run_folder.REPORT, *([run_folder.HTML] if report["settings"].get("html", True) else []),
               run_folder.ARCH, run_folder.BEST, *([run_folder.ONNX] if report["settings"]["export"] else []))
    print("wrote " + ", ".join(str(out / name) for name in written))
    return 0


def _resume_hint(out: Path | None) -> str:
    """Where the last checkpoint is and the command that continues from it."""
    from gmgraph import run_folder

    if out is None or not (Path(out) / run_folder.CHECKPOINT).exists():
        return "no epoch had finished, so there is nothing to resume: start the run again"
    return (f"the last checkpoint (written after every epoch) is {Path(out) / run_folder.CHECKPOINT}; continue with: "
            f"gmgraph search --out {out} --resume (it takes the run's settings)")


def _launch(args: argparse.Namespace, settings: SearchSettings) -> int:
    """Start ``args.nproc`` workers on this machine, each running this command with the same settings."""
    from gmgraph import run_folder
    from gmgraph.errors import ConfigError
    from gmgraph.progress import log
    from gmgraph.registry import SAMPLERS
    from gmgraph.settings import to_flags
    from gmgraph.train import distributed
    from gmgraph.train.memory import check_workers

    sampler = settings.train.resolved_sampler()  # auto is pada or uniform: both train on many processes
    if SAMPLERS[sampler].multi_path:  # refused here, before any worker starts
        raise ConfigError(f"--sampler {settings.train.sampler} trains in one process (its paths' losses are not "
                          "averaged across ranks); leave out --nproc")
    if SAMPLERS[sampler].single_process:  # its own architecture step (proxyless), not averaged
        raise ConfigError(f"--sampler {settings.train.sampler} trains in one process (its own architecture step is "
                          "not averaged across ranks); leave out --nproc")
    if settings.train.darts_order != 1:  # the unrolled step reads whole batches on one process
        raise ConfigError("--darts-order 2 trains in one process (its unrolled architecture step is not averaged "
                          "across ranks); leave out --nproc")
    for note in check_workers(args.nproc):  # before any worker takes memory; each checks its training share
        log(note, quiet=args.quiet)
    out = run_folder.prepare(args.out or run_folder.default_out(), args.resume).resolve()
    flags = ["--out", str(out), *to_flags(settings)]  # every setting, so the workers need no config file
    flags += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    return distributed.launch(["search", *flags], args.nproc)
