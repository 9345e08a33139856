"""Elastic candidates (one shared tensor) against copies and against the plain subnet: memory and step time.

Two measures, each against a baseline measured in the same run:

* **memory**: the parameters a supernet holds, divided by those of its largest
  subnet (``derive`` at every label's largest value, :mod:`gmgraph.label_sizes`).
  Elastic rules (``elastic_kernels``, ``elastic_expansions``) against today's
  copies rules (``conv_kernels``, ``inverted_residual_expansions``, one module
  per value) on torchvision models, and the OFA space when ``gmgraph.spaces.ofa``
  exists. Target: elastic <= 1.05x.
* **speed**: one single-path training step (forward, backward, SGD step) of a
  subnet run inside the elastic supernet (``with gmgraph.use(gm, arch)``)
  against the same subnet derived as a plain network, MobileNetV2 with elastic
  kernels and with elastic expansions: the largest, the smallest and random
  subnets. Rounds alternate elastic and plain (which goes first alternates too);
  each round's ratio is elastic / plain of that round, the table gives the median
  ratio and a 95% bootstrap interval of it over the rounds. Target: <= 1.15x.
  The OFA space (nested Choices: kernel inside expansion inside depth) is
  timed the same way when ``gmgraph.spaces.ofa`` exists.

Run: ``.venv/bin/python benchmarks/bench_elastic.py [--rounds 9 --threads 2]``
(``--quick``: seconds, small models, for the test). Writes
benchmarks/results/elastic.md (``--out``: another folder).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph.graph import choices  # noqa: E402
from gmgraph.label_sizes import largest, smallest  # noqa: E402
from gmgraph.passes.derive import derive  # noqa: E402
from gmgraph.spaces import from_model  # noqa: E402

TARGET_MEMORY = 1.05
TARGET_SPEED = 1.15


def model(name: str) -> nn.Module:
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(num_classes=10)


def params(module: nn.Module) -> int:
    """Parameters held, each shared tensor once."""
    return sum(p.numel() for p in module.parameters())


def extreme(gm: nn.Module, pick) -> dict[str, str]:
    """Every label at its largest (``pick=largest``) or smallest value."""
    return {label: pick(group) for label, group in choices(gm).items()}


def memory_row(model_name: str, rule_name: str, rule) -> list:
    """[model, rule, supernet params, largest subnet params, ratio]."""
    gm = gmgraph.trace(from_model.supernetify(model(model_name), rule))
    held, widest = params(gm), params(derive(gm, extreme(gm, largest)))
    return [model_name, rule_name, f"{held:,}", f"{widest:,}", f"{held / widest:.3f}"]


def memory_rows(quick: bool) -> list[list]:
    kernels = "mobilenet_v3_small" if quick else "resnet50"
    expansions = ["mobilenet_v3_small"] if quick else ["mobilenet_v2", "efficientnet_b0"]
    cases = [(kernels, "kernels", (3, 5, 7))] + [(name, "expansions", (3, 4, 6)) for name in expansions]
    rules = {"kernels": (("elastic_kernels", from_model.elastic_kernels), ("conv_kernels", from_model.conv_kernels)),
             "expansions": (("elastic_expansions", from_model.elastic_expansions),
                            ("inverted_residual_expansions",
                             lambda r: from_model.inverted_residual_expansions(r, allow_skip=False)))}
    rows = []
    for name, kind, values in cases:
        for rule_name, make in rules[kind]:
            rows.append(memory_row(name, f"{rule_name}({values})", make(values)))
            print(rows[-1], flush=True)
    rows.append(ofa_row(quick))
    return rows


def ofa_supernet(quick: bool) -> nn.Module | None:
    """The OFA MobileNetV3 supernet, traced (width 0.25 and 10 classes in ``--quick``); None if not built yet."""
    if importlib.util.find_spec("gmgraph.spaces.ofa") is None:
        return None
    from gmgraph.spaces import ofa

    torch.manual_seed(0)
    options = {"num_classes": 10, "width_mult": 0.25, "strides": ofa.strides_for(2), "divisor": 4} if quick else {}
    return gmgraph.trace(ofa.supernet(**options))


def ofa_row(quick: bool) -> list:
    """The OFA space's supernet against its largest subnet (d4, k7, e6 everywhere)."""
    gm = ofa_supernet(quick)
    name = "OFA MobileNetV3" + (" (w0.25)" if quick else " (w1.0, 1000 classes)")
    if gm is None:
        return [name, "gmgraph.spaces.ofa", "not built yet", "", ""]
    held, widest = params(gm), params(derive(gm, extreme(gm, largest)))
    return [name, "ofa.supernet()", f"{held:,}", f"{widest:,}", f"{held / widest:.3f}"]


class Step:
    """One single-path SGD training step of ``net`` on a fixed batch; ``arch`` runs it inside a supernet."""

    def __init__(self, net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], arch: dict | None = None):
        self.net, self.batch, self.arch = net.train(), batch, arch
        self.groups = choices(net) if arch is not None else None
        self.optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def __call__(self) -> None:
        x, y = self.batch
        self.optimizer.zero_grad(set_to_none=True)
        if self.arch is None:
            loss = F.cross_entropy(self.net(x), y)
        else:
            with gmgraph.graph.running(self.groups, arch=self.arch):
                loss = F.cross_entropy(self.net(x), y)
        loss.backward()
        self.optimizer.step()


