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
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from gmgraph.errors import CheckpointError, ConfigError, GmGraphError

if TYPE_CHECKING:
    from gmgraph.train import distributed


def _split_at(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs separated by commas, like 10,20; got {text!r}") from None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_parser(sub) -> None:
    from gmgraph.pipeline import SEARCHES, SearchSettings
    from gmgraph.spaces import REGISTRY
    from gmgraph.train.fewshot import METHODS
    from gmgraph.train.samplers import SAMPLERS

    d = SearchSettings()
    p = sub.add_parser("search", help="few-shot NAS: train, split, search, report",
                       description="Train a supernet, split it into sub-supernets, search, and report.")
    p.add_argument("--config", type=Path, help="TOML or YAML file whose keys mirror these flags")
    p.add_argument("--space", choices=tuple(REGISTRY), help=f"search space (default {d.space})")
    p.add_argument("--data", help=f"digits, synthetic, cifar10, cifar100, mnist, fashion-mnist, imagefolder (default {d.data})")
    p.add_argument("--data-root", help="folder holding the dataset files (not needed for digits/synthetic)")
    p.add_argument("--method", metavar="METHOD", help=f"one of {', '.join(METHODS)} (default {d.method})")
    p.add_argument("--sampler", choices=SAMPLERS, help=f"supernet training sampler (default {d.sampler})")
    p.add_argument("--epochs", type=int, help=f"epochs of the whole schedule (default {d.epochs})")
    p.add_argument("--split-at", type=_split_at, help="epochs at which every leaf splits, e.g. 10,20 (default 10,20)")
    p.add_argument("--groups", type=int, choices=(2, 3), help=f"groups per split (default {d.groups})")
    p.add_argument("--balanced", type=_bool, help="balanced groups (default true)")
    p.add_argument("--rounds", type=int, help=f"gradient-matching batches per label (default {d.rounds})")
    p.add_argument("--distance", help=f"cos, per-filter-cos or mse (default {d.distance})")
    p.add_argument("--inherit", type=_bool, help="children inherit optimizer/schedule/sampler state (default true)")
    p.add_argument("--search", choices=SEARCHES, help=f"search strategy (default {d.search})")
    p.add_argument("--evaluations", type=int, help=f"architectures the search evaluates (default {d.evaluations})")
    p.add_argument("--bn-batches", type=int, help=f"BN recalibration batches per evaluation (default {d.bn_batches})")
    p.add_argument("--final-epochs", type=int, help=f"train the chosen arch from scratch (default {d.final_epochs})")
    p.add_argument("--width", type=int, help=f"channels of the first stage, NB201's C (default {d.width})")
    p.add_argument("--cells", type=int, help=f"cells per stage, NB201's N (default {d.cells})")
    p.add_argument("--batch-size", type=int, help=f"(default {d.batch_size})")
    p.add_argument("--lr", type=float, help=f"weight learning rate (default {d.lr})")
    p.add_argument("--steps-per-epoch", type=int, help="cap training steps per epoch (quick runs)")
    p.add_argument("--seed", type=int, help=f"(default {d.seed})")
    p.add_argument("--out", type=Path, help="output folder (default runs/search-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="worker processes on this machine, via torch.distributed (default 1); "
                        "for several machines start `python -m gmgraph search` with torchrun instead")
    p.set_defaults(func=_run_search)


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
    return values.get("search", values)


def _settings(args: argparse.Namespace):
    from gmgraph.pipeline import SearchSettings

    values = _read_config(args.config) if args.config else {}
    settings = SearchSettings.from_mapping(values)
    for name in SearchSettings.__dataclass_fields__:
        flag = getattr(args, name, None)
        if flag is not None:
            setattr(settings, name, flag)
    return settings.validate()


def _prepare_out(out: Path | None, resume: bool) -> Path:
    out = out or Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    if resume and not (out / "checkpoint.pt").exists():
        raise ConfigError(f"--resume: no checkpoint in {out} (expected {out / 'checkpoint.pt'})")
    if not resume and (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc
    return out


def _run_search(args: argparse.Namespace) -> int:
    from gmgraph.train import distributed

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be 1 or more, got {args.nproc}")
    if distributed.launched_by_torchrun():
        if args.nproc is not None and args.nproc > 1:
            raise ConfigError("--nproc starts workers on this machine; under torchrun leave it out "
                              "(torchrun's --nproc-per-node sets the number of workers)")
        with distributed.session() as team:
            return _search(args, team)
    if args.nproc is not None and args.nproc > 1:
        return _launch(args)
    return _search(args, None)


def _search(args: argparse.Namespace, team: distributed.Team | None) -> int:
    """The run itself, in one process or in every worker of a distributed run."""
    from gmgraph.pipeline import run_search
    from gmgraph.report import summary
    from gmgraph.train import distributed

    try:
        settings = _settings(args)
        if team is None:
            out = _prepare_out(args.out, args.resume)
        else:  # rank 0 checks (and names) the folder; everyone uses its answer
            out = team.on_root(lambda: _prepare_out(args.out, args.resume), "checking --out")
        report = run_search(settings, out, resume=args.resume, quiet=args.quiet)
    except GmGraphError as exc:
        if team is None or team.is_root:
            raise
        if isinstance(exc, ConfigError | CheckpointError):
            return 2  # the same error on every rank: rank 0 reports it
        if isinstance(exc, distributed.WorkerLost):
            raise  # its message names the rank
        raise type(exc)(f"[rank {team.rank}] {exc}") from exc
    except KeyboardInterrupt:
        if team is None or team.is_root:
            raise
        return 130  # rank 0 says it
    if report is None:  # a worker other than rank 0: the report is rank 0's
        return 0
    print(summary(report))
    print(f"wrote {out / 'report.json'}, {out / 'report.html'}, {out / 'arch.txt'}, {out / 'best.pt'}, {out / 'best.onnx'}")
    return 0


def _launch(args: argparse.Namespace) -> int:
    """Start ``args.nproc`` workers on this machine, each running this command without ``--nproc``."""
    from gmgraph.pipeline import SearchSettings
    from gmgraph.train import distributed

    _settings(args)  # a user error is one line here, not one per worker
    out = _prepare_out(args.out, args.resume).resolve()
    flags = ["--out", str(out)]
    if args.config is not None:
        flags += ["--config", str(args.config.resolve())]
    for name in SearchSettings.__dataclass_fields__:  # exactly the flags the user gave
        value = getattr(args, name, None)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", _flag_value(value)]
    flags += ["--resume"] * args.resume + ["--quiet"] * args.quiet
    return distributed.launch(["search", *flags], args.nproc)


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
