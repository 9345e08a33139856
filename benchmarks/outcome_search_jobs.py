"""The whole-space outcome benchmark's jobs: ``gmgraph search`` runs, and from-scratch trainings of their picks.

A *search job* is one ``gmgraph search`` over the whole NB201 space (15,625
architectures), run through the command's own entry point: the method's flags, one seed,
the ground truth's data and network size, no final training and no export.
Its result file ``results/<method>-s<seed>.json`` keeps the chosen
architecture, the supernet-epochs and the wall time. A killed search resumes
from its checkpoint (``gmgraph search --resume``).

A *training job* trains one pick from scratch with the ground truth's own
schedule (``benchmarks/groundtruth_lib.py``: same data, size, epochs, lr) and
one training seed. Every pick is trained here, also one the ground truth
holds: its rows come from another machine, and the same training on another
CPU rounds differently, which moves a result as much as a seed does (one arch
and seed gave 0.6215 val here against the ground truth's 0.6146), so all
picks come from one machine. The rows land in ``picks.csv``, in the ground
truth's format, so one reader serves both files::

    >>> plan = Plan(workdir=Path("w"), groundtruth=Path("gt.csv"), epochs=40)
    >>> plan.result_path("gm", 3).name, search_argv(plan, method("gm"), 3, Path("r"))[:5]
    ('gm-s3.json', ['search', '--method', 'gm', '--sampler', 'uniform'])
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import groundtruth_lib as local

from gmgraph.errors import ConfigError, DataError
from gmgraph.files import atomic_write


@dataclass(frozen=True)
class SearchMethod:
    """One compared way to search: its table name and the ``gmgraph search`` flags that select it."""

    key: str  # short, file-safe
    label: str
    flags: tuple[str, ...]
    splits: int = 0  # how many of the plan's split epochs it splits at (0: one supernet)
    tier: int = 1  # the order the run takes methods in: the default's rivals first, the reference's options next
    variant_of: str = ""  # the method this one changes one setting of (its effect is measured against that one)

    @property
    def sampler(self) -> str:
        return self.flags[self.flags.index("--sampler") + 1]


def _few_shot(splitter: str, sampler: str, *extra: str) -> tuple[str, ...]:
    return ("--method", splitter, "--sampler", sampler, "--search", "evolution", *extra)


def _gradient(sampler: str, *extra: str) -> tuple[str, ...]:
    return ("--method", "oneshot", "--sampler", sampler, "--search", "argmax", *extra)


METHODS = (
    SearchMethod("oneshot", "one-shot (uniform)", _few_shot("oneshot", "uniform")),
    SearchMethod("pada", "one-shot (PA&DA)", _few_shot("oneshot", "pada")),
    # few-shot NAS splits NB201 once, into its 5 ops (as the ranking benchmark's exhaustive method); at both
    # split epochs it would make 25 leaves and 560 supernet-epochs
    SearchMethod("exhaustive", "few-shot exhaustive", _few_shot("exhaustive", "uniform"), splits=1),
    SearchMethod("gm", "GM split (R=10)", _few_shot("gm", "uniform"), splits=2),
    SearchMethod("random", "random split", _few_shot("random", "uniform"), splits=2),
    SearchMethod("synflow", "metric split (synflow)", _few_shot("metric:synflow", "uniform"), splits=2),
    SearchMethod("exhaustive-pada", "few-shot exhaustive (PA&DA)", _few_shot("exhaustive", "pada"), splits=1),
    SearchMethod("gm-pada", "GM split (PA&DA, R=10)", _few_shot("gm", "pada"), splits=2),
    SearchMethod("random-pada", "random split (PA&DA)", _few_shot("random", "pada"), splits=2),
    SearchMethod("synflow-pada", "metric split (synflow, PA&DA)", _few_shot("metric:synflow", "pada"), splits=2),
    SearchMethod("gm-restart", "GM split (R=10), leaves restarted",
                 _few_shot("gm", "uniform", "--leaf-restart", "weights"), splits=2, tier=2, variant_of="gm"),
    SearchMethod("gm-r100", "GM split (R=100)", _few_shot("gm", "uniform", "--rounds", "100"), splits=2, tier=2,
                 variant_of="gm"),
    SearchMethod("darts", "DARTS (argmax)", _gradient("darts"), tier=3),
    SearchMethod("gdas", "GDAS (argmax)", _gradient("gdas"), tier=3),
    SearchMethod("snas", "SNAS (argmax)", _gradient("snas"), tier=3),
    SearchMethod("proxyless", "ProxylessNAS (argmax)", _gradient("proxyless"), tier=3),
    SearchMethod("darts2", "DARTS 2nd order (argmax)", _gradient("darts", "--darts-order", "2"), tier=3),
)
"""Every method the benchmark can run, in the tables' order. Evolution (gmgraph's default search) for supernets
trained by a path sampler; argmax of the architecture parameters for the samplers that learn them."""

BASELINE = "oneshot"


def method(key: str) -> SearchMethod:
    """The method called ``key``.

    Raises:
        ConfigError: an unknown key (the message lists them).

    Example:
        >>> method("gm-pada").sampler
        'pada'
    """
    for m in METHODS:
        if m.key == key:
            return m
    raise ConfigError(f"unknown method {key!r}; choose from {', '.join(m.key for m in METHODS)}")


@dataclass(frozen=True)
class Plan:
    """Where a run keeps its files, what it measures against and how long its supernets train."""

    workdir: Path
    groundtruth: Path
    epochs: int
    split_at: tuple[int, ...] = (10, 20)  # GM-NAS's on NB201 at E = 40 (gmgraph's default)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    extra: tuple[str, ...] = ()  # more flags for every search (quick runs: fewer steps and evaluations)
    settings: dict = field(default_factory=dict, compare=False)  # the ground truth's side file, read once

    def result_path(self, key: str, seed: int) -> Path:
        return self.workdir / "results" / f"{key}-s{seed}.json"

    def run_dir(self, key: str, seed: int) -> Path:
        return self.workdir / "runs" / f"{key}-s{seed}"

    @property
    def picks_csv(self) -> Path:
        return self.workdir / "picks.csv"


def load_plan(workdir: Path, groundtruth: Path, epochs: int, *, split_at=(10, 20), train_seeds=(0, 1, 2),
              extra=()) -> Plan:
    """A :class:`Plan` with the ground truth's settings read; a work folder of other settings is refused.

    Raises:
        DataError: the ground truth is missing. ConfigError: ``workdir`` holds a run of other settings.
    """
    local.read_rows(groundtruth)  # a missing or malformed ground truth says so here
    side_path = Path(groundtruth).with_suffix(".json")
    if not side_path.is_file():
        raise DataError(f"{groundtruth} has no side file {side_path.name}: its training protocol, which trains "
                        "the picks, is unknown (benchmarks/groundtruth.py writes both)")
    side = json.loads(side_path.read_text())
    plan = Plan(Path(workdir), Path(groundtruth), int(epochs), tuple(int(e) for e in split_at),
                tuple(int(s) for s in train_seeds), tuple(extra), side)
    _check_workdir(plan)
    return plan


def _identity(plan: Plan) -> dict:
    return {"groundtruth": plan.groundtruth.name, "schedule": plan.settings["schedule"],
            "dataset": plan.settings["dataset"], "epochs": plan.epochs, "split_at": list(plan.split_at),
            "train_seeds": list(plan.train_seeds), "extra": list(plan.extra)}


def _check_workdir(plan: Plan) -> None:
    path = plan.workdir / "settings.json"
    mine = _identity(plan)
    if path.exists():
        differ = sorted(k for k, v in json.loads(path.read_text()).items() if mine.get(k) != v)
        if differ:
            raise ConfigError(f"{plan.workdir} holds a run with other settings ({', '.join(differ)}); "
                              "choose another --workdir")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(mine, indent=2) + "\n"))


def search_argv(plan: Plan, m: SearchMethod, seed: int, out: Path) -> list[str]:
    """The ``gmgraph search`` arguments of one job: the method's flags on the ground truth's task."""
    s = plan.settings.get("schedule", {})
    task = [] if not plan.settings else ["--data", plan.settings["dataset"], "--width", str(s["C"]),
                                         "--cells", str(s["N"]), "--batch-size", str(s["batch_size"])]
    splits = ["--split-at", ",".join(str(e) for e in plan.split_at[:m.splits])] if m.splits else []
    return ["search", *m.flags, *splits, *task, "--epochs", str(plan.epochs), "--seed", str(seed),
            "--threads", "1", "--final-epochs", "0", "--export", "false", "--html", "false", "--quiet",
            *plan.extra, "--out", str(out)]


def run_search(plan: Plan, key: str, seed: int) -> dict:
    """Run (or resume) one search job, as the ``gmgraph`` command runs it, and write its result file; returns
    the result. Everything the search seeds comes from its ``--seed``, so the process it runs in may have run
    others before.

    Raises:
        RuntimeError: ``gmgraph search`` failed (the end of its output is in the message).
    """
    from gmgraph.cli import main

    out = plan.run_dir(key, seed)
    if (out / "checkpoint.pt").exists() and not (out / "report.json").exists():
        argv = ["search", "--resume", "--quiet", "--out", str(out)]
    else:
        shutil.rmtree(out, ignore_errors=True)  # a folder with no checkpoint holds nothing to continue
        out.parent.mkdir(parents=True, exist_ok=True)
        argv = search_argv(plan, method(key), seed, out)
    start, said = time.perf_counter(), io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        code = main(argv)
    if code != 0:
        raise RuntimeError(f"{key} seed {seed}: gmgraph {' '.join(argv)} failed:\n{said.getvalue()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    result = {"method": key, "seed": seed, "arch": report["arch_str"], "sampler": report.get("sampler"),
              "supernet_epochs": report["budget"]["supernet_epochs"], "leaves": len(report["leaves"]),
              "seconds": report["timings"]["total_seconds"], "wall_seconds": time.perf_counter() - start,
              "evaluations": report["search"].get("evaluations")}
    path = plan.result_path(key, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    shutil.rmtree(out, ignore_errors=True)  # checkpoints are megabytes; the result keeps what the report needs
    return result


def load_results(plan: Plan) -> list[dict]:
    """Every finished search's result."""
    folder = plan.workdir / "results"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def trained_picks(plan: Plan) -> dict[tuple[str, int], dict]:
    """(arch, training seed) -> its row, for every pick trained so far (``picks.csv``)."""
    if not plan.picks_csv.exists():
        return {}
    return {(r["arch"], r["seed"]): r for r in local.read_rows(plan.picks_csv)}


