"""How well a zero-cost proxy ranks NAS-Bench-201 architectures: the job behind ``gmgraph rank``.

A driver of the runs layer (like :mod:`gmgraph.search_job` behind ``gmgraph search``): it uses the spaces,
the scores, the data and the NB201 table, so it sits above all of them.

Each sampled architecture is scored with :func:`gmgraph.scores.zero_cost` on
the real NB201 network (C=16, N=5; the classes and input size of the
benchmark's dataset) and the scores are compared with the table::

    >>> result = rank("params", "cifar10", n=20, seed=0, progress=False)
    >>> round(result.kendall_tau, 2) > 0.3, len(result.rows)
    (True, 20)

One supernet is built and initialised once (seeded); ``zero_cost`` derives a
private copy of each architecture from it, inheriting its weights. As the
supernet is untrained that is a fresh initialisation, the one zero-cost
papers score, with one difference: two architectures that share an op at
the same place start from the same weights there (common random numbers),
which removes initialisation noise from comparisons instead of adding it.

``params`` and ``flops`` keep the ops of edges that never reach the cell
output (``prune=False``), which is how NAS-Bench-201 counts them; every other
metric scores the pruned network, since dead ops cannot change its output.

``device`` (``auto``: a GPU when torch sees one) is where the network and the
batch live; the weights are drawn on the CPU first, so a seed gives the same
network on every device::

    >>> rank("params", "cifar10", n=3, progress=False, device="cpu").device
    'cpu'
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gmgraph import registry
from gmgraph.arch import format_nb201
from gmgraph.device import resolve_device, to_device
from gmgraph.errors import ConfigError
from gmgraph.files import atomic_write
from gmgraph.nasbench import nb201 as table
from gmgraph.scores.zero_cost import DATA_FREE, METRICS, Batch, zero_cost
from gmgraph.search.rank_correlation import kendall_tau, spearman

BENCHMARKS = registry.NB201_BENCHMARKS
"""Accepted values of ``--against``."""

SHAPES = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16-120": (120, 16)}
"""dataset -> (classes, image side) of the network NAS-Bench-201 trained on it."""

SIZE_METRICS = ("params", "flops")  # counted on the unpruned network, like the table

CSV_COLUMNS = ("index", "arch_str", "score", "true_accuracy")


@dataclass
class RankResult:
    """Per-architecture scores and their agreement with the table.

    Attributes:
        rows: ``{"index", "arch_str", "score", "true_accuracy"}`` per architecture.
        kendall_tau, spearman: over the rows with a finite-or-infinite score (NaN dropped).
        notes: plain sentences worth showing the user (data substitutions, dropped rows).
        device: where the network ran (``cpu``, ``cuda:0``, ...).
    """

    metric: str
    dataset: str
    split: str
    epochs: int
    rows: list[dict]
    kendall_tau: float
    spearman: float
    seconds: float
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"


def parse_against(text: str) -> str:
    """``"nb201:cifar10"`` -> ``"cifar10"``.

    Raises:
        ConfigError: anything but one of :data:`BENCHMARKS`.

    Example:
        >>> parse_against("nb201:imagenet16-120")
        'imagenet16-120'
    """
    name = text.strip().lower() if isinstance(text, str) else text
    if name not in BENCHMARKS:
        raise ConfigError(f"--against {text!r} is not accepted; choose one of {', '.join(BENCHMARKS)}")
    return name.split(":", 1)[1]


def check_metric(metric: str) -> str:
    """``metric`` if it is a zero-cost metric, else ConfigError listing them."""
    if metric not in METRICS:
        raise ConfigError(f"unknown zero-cost metric {metric!r}; accepted: {', '.join(METRICS)}")
    return metric


def rank(
    metric: str,
    dataset: str = "cifar10",
    *,
    n: int = 1000,
    seed: int = 0,
    split: str = "test",
    epochs: int = 200,
    batch: Batch | None = None,
    width: int = 16,
    cells: int = 5,
    progress: bool | Callable[[int, float], None] = True,
    device: str | torch.device = "auto",
) -> RankResult:
    """Score ``n`` sampled NB201 architectures with ``metric`` and correlate with the table.

    Args:
        metric: one of :data:`gmgraph.scores.zero_cost.METRICS`.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet16-120``: the column of
            the table, and the classes and input size of the network.
        n, seed: the sample, ``gmgraph.nasbench.nb201.sample(n, seed)``; ``seed``
            also initialises the supernet.
        split, epochs: the table's accuracy (``test``/``val``, 200/12 epochs).
        batch: ``(x, y)`` for data-dependent metrics; default (data-free
            metrics only) a zero batch of the network's input shape.
        width, cells: NB201's C and N (the table's network is 16, 5).
        progress: show a progress line (True), nothing (False), or call
            ``progress(done, score)`` after each architecture.
        device: ``auto`` (default: CUDA when available), ``cpu``, ``cuda``,
            ``cuda:N`` or a ``torch.device``: where the network and the batch live.

    Raises:
        ConfigError: unknown metric, dataset or device (CUDA asked for without
            a GPU), or no batch for a data-dependent metric.
        DataError: bad ``n``/``seed``/``split``/``epochs`` (from the table).
        GmGraphError: every score equal (a rank correlation is undefined).
    """
    from gmgraph.graph import trace
    from gmgraph.progress import Progress
    from gmgraph.spaces import nb201 as space

    check_metric(metric)
    device = resolve_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if dataset not in SHAPES:
        raise ConfigError(f"unknown NAS-Bench-201 dataset {dataset!r}; accepted: {', '.join(SHAPES)}")
    table.query(0, dataset, split, epochs)  # bad split/epochs fail before any work
    archs = table.sample(n, seed)
    classes, side = SHAPES[dataset]
    if batch is None:
        if metric not in DATA_FREE:
            raise ConfigError(f"metric {metric!r} needs a batch of images (it is not data-free)")
        batch = (torch.zeros(1, 3, side, side), None)
    batch = to_device(batch, device)  # once, not once per architecture
    with torch.random.fork_rng(devices=[]):
        # The CPU stream only: the same weights on every device, and no GPU stream reseeded behind the fork.
        torch.default_generator.manual_seed(seed)
        gm = trace(space.supernet(width, cells, classes, in_channels=3)).to(device)
    bar = Progress(f"rank {metric}", total=len(archs), quiet=progress is not True)
    start, rows = time.perf_counter(), []
    for arch in archs:
        score = zero_cost(gm, arch, metric, batch, seed=seed, prune=metric not in SIZE_METRICS, device=device)
        rows.append({"index": table.index_of(arch), "arch_str": format_nb201(arch), "score": score,
                     "true_accuracy": table.query(arch, dataset, split, epochs)})
        bar.update(score=score)
        if callable(progress):
            progress(len(rows), score)
    seconds = time.perf_counter() - start
    tau, rho, notes = _correlate(rows)
    bar.close(kendall_tau=tau)
    return RankResult(metric, dataset, split, epochs, rows, tau, rho, seconds, notes, str(device))


def image_batch(
    data_name: str, dataset: str, *, root: str | Path | None = None, batch_size: int = 64, seed: int = 0
) -> tuple[Batch, str | None]:
    """One fixed training batch shaped for ``dataset``'s network, and a note if it is other data.

    Images are resized to the benchmark's side and given 3 channels (digits:
    8x8 grey upscaled). The note says plainly when the images are not the
    benchmark's own dataset, since then a data-dependent score is measured
    on a different input distribution than the table's accuracies.

    Raises:
        DataError: unknown data or missing files (from :func:`gmgraph.data.load`).

    Example:
        >>> (x, y), note = image_batch("digits", "cifar10", batch_size=8)
        >>> tuple(x.shape), note.startswith("note: images are digits")
        ((8, 3, 32, 32), True)
    """
    from gmgraph import data

    classes, side = SHAPES[dataset]
    name = data_name.strip().lower()
    if name == "synthetic":
        loaders = data.load(name, batch_size=batch_size, seed=seed, shape=(3, side, side),
                            num_classes=classes, size=(batch_size, 1, 1))
    else:
        loaders = data.load(name, root=root, batch_size=batch_size, seed=seed, image_size=side, channels=3)
    x, y = next(iter(loaders.train))
    if name == dataset:
        return (x, y), None
    return (x, y), (f"note: images are {name} (as 3x{side}x{side}), not {dataset}, the benchmark's dataset; "
                    "a data-dependent score may rank differently on the real data")


def _correlate(rows: list[dict]) -> tuple[float, float, list[str]]:
    kept = [r for r in rows if not math.isnan(r["score"])]
    notes = []
    if len(kept) < len(rows):
        notes.append(f"{len(rows) - len(kept)} architecture(s) scored NaN and are left out of the correlations")
    scores, truth = [r["score"] for r in kept], [r["true_accuracy"] for r in kept]
    return kendall_tau(scores, truth), spearman(scores, truth), notes


def write_csv(result: RankResult, path: str | Path) -> Path:
    """Write the per-architecture rows of ``result`` to ``path`` (atomically).

    Example:
        >>> import tempfile, pathlib
        >>> r = rank("params", n=3, progress=False)
        >>> p = write_csv(r, pathlib.Path(tempfile.mkdtemp()) / "r.csv")
        >>> p.read_text().splitlines()[0]
        'index,arch_str,score,true_accuracy'
    """
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({**row, "score": repr(row["score"])})
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text.getvalue()))
