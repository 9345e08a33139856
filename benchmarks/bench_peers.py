"""gmgraph side by side with NNI 3.0 on NAS-Bench-201: the same steps, weights and paths, in one process.

Run: ``.venv/bin/python benchmarks/bench_peers.py [--paths 20] [--reps 3] [--darts-reps 8]``. The first
run installs NNI into ``.venv-nni`` (its own environment, sharing this one's torch: ``peer_env.py``)
and reruns the script there; ``--no-install`` says so in one line instead, and ``--peer none`` times
gmgraph against its derived networks only. Writes ``benchmarks/results/peers.md`` (``--out``).

Setting: NB201 C=16 N=5, batch 64 of seeded 3x32x32 inputs, SGD + Nesterov (lr 0.05, momentum 0.9,
weight decay 5e-4), gradient clip 5, Adam for the alphas (3e-4, betas 0.5/0.999, decay 1e-3), one
thread. Both sides get the same weights: gmgraph's supernet (affine BN everywhere, as NNI's; its
BN scales, shifts and statistics randomised so a mix-up of names would show) is copied into NNI's
by name (``nni_names.py``), and the alphas too. Before any step the logits must agree (the table
says how closely) on the first ``--check-paths`` paths in eval mode and on the first in train mode,
and after one step of each side the weights must too.

Rows:

* single path (RSPS): each of ``--paths`` uniformly drawn paths is set on every side (gmgraph's
  trainer with a sampler that returns the path; NNI's ``RandomOneShot`` supernet resampled from a
  memo; gmgraph's ``derive``d network of the path, the lower bound), then ``--reps`` rounds after
  one warm-up round, each round one step per side in rotated order;
* evaluation forward: the same paths, eval mode, no gradients, the same rounds;
* DARTS weight step and architecture step (first order): gmgraph's trainer (``sampler=darts``)
  against NNI's ``DARTS`` supernet, ``--darts-reps`` rounds after one warm-up, each round one
  architecture step (validation batch) and one weight step (training batch) per side, rotated.

gmgraph runs twice: its default supernet, whose ``avg_pool_3x3`` is ``gmgraph.pooling.AvgPool2d``
(torch's pooling bit for bit, on its faster channels-last kernel), and the same supernet with torch's
``nn.AvgPool2d`` (its default before issue 33); the two must give the same logits and, after one step,
the same weights bit for bit. Ratios are gmgraph time / other
time: the median of the per-round ratios and the ratio of sums, each with a 95 % bootstrap interval
over paths (rounds for DARTS; ``paired_ratios.py``). What NNI's steps include is in ``peer_nni.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nni_names  # noqa: E402
import peer_env  # noqa: E402
from _table import RESULTS, machine, markdown  # noqa: E402
from paired_ratios import format_ratio, paired  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph.graph import running  # noqa: E402
from gmgraph.passes import derive  # noqa: E402
from gmgraph.pooling import AvgPool2d  # noqa: E402
from gmgraph.samplers import UniformSampler  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402
from gmgraph.train import SupernetTrainer, TrainConfig  # noqa: E402

TARGET = 0.80  # gmgraph / NNI on every row (issue 33)
GM, TORCH_POOL, PEER, DERIVED = "gmgraph", "gmgraph, torch pool", "NNI 3.0", "gmgraph's derived network"


class FixedPath(UniformSampler):
    """The uniform sampler with the path chosen outside: every side runs the same path each step."""

    path: dict[str, str] | None = None

    def context(self, generator=None):
        self.last_arch = self.path
        return running(self.groups, arch=self.path)


def supernet(args, torch_pool: bool = False) -> torch.fx.GraphModule:
    """The NB201 supernet; ``torch_pool``: its pools as torch's ``nn.AvgPool2d`` (gmgraph's default before)."""
    torch.manual_seed(args.seed)
    net = nb201.supernet(args.C, args.N, args.classes, 3, affine=True)
    if torch_pool:
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is AvgPool2d:
                    setattr(parent, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding,
                                                       count_include_pad=child.count_include_pad))
    return gmgraph.trace(net)


def randomise_norms(gm: nn.Module, seed: int) -> None:
    """BN scales, shifts and statistics away from their 1/0 defaults, so that swapped names change the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in gm.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