def trainings_needed(plan: Plan, archs, have: dict) -> list[tuple[str, int]]:
    """The (arch, seed) trainings the picks ``archs`` still lack, in first-seen order.

    Example:
        >>> trainings_needed(Plan(Path("w"), Path("g"), 1, train_seeds=(0, 1)), ["a", "b", "a"], {("a", 0): {}})
        [('a', 1), ('b', 0), ('b', 1)]
    """
    seen = dict.fromkeys(archs)
    return [(a, s) for a in seen for s in plan.train_seeds if (a, s) not in have]


_DATA: dict = {}


def train_pick(plan: Plan, arch: str, seed: int) -> dict:
    """Train ``arch`` from scratch with the ground truth's schedule and ``seed`` (one torch thread); its row."""
    from gmgraph.device import torch_threads

    schedule = local.Schedule(**plan.settings["schedule"])
    key = (plan.settings["dataset"], schedule.batch_size)
    if key not in _DATA:  # each worker loads the data once
        _DATA.clear()
        _DATA[key] = local.load_data(*key)
    sizes = {f: getattr(schedule, f) for f in ("C", "N", "epochs", "lr", "momentum", "weight_decay", "grad_clip")}
    with torch_threads(1):
        return {"arch": arch, "seed": seed, **local.train_arch(arch, seed=seed, loaders=_DATA[key], **sizes)}


def save_pick_rows(plan: Plan, rows: dict[tuple[str, int], dict]) -> None:
    """Write the picks' trained rows (and a side file of the ground truth's settings, so that one reader,
    with the same val/test weights, reads both), atomically."""
    local.write_rows(plan.picks_csv, [rows[k] for k in sorted(rows)])
    side = {**plan.settings, "n_archs": len({a for a, _ in rows}), "seeds": sorted({s for _, s in rows}),
            "sampler": "picks of benchmarks/outcome_search.py's searches", "uniform_archs": False}
    atomic_write(plan.picks_csv.with_suffix(".json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(side, indent=2) + "\n"))
