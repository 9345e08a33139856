"""Local ground truth: NAS-Bench-201 architectures trained from scratch on a small dataset.

Used by ``benchmarks/groundtruth.py`` (which writes it) and ``benchmarks/ranking.py``
(which reads it); it is benchmark tooling, not part of the installed package.

The NB201 table answers for CIFAR and ImageNet16 at C=16, N=5. To measure
how well a supernet *of the size we can afford* ranks architectures, we need
the true accuracies of the same small networks on the same data: train a
fixed, seeded sample of standalone (derived, freshly initialised) networks
with one short schedule and several seeds, and keep every row::

    >>> from gmgraph import data
    >>> from gmgraph.spaces import nb201
    >>> loaders = data.load("digits", batch_size=64)
    >>> arch = nb201.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|")
    >>> row = train_arch(arch, C=4, N=1, epochs=1, seed=0, loaders=loaders)
    >>> sorted(row), 0.0 <= row["val"] <= 1.0
    (['params', 'seconds', 'test', 'val', 'val_loss'], True)

The agreement of two seeds' accuracies (:func:`seed_agreement`) is the
ceiling any supernet ranking can reach on this ground truth.

Files: ``<out>.csv`` holds one row per (architecture, seed); ``<out>.json``
beside it holds the settings that generated it. Both are rewritten atomically
after every finished row, so an interrupted :func:`generate` resumes where it
stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from worker_pool import worker_pool

from gmgraph.arch import format_nb201, parse_nb201
from gmgraph.errors import ConfigError, DataError
from gmgraph.files import atomic_write
from gmgraph.progress import Progress
from gmgraph.search.rank_correlation import kendall_tau, spearman

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "digits201.csv"
"""Where ``benchmarks/groundtruth.py`` writes the digits ground truth (its defaults' file)."""

DIGITS16_PATH = DEFAULT_PATH.with_name("digits16_201_e40.csv")
"""The digits16 ground truth (issue 16; 40 epochs, meets the 0.75 gate): ``benchmarks/ranking.py``'s default."""

DIGITS16_E20_PATH = DEFAULT_PATH.with_name("digits16_201.csv")
"""The same archs and seeds at 20 epochs (3-seed tau 0.727): the baseline ``groundtruth_pilot.py`` retrains."""

COLUMNS = ("arch", "seed", "val", "test", "params", "seconds", "val_loss")
"""CSV columns: NB201 string, training seed, val and test accuracy (fractions), parameters, seconds,
mean validation cross-entropy (it breaks accuracy ties; files written before it existed lack it)."""

OPTIONAL = ("val_loss",)
"""Columns a ground truth may lack (read as NaN)."""


@dataclass(frozen=True)
class Schedule:
    """The one fixed training recipe of a ground truth (stored in the side file).

    SGD with Nesterov momentum, a cosine learning rate from ``lr`` to 0 over
    ``epochs`` (stepped per batch), gradient clipping, cross-entropy: the NB201
    recipe, shortened. The defaults are those of ``benchmarks/data/digits201.csv``.
    """

    C: int = 8
    N: int = 1
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 5.0

    def validate(self) -> Schedule:
        for name in ("C", "N", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr!r}")
        return self


def train_arch(
    arch: Mapping[str, str] | str,
    *,
    C: int,
    N: int,
    epochs: int,
    seed: int,
    loaders: Sequence[DataLoader],
    batch_size: int | None = None,
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    grad_clip: float | None = 5.0,
    batches: Callable[[int], Iterable] | None = None,
) -> dict[str, float]:
    """Train the standalone NB201 network of ``arch`` from scratch and measure it.

    ``seed`` alone fixes the initial weights and the order of the training
    batches, so equal seeds give equal results (the caller's global RNG is
    left as it was).

    Args:
        arch: label -> op or an NB201 string.
        C, N: width of the first stage and cells per stage.
        epochs: training epochs (cosine schedule from ``lr`` to 0).
        seed: the training seed.
        loaders: ``(train, val, test)`` from :func:`gmgraph.data.load`; the
            channels and classes of the network are read from the data.
        batch_size: default: the training loader's.
        lr, momentum, weight_decay, grad_clip: SGD (Nesterov) settings.
        batches: ``epoch -> training batches`` in place of the default order
            (the training loader's data shuffled by one generator seeded by ``seed``).

    Returns:
        ``{"val": acc, "test": acc, "params": n, "seconds": s, "val_loss": mean cross-entropy on val}``,
        accuracies in [0, 1].

    Example:
        >>> from gmgraph import data
        >>> loaders = data.load("synthetic", shape=(1, 8, 8), size=(32, 16, 16))
        >>> a = train_arch("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|",
        ...                C=2, N=1, epochs=1, seed=3, loaders=loaders)
        >>> b = train_arch("|skip_connect~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|",
        ...                C=2, N=1, epochs=1, seed=3, loaders=loaders)
        >>> a["val"] == b["val"] and a["params"] == b["params"]
        True
    """
    from gmgraph.spaces import nb201

    train, val, test = loaders
    channels, classes = _data_shape(train)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nb201.network(arch, C, N, num_classes=classes, in_channels=channels)
    order = batches or DataLoader(train.dataset, batch_size=batch_size or train.batch_size, shuffle=True,
                                  generator=torch.Generator().manual_seed(seed))
    fit(net, order, epochs, lr=lr, momentum=momentum, weight_decay=weight_decay, grad_clip=grad_clip)
    val_acc, val_loss = evaluate(net, val)
    return {
        "val": val_acc,
        "test": evaluate(net, test)[0],
        "params": sum(p.numel() for p in net.parameters()),
        "seconds": time.perf_counter() - start,
        "val_loss": val_loss,
    }


@torch.no_grad()
def evaluate(net: torch.nn.Module, loader: DataLoader) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``net`` in eval mode over ``loader``."""
    net.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in loader:
        logits = net(x)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return correct / n, loss / n


def _data_shape(train: DataLoader) -> tuple[int, int]:
    dataset = train.dataset
    classes = getattr(dataset, "num_classes", None)
    if classes is None:
        raise DataError("train_arch needs loaders made by gmgraph.data.load (they carry num_classes)")
    return int(dataset[0][0].shape[0]), int(classes)


def fit(net: torch.nn.Module, order: DataLoader | Callable[[int], Iterable], epochs: int, *, lr: float,
        momentum: float, weight_decay: float, grad_clip: float | None) -> None:
    """Train ``net`` with the ground truth's recipe: SGD (Nesterov), cosine to 0 stepped per batch.

    ``order`` is the training batches of every epoch (a shuffling loader) or
    ``epoch -> batches`` for data that changes between epochs; the schedule
    counts ``epochs * len(order(0))`` steps.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> batches = [(torch.ones(4, 2), torch.zeros(4, dtype=torch.long))]
        >>> fit(net, lambda epoch: batches, 3, lr=0.1, momentum=0.9, weight_decay=0.0, grad_clip=None)
        >>> bool(net(torch.ones(1, 2)).argmax() == 0)
        True
    """
    # Not gmgraph's training engine on purpose: this is the exact recipe (cosine stepped per batch,
    # down to 0) that produced the committed ground truths, which stay reproducible.
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0,
                                weight_decay=weight_decay)
    batches_of = order if callable(order) else (lambda epoch: order)
    # stepped per batch: with few epochs a per-epoch cosine is too coarse
    total = epochs * len(batches_of(0))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    net.train()
    for epoch in range(epochs):
        for x, y in batches_of(epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            schedule.step()


# ------------------------------------------------------------------ generation


def sample_archs(n_archs: int, sample_seed: int = 0) -> list[str]:
    """The fixed random sample of NB201 strings a ground truth trains.

    The first ``n_archs`` of a seeded permutation of all 15,625 indices, so
    a bigger sample extends a smaller one (a ground truth can grow).

    Example:
        >>> sample_archs(3)[:2] == sample_archs(2)
        True
    """
    from gmgraph.nasbench import nb201 as table

    if isinstance(n_archs, bool) or not isinstance(n_archs, int) or not 1 <= n_archs <= table.SIZE:
        raise ConfigError(f"n_archs must be an int in 1..{table.SIZE}, got {n_archs!r}")
    order = np.random.default_rng(sample_seed).permutation(table.SIZE)[:n_archs]
    return [format_nb201(table.arch_of(int(i))) for i in order]


def generate(
    n_archs: int,
    seeds: Sequence[int],
    *,
    out: str | Path = DEFAULT_PATH,
    schedule: Schedule | None = None,
    dataset: str = "digits",
    sample_seed: int = 0,
    uniform: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> list[dict]:
    """Train ``n_archs`` sampled architectures with every seed; write ``out`` (+ ``.json``).

    Resumable and extensible: rows already in ``out`` are kept and their
    (arch, seed) pairs skipped, provided the side file holds the same
    settings (more architectures or other seeds may be added). Both files
    are rewritten atomically after every finished training. The rows do not
    depend on ``workers``: each training is seeded by its own (arch, seed).

    Args:
        n_archs: architectures, drawn by :func:`sample_archs` with ``sample_seed``.
        seeds: training seeds; each architecture is trained once per seed.
        out: the CSV path; the settings go to the same path with suffix ``.json``.
        schedule: network size and training recipe.
        dataset: name for :func:`gmgraph.data.load` (split fixed by its split seed 0).
        sample_seed: seed of the architecture sample.
        uniform: also train the five archs whose six edges all hold one op
            (:func:`uniform_archs`), the corners of the space.
        workers: processes training in parallel, one torch thread each.
        progress: show a progress line on stderr.

    Returns:
        All rows of the file, in (architecture, seed) order.

    Raises:
        ConfigError: ``out`` was generated with other settings.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> rows = generate(2, [0], out=path, schedule=Schedule(C=2, N=1, epochs=1),
        ...                 dataset="synthetic", progress=False)
        >>> len(rows), len(load_groundtruth(path))
        (2, 2)
    """
    schedule = (schedule or Schedule()).validate()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    out = Path(out)
    loaders = load_data(dataset, schedule.batch_size)
    settings = _settings(n_archs, seeds, schedule, dataset, sample_seed, _sizes(loaders), uniform)
    done = _resume(out, settings)
    # samples are prefixes of one permutation: the longer one orders every row in the file
    order = _arch_order(max(n_archs, len({a for a, _ in done})), sample_seed, uniform)
    wanted = _arch_order(n_archs, sample_seed, uniform)
    # seed-major: an interrupted run leaves whole seeds (every arch), which is what the statistics need
    todo = [(a, int(s)) for s in seeds for a in wanted if (a, int(s)) not in done]
    bar = Progress(f"ground truth ({len(done)} done)", total=len(todo), quiet=not progress)
    for arch, seed, row in _train_all(todo, dataset, schedule, workers, loaders):
        done[arch, seed] = {"arch": arch, "seed": seed, **row}
        _write(out, settings, done, order)
        bar.update(arch=arch[:24], val=row["val"])
    bar.close()
    _write(out, settings, done, order)
    return _ordered(done, order)


def made_up(n_archs: int, seeds: Sequence[int], *, out: str | Path, schedule: Schedule | None = None,
            dataset: str = "synthetic", noise: int = 0) -> list[dict]:
    """A ground truth with made-up accuracies, written as :func:`generate` writes one: for examples and tests
    of what reads a ground truth (its rows and side file), in milliseconds instead of a training per row.

    The archs are :func:`sample_archs`'s; accuracy rises with the arch's index, plus noise seeded by ``noise``
    and the seed (so seeds disagree a little); the val loss falls as the accuracy rises.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> rows = made_up(3, [0, 1], out=path, schedule=Schedule(C=2, N=1, epochs=1))
        >>> len(rows), list(load_groundtruth(path)) == sample_archs(3), json.loads(path.with_suffix(".json").read_text())["seeds"]
        (6, True, [0, 1])
    """
    schedule = (schedule or Schedule()).validate()
    loaders = load_data(dataset, schedule.batch_size)
    settings = _settings(n_archs, seeds, schedule, dataset, 0, _sizes(loaders))
    order = sample_archs(n_archs)
    done = {}
    for seed in seeds:
        g = torch.Generator().manual_seed(1000 * noise + int(seed))
        for i, arch in enumerate(order):
            acc = round(0.1 + 0.8 * i / n_archs + 0.1 * float(torch.rand((), generator=g)), 4)
            done[arch, int(seed)] = {"arch": arch, "seed": int(seed), "val": acc, "test": acc, "params": 100 + i,
                                     "seconds": 0.0, "val_loss": round(2.5 - 2 * acc, 4)}
    _write(Path(out), settings, done, order)
    return _ordered(done, order)


def uniform_archs() -> list[str]:
    """The five NB201 archs with one op on every edge (all ``none`` included).

    Example:
        >>> uniform_archs()[1]
        '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|'
    """
    from gmgraph.spaces import nb201

    edges = [f"{i}<-{j}" for i in range(1, 4) for j in range(i)]
    return [format_nb201(dict.fromkeys(edges, op)) for op in nb201.OPS]


def _arch_order(n_archs: int, sample_seed: int, uniform: bool) -> list[str]:
    sampled = sample_archs(n_archs, sample_seed)
    return sampled + [a for a in uniform_archs() if a not in sampled] if uniform else sampled


def _train_all(todo: list[tuple[str, int]], dataset: str, schedule: Schedule, workers: int, loaders):
    """Yield ``(arch, seed, row)`` as trainings finish, in this process or in ``workers`` others."""
    if workers == 1:
        for arch, seed in todo:
            yield arch, seed, _train_one(arch, seed, schedule, loaders)
        return
    with worker_pool(workers, "fork", _start_worker, (dataset, schedule.batch_size)) as pool:
        jobs = {pool.submit(_train_in_worker, arch, seed, schedule): (arch, seed) for arch, seed in todo}
        for job in as_completed(jobs):
            yield (*jobs[job], job.result())


def _train_one(arch: str, seed: int, schedule: Schedule, loaders) -> dict:
    sizes = {f: getattr(schedule, f) for f in ("C", "N", "epochs", "lr", "momentum", "weight_decay", "grad_clip")}
    return train_arch(arch, seed=seed, loaders=loaders, **sizes)


_WORKER: dict = {}


def _start_worker(dataset: str, batch_size: int) -> None:
    torch.set_num_threads(1)
    _WORKER["loaders"] = load_data(dataset, batch_size)


def _train_in_worker(arch: str, seed: int, schedule: Schedule) -> dict:
    return _train_one(arch, seed, schedule, _WORKER["loaders"])


def load_data(dataset: str, batch_size: int = 64):
    """The loaders a ground truth trains on (``synthetic``: a tiny 1x8x8 set for tests).

    Example:
        >>> load_data("digits").train.dataset[0][0].shape
        torch.Size([1, 8, 8])
    """
    from gmgraph import data

    if dataset == "synthetic":  # tiny and 1-channel, for tests and examples
        return data.load("synthetic", batch_size=batch_size, shape=(1, 8, 8), size=(64, 32, 32))
    return data.load(dataset, batch_size=batch_size)


def _sizes(loaders) -> tuple[int, int, int]:
    from gmgraph import data

    return data.info(loaders).sizes


def _settings(n_archs, seeds, schedule: Schedule, dataset: str, sample_seed: int, sizes,
              uniform: bool = False) -> dict:
    extra = {"uniform_archs": True} if uniform else {}  # absent in files made before the option
    return {
        **extra,
        "dataset": dataset,
        "split_seed": 0,
        "sizes": {"train": sizes[0], "val": sizes[1], "test": sizes[2]},
        "n_archs": int(n_archs),
        "seeds": [int(s) for s in seeds],
        "sample_seed": int(sample_seed),
        "sampler": "gmgraph.nasbench.local.sample_archs(n_archs, sample_seed)",
        "network": "gmgraph.spaces.nb201.network(arch, C, N) (derived, pruned, fresh init)",
        "schedule": dataclasses.asdict(schedule),
        "accuracy": "fraction correct; val and test are data.load(dataset) splits (split_seed 0)",
    }


def _resume(out: Path, settings: dict) -> dict[tuple[str, int], dict]:
    side = out.with_suffix(".json")
    if not out.exists():
        return {}
    if side.exists():
        saved = json.loads(side.read_text())
        # more archs or more seeds extend a ground truth; anything else would mix two of them
        differ = [k for k in settings if k not in _GROWS and saved.get(k) != settings[k]]
        if differ:
            raise ConfigError(
                f"{out} was generated with other settings ({', '.join(differ)}); "
                "choose another output file or delete it"
            )
    return {(row["arch"], row["seed"]): row for row in read_rows(out)}


def _ordered(done: dict, order: Sequence[str]) -> list[dict]:
    rank = {a: i for i, a in enumerate(order)}
    return sorted(done.values(), key=lambda r: (rank[r["arch"]], r["seed"]))


_GROWS = ("n_archs", "seeds")


def _write(out: Path, settings: dict, done: dict, order: Sequence[str]) -> None:
    # the side file describes the rows in the file, which may span several runs
    corners = set(uniform_archs()) if settings.get("uniform_archs") else set()
    sampled = {a for a, _ in done} - corners
    settings = {**settings, "n_archs": len(sampled), "seeds": sorted({s for _, s in done})}
    write_rows(out, _ordered(done, order))
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2) + "\n"))


def write_rows(out: str | Path, rows: Iterable[Mapping]) -> None:
    """``rows`` as a ground-truth CSV (:data:`COLUMNS`), written atomically (no side file).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> write_rows(path, [{"arch": sample_archs(1)[0], "seed": 0, "val": 0.5, "test": 0.25,
        ...                    "params": 10, "seconds": 1.0, "val_loss": float("nan")}])
        >>> read_rows(path)[0]["test"]
        0.25
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in COLUMNS})
    atomic_write(Path(out), lambda tmp: Path(tmp).write_text(text.getvalue()))