def timed(step: Step, steps: int) -> float:
    """Milliseconds of one step, the mean of ``steps``."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def bootstrap(ratios: list[float], seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """A 95% percentile bootstrap interval of the median of ``ratios``.

    >>> bootstrap([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    rng = np.random.default_rng(seed)
    values = np.asarray(ratios)
    medians = np.median(values[rng.integers(0, len(values), (draws, len(values)))], axis=1)
    return float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def speed_rows(quick: bool, rounds: int, steps: int, batch: int, size: int, threads: int) -> list[list]:
    generator = torch.Generator().manual_seed(0)
    data = (torch.randn(batch, 3, size, size, generator=generator), torch.randint(0, 10, (batch,), generator=generator))
    net = "mobilenet_v3_small" if quick else "mobilenet_v2"
    spaces = {f"{net} elastic_kernels((3, 5, 7))": from_model.elastic_kernels((3, 5, 7)),
              f"{net} elastic_expansions((3, 4, 6))": from_model.elastic_expansions((3, 4, 6))}
    graphs = {name: gmgraph.trace(from_model.supernetify(model(net), rule)) for name, rule in spaces.items()}
    ofa = ofa_supernet(quick)
    if ofa is not None:
        graphs["OFA MobileNetV3" + (" (w0.25)" if quick else "")] = ofa
    rows = []
    for space_name, gm in graphs.items():
        archs = {"largest": extreme(gm, largest), "smallest": extreme(gm, smallest)}
        for i in range(3):
            archs[f"random {i + 1}"] = gmgraph.sample(gm, torch.Generator().manual_seed(i))
        if quick:
            archs = {"random 1": archs["random 1"]}
        for arch_name, arch in archs.items():
            rows.append([threads, *speed_row(space_name, arch_name, gm, arch, data, rounds, steps)])
            print(rows[-1], flush=True)
    return rows


def speed_row(space_name: str, arch_name: str, gm, arch: dict, data, rounds: int, steps: int) -> list:
    """[space, subnet, elastic ms, plain ms, median ratio, 95% interval, spread of the plain times]."""
    steps_of = {"elastic": Step(gm, data, arch), "plain": Step(derive(gm, arch), data)}
    for step in steps_of.values():  # warm-up: allocator, first-call dispatch
        timed(step, 2)
    times: dict[str, list[float]] = {name: [] for name in steps_of}
    for r in range(rounds):
        for name in (("elastic", "plain") if r % 2 == 0 else ("plain", "elastic")):
            times[name].append(timed(steps_of[name], steps))
    ratios = [e / p for e, p in zip(times["elastic"], times["plain"])]
    low, high = bootstrap(ratios)
    plain = times["plain"]
    spread = (max(plain) - min(plain)) / statistics.median(plain)
    return [space_name, arch_name, f"{statistics.median(times['elastic']):.1f}", f"{statistics.median(plain):.1f}",
            f"{statistics.median(ratios):.3f}", f"{low:.3f}-{high:.3f}", f"{spread:.0%}"]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=9, help="alternating rounds (default 9)")
    p.add_argument("--steps", type=int, default=3, help="steps timed per round and side (default 3)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--threads", default="2,1",
                   help="torch thread counts to time with, each pinned to as many cores (default 2,1)")
    p.add_argument("--quick", action="store_true", help="small models, one subnet, 2 rounds: for the test")
    p.add_argument("--out", type=Path, default=None, help="folder for elastic.md (default benchmarks/results)")
    args = p.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    rounds, steps, batch, size = (2, 1, 2, 16) if args.quick else (args.rounds, args.steps, args.batch, args.image_size)
    start = time.perf_counter()
    with pinned(max(thread_counts)):
        memory = memory_rows(args.quick)
    speed = []
    for threads in thread_counts:
        with pinned(threads):
            speed += speed_rows(args.quick, rounds, steps, batch, size, threads)
    command = " ".join(["benchmarks/bench_elastic.py", *(sys.argv[1:] if argv is None else argv)])
    title = "Elastic candidates: parameters held and single-path step time"
    text = (f"# {title}\n\nMachine: {_table.machine()}\n\n"
            f"## Memory: parameters held / the largest subnet's (target elastic <= {TARGET_MEMORY}x)\n\n"
            + _table.markdown(["model", "rule", "supernet params", "largest subnet params", "ratio"], memory)
            + f"\n\n## Speed: a training step inside the supernet / the derived plain subnet "
              f"(target <= {TARGET_SPEED}x)\n\n"
            + _table.markdown(["threads", "space", "subnet", "elastic ms", "plain ms", "ratio (median)",
                               "95% interval", "plain spread"], speed)
            + f"\n\nCommand: `.venv/bin/python {command}` ({(time.perf_counter() - start) / 60:.1f} min). "
              f"Step: forward + backward + SGD (momentum 0.9) on one batch of {batch} images of {size}x{size}, "
              f"10 classes, threads pinned to as many cores; {rounds} rounds alternating elastic and plain "
              f"({steps} steps each, mean), ratio per round, median and 95% bootstrap interval of the median over "
              "rounds. 'plain spread' is (max - min) / median of the plain times over rounds: the machine's noise. "
              "Largest/smallest: every label at its largest/smallest value (gmgraph.label_sizes); random: uniform "
              "draws with seeds 0-2. Memory: a supernet's parameters (each shared tensor once) over those of "
              "derive(supernet, largest arch); copies rules divide by their own largest subnet.\n")
    print(text)
    folder = args.out if args.out is not None else _table.RESULTS
    return write(folder / "elastic.md", text)


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[None]:
    """``threads`` torch threads on the first ``threads`` cores this process may use; both restored after."""
    before = torch.get_num_threads()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else None
    torch.set_num_threads(threads)
    if cores is not None:
        os.sched_setaffinity(0, cores[:threads])
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if cores is not None:
            os.sched_setaffinity(0, cores)


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    from gmgraph.files import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))  # makes the folder too


if __name__ == "__main__":
    main()