def config(sampler: str) -> TrainConfig:
    return TrainConfig(sampler=sampler, device="cpu")


CLIP = config("uniform").grad_clip


def trainer(gm, loaders, sampler: str) -> SupernetTrainer:
    fixed = FixedPath(gm, seed=0) if sampler == "uniform" else None
    return SupernetTrainer(gm, loaders, config(sampler), seed=0, sampler=fixed)


def sgd(params) -> torch.optim.Optimizer:
    c = config("uniform")
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay)


def plain_step(net: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    """A step of an ordinary network (the derived one): zero grads, forward, loss, backward, clip, update."""
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    nn.utils.clip_grad_norm_([p for p in net.parameters() if p.grad is not None], CLIP)
    optimizer.step()


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference of two logit tensors."""
    return float((a - b).abs().max())


class Checks:
    """The largest logit gap seen per comparison; raises before timing when one exceeds float32 rounding."""

    def __init__(self):
        self.gaps: dict[str, float] = {}

    def add(self, what: str, a: torch.Tensor, b: torch.Tensor, exact: bool = False) -> None:
        value = gap(a, b)
        self.gaps[what] = max(self.gaps.get(what, 0.0), value)
        if exact and not torch.equal(a, b):
            raise SystemExit(f"bench_peers: {what}: logits differ by {value:.3g}, expected bit for bit equal")
        scale = float(a.abs().max()) + 1.0
        if not value <= 1e-4 * scale:
            raise SystemExit(f"bench_peers: {what}: logits differ by {value:.3g} (scale {scale:.3g}): "
                             "not the same network, weights or path")

    def text(self) -> str:
        return "; ".join(f"{what}: {'bit for bit equal' if v == 0 else f'max |diff| {v:.2g}'}"
                         for what, v in self.gaps.items())


def rotated(sides: list[str], turn: int) -> list[str]:
    """``sides`` starting at ``turn`` (mod their number): each side leads in turn.

    >>> rotated(["a", "b", "c"], 4)
    ['b', 'c', 'a']
    """
    k = turn % len(sides)
    return sides[k:] + sides[:k]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class SinglePath:
    """The single-path sides on one shared start: gmgraph (two poolings), NNI's RSPS supernet, and per path
    gmgraph's derived network."""

    def __init__(self, args, loaders, nni, checks: Checks):
        self.gm = supernet(args)
        randomise_norms(self.gm, args.seed)
        self.torch_pool = supernet(args, torch_pool=True)
        self.torch_pool.load_state_dict(self.gm.state_dict())
        self.trainers = {GM: trainer(self.gm, loaders, "uniform"),
                         TORCH_POOL: trainer(self.torch_pool, loaders, "uniform")}
        self.nni, self.peer, self.checks = nni, None, checks
        if nni is not None:
            model = nni.supernet("rsps", args.C, args.N, args.classes)
            nni_names.load_by_name(self.gm, model)
            self.peer = peer_steps(nni, model)

    def sides(self, arch: dict[str, str], x, y) -> tuple[dict, dict, list[nn.Module]]:
        """Step and evaluation callables per side for ``arch``, and the modules they run (for eval mode)."""
        for t in self.trainers.values():
            t.sampler.path = arch
        theirs = {nni_names.nni_label(label): nni_names.nni_op(op) for label, op in arch.items()}
        net = derive(self.gm, arch)
        optimizer = sgd(net.parameters())
        index = torch.arange(len(y))
        gm_t, torch_t = self.trainers[GM], self.trainers[TORCH_POOL]
        step = {GM: lambda: gm_t.train_step(x, y, index), TORCH_POOL: lambda: torch_t.train_step(x, y, index),
                DERIVED: lambda: plain_step(net, optimizer, x, y)}
        evaluate = {GM: lambda: _forward(self.gm, gm_t, x), TORCH_POOL: lambda: _forward(self.torch_pool, torch_t, x),
                    DERIVED: lambda: _forward(net, None, x)}
        modules = [self.gm, self.torch_pool, net]
        if self.peer is not None:
            peer = self.peer
            step[PEER] = lambda: peer.single_path(x, y, theirs)
            evaluate[PEER] = lambda: peer.evaluate(x, theirs)
            modules.append(peer.model)
        return step, evaluate, modules

    def check(self, evaluate: dict, modules: list[nn.Module], *, train_mode: bool) -> None:
        """Logits of every side against gmgraph's, in eval mode (and, once, in train mode: batch statistics)."""
        with eval_mode(modules):
            reference = evaluate[GM]()
            self.checks.add("gmgraph vs its derived network (eval)", reference, evaluate[DERIVED]())
            self.checks.add("gmgraph vs gmgraph torch pool (eval)", reference, evaluate[TORCH_POOL](), exact=True)
            if PEER in evaluate:
                self.checks.add("gmgraph vs NNI, single path (eval)", reference, evaluate[PEER]())
        if train_mode and PEER in evaluate:  # one more update of the running statistics, on every supernet alike
            reference = evaluate[GM]()
            self.checks.add("gmgraph vs gmgraph torch pool (train mode)", reference, evaluate[TORCH_POOL](), exact=True)
            self.checks.add("gmgraph vs NNI, single path (train mode)", reference, evaluate[PEER]())

    def check_weights(self) -> None:
        """After one step on each side from the same state: the same weights and statistics (torch pool: bits)."""
        ours, same = self.gm.state_dict(), self.torch_pool.state_dict()
        worst = max(gap(ours[k].float(), same[k].float()) for k in ours)
        self.checks.gaps["weights after one single-path step, gmgraph vs gmgraph torch pool"] = worst
        if not all(torch.equal(ours[k], same[k]) for k in ours):
            raise SystemExit(f"bench_peers: after one step torch's pooling moves the weights by {worst:.3g}")
        if self.peer is None:
            return
        theirs = self.peer.model.state_dict()
        mapping = nni_names.name_map(ours, theirs)
        worst = max(gap(ours[a].float(), theirs[b].float()) for a, b in mapping.items())
        self.checks.gaps["weights after one single-path step, gmgraph vs NNI"] = worst
        if worst > 1e-4:
            raise SystemExit(f"bench_peers: after one step the weights differ by {worst:.3g}: not the same update")


def single_path_rows(args, batches, loaders, nni, checks: Checks):
    """Single-path steps and evaluation forwards: per side the seconds of each timed round; each round's path."""
    (x, y), _ = batches
    sp = SinglePath(args, loaders, nni, checks)
    generator = torch.Generator().manual_seed(args.seed)
    paths = [gmgraph.sample(sp.gm, generator) for _ in range(args.paths)]
    steps = {side: [] for side in (GM, TORCH_POOL, PEER, DERIVED)}
    evals = {side: [] for side in (GM, TORCH_POOL, PEER, DERIVED)}
    groups: list[int] = []
    for number, arch in enumerate(paths[:args.check_paths]):  # before any step: the same network on every side
        _, evaluate, modules = sp.sides(arch, x, y)
        sp.check(evaluate, modules, train_mode=number == 0)
    for number, arch in enumerate(paths):
        step, evaluate, modules = sp.sides(arch, x, y)
        sides = list(step)
        for r in range(args.reps + 1):
            for side in rotated(sides, number + r):
                elapsed = timed(step[side])
                if r:
                    steps[side].append(elapsed)
            if number == 0 and r == 0:
                sp.check_weights()
        with eval_mode(modules):
            for r in range(args.reps + 1):
                for side in rotated(sides, number + r):
                    elapsed = timed(evaluate[side])
                    if r:
                        evals[side].append(elapsed)
        groups += [number] * args.reps
    return steps, evals, groups


class eval_mode:  # noqa: N801 (a context manager used like a function)
    """Modules in eval mode inside, back in train mode after."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules

    def __enter__(self):
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc):
        for m in self.modules:
            m.train()


def _forward(net: nn.Module, t: SupernetTrainer | None, x) -> torch.Tensor:
    """gmgraph's forward without gradients on the trainer's path (a derived network has none)."""
    with torch.no_grad():
        if t is None:
            return net(x)
        with t.sampler.context():
            return net(x)


def peer_steps(nni, model: nn.Module):
    c = config("darts")
    return nni.Steps(model, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, clip=c.grad_clip,
                     arch_lr=c.arch_lr, arch_weight_decay=c.arch_weight_decay)


def darts_rows(args, batches, loaders, nni, checks: Checks):
    """DARTS architecture and weight steps: per side, the seconds of each round."""
    (x, y), (xv, yv) = batches
    gm = supernet(args)
    randomise_norms(gm, args.seed)
    slow = supernet(args, torch_pool=True)
    slow.load_state_dict(gm.state_dict())
    trainers = {GM: trainer(gm, loaders, "darts"), TORCH_POOL: trainer(slow, loaders, "darts")}
    index = torch.arange(len(y))
    arch_steps = {GM: lambda: trainers[GM]._arch_step(xv, yv),
                  TORCH_POOL: lambda: trainers[TORCH_POOL]._arch_step(xv, yv)}
    weight_steps = {GM: lambda: trainers[GM]._weight_step(x, y, index),
                    TORCH_POOL: lambda: trainers[TORCH_POOL]._weight_step(x, y, index)}
    if nni is not None:
        model = nni.supernet("darts", args.C, args.N, args.classes)
        nni_names.load_by_name(gm, model)
        nni_names.copy_alphas(trainers[GM].sampler.alphas, nni.alphas(model))
        peer = peer_steps(nni, model)
        with eval_mode([gm, slow, model]), torch.no_grad():
            with trainers[GM].sampler.context():
                ours = gm(x)
            with trainers[TORCH_POOL].sampler.context():
                checks.add("gmgraph vs gmgraph torch pool, DARTS (eval)", ours, slow(x), exact=True)
            checks.add("gmgraph vs NNI, DARTS (eval)", ours, model(x))
        arch_steps[PEER] = lambda: peer.arch_step(xv, yv)
        weight_steps[PEER] = lambda: peer.darts_weight_step(x, y)
    times = {"arch": {side: [] for side in arch_steps}, "weights": {side: [] for side in arch_steps}}
    sides = list(arch_steps)
    for r in range(args.darts_reps + 1):
        for side in rotated(sides, r):
            arch, weights = timed(arch_steps[side]), timed(weight_steps[side])
            if r:
                times["arch"][side].append(arch)
                times["weights"][side].append(weights)
    return times


def rows_for(step: str, times: dict[str, list[float]], pairs: list[tuple[str, str]], groups=None,
             target: tuple[str, float] | None = None) -> list[list[str]]:
    rows = []
    for ours, theirs in pairs:
        if not times.get(theirs) or not times.get(ours):
            continue
        r = paired(times[ours], times[theirs], groups)
        goal = target if theirs == PEER and ours == GM else None  # the torch-pool row is for comparison
        verdict = "" if goal is None else f"{goal[0]} <= {goal[1]:.2f} ({'met' if getattr(r, goal[0]) <= goal[1] else 'NOT met'})"
        if theirs == DERIVED and step.startswith("single path"):
            verdict = f"sums <= 1.05 ({'met' if r.sums <= 1.05 else 'NOT met'})"
        rows.append([step, ours, theirs, f"{statistics.median(times[ours]) * 1e3:.1f}",
                     f"{statistics.median(times[theirs]) * 1e3:.1f}", format_ratio(r.median, r.median_ci),
                     format_ratio(r.sums, r.sums_ci), verdict])
    return rows


def ensure_peer(args) -> object | None:
    """The peer's module (``peer_nni``), or None for ``--peer none``; installs and reruns in its environment."""
    if args.peer == "none":
        return None
    if importlib.util.find_spec("nni") is None:
        peer, venv = peer_env.PEERS["nni"], Path(args.nni_venv)
        if not peer_env.installed(peer, venv):
            if args.no_install:
                raise SystemExit(peer_env.missing_message("nni", venv))
            peer_env.install(peer, venv)
        peer_env.reexec_in(venv, [str(Path(__file__).resolve()), *sys.argv[1:]])
    import peer_nni

    return peer_nni


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all."""
    from gmgraph.files import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(text))  # makes the folder too


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=("nni", "none"), default="nni")
    parser.add_argument("--no-install", action="store_true", help="say in one line that NNI is missing, not install it")
    parser.add_argument("--nni-venv", default=str(peer_env.PEERS["nni"].folder), help="NNI's environment (default .venv-nni)")
    parser.add_argument("--paths", type=int, default=20, help="single-path paths (default 20)")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds per path after one warm-up (default 3)")
    parser.add_argument("--darts-reps", type=int, default=8, help="timed DARTS rounds after one warm-up (default 8)")
    parser.add_argument("--check-paths", type=int, default=3, help="paths whose logits are compared in eval mode")
    parser.add_argument("--C", type=int, default=16)
    parser.add_argument("--N", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32, help="input height and width (3 channels)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "peers.md"))
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    nni = ensure_peer(args)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    batches = [(torch.randn(args.batch, 3, args.size, args.size, generator=g),
                torch.randint(args.classes, (args.batch,), generator=g)) for _ in range(2)]
    loaders = [DataLoader(TensorDataset(*b), batch_size=args.batch) for b in batches]
    checks = Checks()
    steps, evals, groups = single_path_rows(args, batches, loaders, nni, checks)
    darts = darts_rows(args, batches, loaders, nni, checks)
    vs_peer = [(GM, PEER), (TORCH_POOL, PEER)]
    rows = (rows_for("single path (RSPS) step", steps, [*vs_peer, (GM, DERIVED)], groups, ("sums", TARGET))
            + rows_for("DARTS weight step", darts["weights"], vs_peer, target=("sums", TARGET))
            + rows_for("DARTS architecture step (first order)", darts["arch"], vs_peer, target=("sums", TARGET))
            + rows_for("evaluation forward", evals, [*vs_peer, (GM, DERIVED)], groups, ("sums", TARGET)))
    return report(args, rows, checks, nni, sys.argv[1:] if argv is None else argv)


def report(args, rows, checks: Checks, nni, argv: list[str]) -> Path:
    versions = ""
    if nni is not None:
        from importlib.metadata import version

        versions = f", nni {version('nni')}, pytorch-lightning {version('pytorch-lightning')}"
    command = " ".join([".venv/bin/python benchmarks/bench_peers.py", *argv])
    against = "NNI 3.0" if nni is not None else "its derived networks (--peer none)"
    title = (f"gmgraph side by side with {against}: NB201 C={args.C} N={args.N}, batch {args.batch} of "
             f"3x{args.size}x{args.size}, {args.paths} paths x {args.reps} rounds, {args.darts_reps} DARTS rounds")
    headers = ["step", "gmgraph", "against", "gmgraph ms", "against ms", "median of paired ratios [95% CI]",
               "ratio of sums [95% CI]", "target"]
    notes = (f"Command: `{command}`. Ratios are gmgraph time / the other side's; ms are medians over every "
             f"timed step. Checked before any step (logits) and after one step of each (weights): {checks.text()}. The protocol, what each side's step includes and "
             "why NNI runs without Lightning around it: the docstrings of benchmarks/bench_peers.py and "
             "benchmarks/peer_nni.py.")
    text = f"# {title}\n\nMachine: {machine()}{versions}\n\n{markdown(headers, rows)}\n\n{notes}\n"
    print(text)
    out = Path(args.out)
    write(out, text)
    return out


if __name__ == "__main__":
    main()