def _fmt(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------ reading


def read_rows(path: str | Path | None = None) -> list[dict]:
    """Every row of a ground-truth CSV, typed (``seed``/``params`` int, the rest float).

    Raises:
        DataError: the file is missing or malformed.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise DataError(f"no ground truth at {path}; generate it with benchmarks/groundtruth.py")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(OPTIONAL) - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path} lacks column(s) {sorted(missing)}; expected {list(COLUMNS)}")
        try:
            return [_typed(row) for row in reader]
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path} line {reader.line_num}: {exc}") from exc


def _typed(row: dict) -> dict:
    parse_nb201(row["arch"])  # a malformed string fails here, with the line number above
    return {"arch": row["arch"], "seed": int(row["seed"]), "val": float(row["val"]),
            "test": float(row["test"]), "params": int(row["params"]), "seconds": float(row["seconds"]),
            "val_loss": float(row.get("val_loss") or "nan")}


def load_groundtruth(path: str | Path | None = None, *, split: str = "all") -> dict[str, float]:
    """NB201 string -> accuracy averaged over training seeds.

    Args:
        path: a CSV written by :func:`generate`; default ``benchmarks/data/digits201.csv``.
        split: ``"all"`` (val and test pooled, weighted by their sizes: the least
            noisy), ``"val"`` or ``"test"``.

    Raises:
        DataError: missing or malformed file. ConfigError: unknown ``split``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> _ = generate(1, [0, 1], out=path, schedule=Schedule(C=2, N=1, epochs=1),
        ...              dataset="synthetic", progress=False)
        >>> len(load_groundtruth(path))
        1
    """
    return {arch: float(np.mean(list(v.values()))) for arch, v in per_seed(path, split=split).items()}


def per_seed(path: str | Path | None = None, *, split: str = "all") -> dict[str, dict[int, float]]:
    """NB201 string -> {seed: accuracy} (see :func:`load_groundtruth` for ``split``)."""
    if split not in ("all", "val", "test"):
        raise ConfigError(f"unknown split {split!r}; accepted: all, val, test")
    weights = _split_weights(path)
    out: dict[str, dict[int, float]] = {}
    for row in read_rows(path):
        if split == "all":
            acc = (weights[0] * row["val"] + weights[1] * row["test"]) / sum(weights)
        else:
            acc = row[split]
        out.setdefault(row["arch"], {})[row["seed"]] = acc
    return out


def _split_weights(path: str | Path | None) -> tuple[float, float]:
    """(val size, test size) from the side file; equal weights if it is missing."""
    side = (Path(path) if path is not None else DEFAULT_PATH).with_suffix(".json")
    try:
        sizes = json.loads(side.read_text())["sizes"]
        return float(sizes["val"]), float(sizes["test"])
    except (OSError, KeyError, TypeError, ValueError):
        return 1.0, 1.0


def seed_agreement(path: str | Path | None = None, *, split: str = "all", per_side: int = 1,
                   top: float | None = None) -> dict[str, float]:
    """Ranking agreement between training seeds: the ceiling of any estimate.

    Kendall tau and Spearman rho between two disjoint groups of ``per_side``
    seeds (each side's accuracy averaged over its seeds), over the
    architectures trained with all of them, averaged over every such pair of
    groups. ``per_side=1`` is seed against seed; ``per_side=2`` (with 4 seeds)
    is how well a 2-seed mean agrees with another 2-seed mean, the ceiling
    against a ground truth that averages 2 seeds. ``top`` (a fraction) keeps
    only the architectures in that top share of the mean over all their seeds,
    as a "tau over the true top 20 %" selects them: the ceiling of that tau.

    Raises:
        DataError: fewer than ``2 * per_side`` seeds, or fewer than 2 shared architectures.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> accs = {0: (0.5, 0.7, 0.9), 1: (0.6, 0.9, 0.8)}   # seed -> accuracy of 3 archs
        >>> rows = [f"{a},{s},{acc},{acc},1,1" for s in accs for a, acc in zip(sample_archs(3), accs[s])]
        >>> _ = path.write_text(",".join(COLUMNS) + "\\n" + "\\n".join(rows) + "\\n")
        >>> agreement = seed_agreement(path)
        >>> round(agreement["kendall_tau"], 3), agreement["pairs"], agreement["n"]
        (0.333, 1, 3)
        >>> seed_agreement(path, top=0.6)["kendall_tau"], seed_agreement(path, top=0.6)["n"]   # the best 2 swap
        (-1.0, 2)
    """
    table = per_seed(path, split=split)
    if top is not None:
        table = _top_share(table, top)
    seeds = sorted({s for accs in table.values() for s in accs})
    taus, rhos, n = [], [], 0
    for a, b in _disjoint_groups(seeds, per_side):
        both = [accs for accs in table.values() if all(s in accs for s in a + b)]
        if len(both) >= 2:
            x = [float(np.mean([r[s] for s in a])) for r in both]
            y = [float(np.mean([r[s] for s in b])) for r in both]
            taus.append(kendall_tau(x, y))
            rhos.append(spearman(x, y))
            n = max(n, len(both))
    if not taus:
        raise DataError(f"seed agreement needs {2 * per_side} seeds that trained at least two common architectures")
    return {"kendall_tau": float(np.mean(taus)), "spearman": float(np.mean(rhos)), "pairs": len(taus), "n": n}


def _top_share(table: dict[str, dict[int, float]], fraction: float) -> dict[str, dict[int, float]]:
    """The archs of ``table`` in the top ``fraction`` by their mean over all seeds (at least 2)."""
    from ranking_stats import top_indices  # the same share rule as the ranking's "tau top-20%"

    archs = list(table)
    means = [float(np.mean(list(table[arch].values()))) for arch in archs]
    return {archs[i]: table[archs[i]] for i in top_indices(means, fraction)}


def _disjoint_groups(seeds: Sequence[int], k: int):
    """Unordered pairs of disjoint k-subsets of ``seeds``."""
    for a in itertools.combinations(seeds, k):
        rest = [s for s in seeds if s not in a]
        for b in itertools.combinations(rest, k):
            if a < b:
                yield a, b


# ------------------------------------------------------------------ quality of a ground truth


def quality(path: str | Path | None = None, *, split: str = "all", above: float | None = None) -> dict[str, float]:
    """How well a ground truth separates architectures, from its rows.

    Returns the spread of the per-arch mean accuracy (min, 5th, 50th and 95th
    percentile, max, archs within 1 point of the best), the mean per-arch seed
    SD against the SD between arch means (and their ratio; the issue's bar is
    at most 1/3), and ICC(1), the share of the variance of one training run
    that is due to the architecture (one-way random effects, archs trained
    with every seed only). ``above`` keeps only archs whose mean accuracy
    exceeds it, e.g. to leave out the cells with no path to the output, which
    sit at chance and inflate the between-arch SD.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gt.csv"
        >>> accs = {0: (0.5, 0.7, 0.9), 1: (0.52, 0.68, 0.9)}   # seed -> accuracy of 3 archs
        >>> rows = [f"{a},{s},{acc},{acc},1,1" for s in accs for a, acc in zip(sample_archs(3), accs[s])]
        >>> _ = path.write_text(",".join(COLUMNS[:6]) + "\\n" + "\\n".join(rows) + "\\n")
        >>> q = quality(path)
        >>> q["archs"], round(q["icc"], 3), round(q["seed_sd"], 4), q["within_1pt"]
        (3, 0.997, 0.0115, 1)
    """
    table = per_seed(path, split=split)
    seeds = sorted({s for accs in table.values() for s in accs})
    full = np.array([[accs[s] for s in seeds] for accs in table.values() if all(s in accs for s in seeds)])
    if above is not None and len(full):
        full = full[full.mean(axis=1) > above]
    if full.shape[0] < 2 or full.shape[1] < 2:
        raise DataError("quality needs at least two archs trained with at least two common seeds")
    means = full.mean(axis=1)
    n, k = full.shape
    ms_between = k * means.var(ddof=1)
    ms_within = ((full - means[:, None]) ** 2).sum() / (n * (k - 1))
    seed_sd = float(np.sqrt(ms_within))
    between_sd = float(means.std(ddof=1))
    p5, p50, p95 = np.percentile(means, [5, 50, 95])
    return {
        "archs": n, "seeds": k,
        "min": float(means.min()), "p5": float(p5), "median": float(p50), "p95": float(p95), "max": float(means.max()),
        "within_1pt": int((means >= means.max() - 0.01).sum()),
        "seed_sd": seed_sd, "between_sd": between_sd, "sd_ratio": seed_sd / between_sd if between_sd else math.inf,
        "icc": float((ms_between - ms_within) / (ms_between + (k - 1) * ms_within)),
    }
