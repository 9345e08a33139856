"""``gmgraph rank``: how well a zero-cost metric ranks NAS-Bench-201 architectures.

    $ gmgraph rank --metric params --against nb201:cifar10 --sample 100 --seed 0 --device auto
    device: cpu
    ...
    wrote rank-params-cifar10.csv
    kendall_tau=0.5... spearman=0.7...

The last line is always ``kendall_tau=<x> spearman=<y>``, for scripts.
``--device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; default ``auto``: a GPU
when torch sees one) says where the network runs; the first line names it.

>>> from gmgraph.cli import main
>>> main(["rank", "--metric", "params", "--sample", "5", "--csv", "/dev/null", "--quiet"])  # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gmgraph.commands import HELP
from gmgraph.registry import DATA_FREE, METRICS, NB201_BENCHMARKS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "rank", help=HELP["rank"],
        description="Score sampled NAS-Bench-201 architectures with a zero-cost metric on the real network "
                    "(C=16, N=5) and print Kendall tau and Spearman rho against the benchmark's accuracies.")
    p.add_argument("--metric", required=True, help=f"one of {', '.join(METRICS)}")
    p.add_argument("--against", default="nb201:cifar10", help=f"one of {', '.join(NB201_BENCHMARKS)} (default nb201:cifar10)")
    p.add_argument("--sample", type=int, default=1000, help="architectures drawn from the 15,625 (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seeds the sample, the initial weights and the batch (default 0)")
    p.add_argument("--split", default="test", help="the table's test or val accuracy (default test)")
    p.add_argument("--epochs", type=int, default=200, help="the table's 200- or 12-epoch accuracy (default 200)")
    p.add_argument("--data", help=f"images for data-dependent metrics (not {', '.join(DATA_FREE)}): digits, synthetic, "
                                  "cifar10, cifar100, ... (default digits, upscaled to the benchmark's size)")
    p.add_argument("--data-root", help="folder holding the dataset files (not needed for digits/synthetic)")
    p.add_argument("--batch-size", type=int, default=64, help="images in the one scoring batch (default 64)")
    p.add_argument("--csv", type=Path, help="per-architecture scores (default rank-<metric>-<dataset>.csv)")
    p.add_argument("--width", type=int, default=16, help="NB201's C (default 16, the table's network)")
    p.add_argument("--cells", type=int, default=5, help="NB201's N (default 5, the table's network)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N: where the network runs (default auto: a GPU when torch sees one)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)


def _describe_device(device) -> str:
    """``cpu``, or ``cuda:0 (<GPU name>)``."""
    import torch

    if device.type != "cuda":
        return str(device)
    index = torch.cuda.current_device() if device.index is None else device.index
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def run(args: argparse.Namespace) -> int:
    from gmgraph.config import check_positive_int
    from gmgraph.device import resolve_device
    from gmgraph.errors import ConfigError
    from gmgraph.nasbench import nb201 as table
    from gmgraph.rank_job import check_metric, image_batch, parse_against, rank, write_csv
    from gmgraph.scores.zero_cost import DATA_FREE

    metric, dataset = check_metric(args.metric), parse_against(args.against)
    for name in ("sample", "width", "cells", "batch_size"):
        check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    if args.sample > table.SIZE:
        raise ConfigError(f"--sample must be at most {table.SIZE:,} (the architectures of NAS-Bench-201), "
                          f"got {args.sample:,}")
    table.query(0, dataset, args.split, args.epochs)  # --split and --epochs answer now, not after the data
    device = resolve_device(args.device)  # a bad name or a missing GPU fails before any work
    print(f"device: {_describe_device(device)}")
    notes, batch = [], None
    if metric in DATA_FREE:
        if args.data is not None:
            notes.append(f"note: {metric} is data-free; --data {args.data} is not used")
    else:
        batch, note = image_batch(args.data or "digits", dataset, root=args.data_root,
                                  batch_size=args.batch_size, seed=args.seed)
        notes += [note] if note else []
    if (args.width, args.cells) != (16, 5):
        notes.append(f"note: scoring C={args.width}, N={args.cells}; the table's networks are C=16, N=5")
    for note in notes:
        print(note)
    result = rank(metric, dataset, n=args.sample, seed=args.seed, split=args.split, epochs=args.epochs,
                  batch=batch, width=args.width, cells=args.cells, progress=not args.quiet, device=device)
    path = write_csv(result, args.csv or Path(f"rank-{metric}-{dataset}.csv"))
    for note in result.notes:
        print(f"note: {note}")
    print(f"scored {len(result.rows)} architectures with {metric} in {result.seconds:.1f} s "
          f"against nb201:{dataset} ({args.split}, {args.epochs} epochs)")
    print(f"wrote {path}")
    print(f"kendall_tau={result.kendall_tau:.4f} spearman={result.spearman:.4f}")
    return 0
