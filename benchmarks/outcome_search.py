"""What ``gmgraph search`` hands a user over the whole NB201 space, and how good it truly is (issue 30).

``outcome.py`` answers this within the ground truth's 155 architectures, from
the ranking benchmark's estimates. This benchmark runs the search itself,
as a user does, over all 15,625: for each method and seed one ``gmgraph search``
(its method, sampler and search strategy: evolution, or argmax of the
architecture parameters for DARTS, GDAS, SNAS and ProxylessNAS; E = 40, splits
at 10 and 20, the ground truth's data and network size), then it trains the
chosen architecture from scratch with the ground truth's protocol (digits16,
40 epochs, lr 0.05) and 3 training seeds, on this machine (every pick, also
one the ground truth holds: the same training on another CPU rounds
differently). The statistics are ``outcome.py``'s: the pick's true accuracy with a 95 %
interval, its percentile among the 155 and regret against the best of them,
how often one pick recurs, the cost, and the paired difference to one-shot
uniform by seed (Wilcoxon, Holm). The report ends with the rule that names
``gmgraph search``'s default: the highest mean true accuracy, and among the
methods not told apart from it, the cheapest.

Run (resumable: rerun the same command; finished searches and trainings are kept)::

    .venv/bin/python benchmarks/outcome_search.py --workers 2

Methods run in tiers: the default's rivals first (one-shot uniform and PA&DA;
exhaustive, GM, random and synflow splits with uniform and with PA&DA), then the reference's options (GM with
``--leaf-restart weights``, GM with R = 100), then the samplers with
architecture parameters. Within a tier, seed by seed, so an interrupted run
leaves paired seeds. ``--plan`` lists what is left; ``--report-only`` writes
the report from what has finished; ``--quick`` checks the pipeline in seconds
(tiny made-up ground truth, synthetic data, outside the committed results).
Outputs: ``benchmarks/results/outcome_search.md`` and ``outcome_search.png``;
the work folder (``benchmarks/results/outcome_search/``) keeps one result per
search and ``picks.csv``, the trained picks, in the ground truth's format.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _table  # noqa: E402
import groundtruth_lib as local  # noqa: E402
import outcome_search_jobs as jobs  # noqa: E402
import outcome_search_report as report  # noqa: E402
from worker_pool import worker_pool  # noqa: E402

from gmgraph.errors import ConfigError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402

WORKDIR = _table.RESULTS / "outcome_search"
OUT = _table.RESULTS / "outcome_search.md"
QUICK = HERE.parent / "runs" / "outcome-search-quick"  # --quick never touches the committed results
QUICK_METHODS = ("oneshot", "gm")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` replaces the sizes by tiny ones.

    Example:
        >>> a = parse_args([])
        >>> a.seeds, a.epochs, a.split_at, a.train_seeds, len(a.methods), a.workers
        (10, 40, [10, 20], [0, 1, 2], 17, 2)
        >>> q = parse_args(["--quick"])
        >>> q.methods, q.seeds, q.out.parent.name
        (['oneshot', 'gm'], 2, 'outcome-search-quick')
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groundtruth", type=Path, default=local.DIGITS16_PATH,
                   help=f"ground truth whose protocol trains the picks (default {local.DIGITS16_PATH.name})")
    p.add_argument("--workdir", type=Path, default=None, help=f"result files (default {WORKDIR})")
    p.add_argument("--out", type=Path, default=None, help=f"report (default {OUT}); its figure beside it")
    p.add_argument("--methods", nargs="+", default=[m.key for m in jobs.METHODS],
                   choices=[m.key for m in jobs.METHODS], help="methods to run (default: all; one-shot uniform, "
                                                                "the baseline, always runs)")
    p.add_argument("--seeds", type=int, default=None, help="search seeds per method (default 10; --quick: 2)")
    p.add_argument("--epochs", type=int, default=40, help="supernet epochs of every search (default 40)")
    p.add_argument("--split-at", type=int, nargs="+", default=[10, 20], help="split epochs (default 10 20)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="from-scratch trainings of each pick (default seeds 0 1 2)")
    p.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (default 2)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--plan", action="store_true", help="print the jobs left, then stop")
    p.add_argument("--report-only", action="store_true", help="write the report from the finished jobs")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny settings: checks the pipeline, not the numbers (output in {QUICK})")
    args = p.parse_args(argv)
    if args.quick:
        args.methods, args.epochs, args.split_at, args.train_seeds = list(QUICK_METHODS), 2, [1], [0]
        args.n_boot, args.workdir, args.out = 50, args.workdir or QUICK / "work", args.out or QUICK / "outcome.md"
    args.seeds = args.seeds or (2 if args.quick else 10)
    if jobs.BASELINE not in args.methods:
        args.methods.insert(0, jobs.BASELINE)
    if args.seeds < 2:
        raise ConfigError("--seeds must be at least 2: the statistics pair seeds")
    args.workdir, args.out = args.workdir or WORKDIR, args.out or OUT
    return args


QUICK_FLAGS = ("--steps-per-epoch", "1", "--evaluations", "2", "--bn-batches", "1", "--rounds", "1")


def make_plan(args: argparse.Namespace) -> jobs.Plan:
    """The run's plan; ``--quick`` first writes its made-up ground truth (12 archs, 1 seed, synthetic data) in
    the work folder."""
    groundtruth, extra = args.groundtruth, ()
    if args.quick:
        groundtruth, extra = Path(args.workdir) / "made_up_groundtruth.csv", QUICK_FLAGS
        if not groundtruth.exists():
            local.made_up(12, [0], out=groundtruth, schedule=local.Schedule(C=2, N=1, epochs=1))
    return jobs.load_plan(args.workdir, groundtruth, args.epochs, split_at=args.split_at,
                          train_seeds=args.train_seeds, extra=extra)


def search_order(keys, seeds: int) -> list[tuple[str, int]]:
    """Every (method, seed) search, tier by tier, seed by seed within a tier, in the tables' order.

    Example:
        >>> search_order(["gm", "oneshot", "darts"], 2)
        [('oneshot', 0), ('gm', 0), ('oneshot', 1), ('gm', 1), ('darts', 0), ('darts', 1)]
    """
    methods = sorted((jobs.method(k) for k in dict.fromkeys(keys)), key=lambda m: jobs.METHODS.index(m))
    return [(m.key, s) for tier in sorted({m.tier for m in methods}) for s in range(seeds)
            for m in methods if m.tier == tier]


def run_all(plan: jobs.Plan, keys, seeds: int, workers: int) -> None:
    """Run every missing search, and train every pick that lacks a from-scratch result, on ``workers``
    processes (one: in this one)."""
    queue, started = _Queue(plan, keys, seeds), time.perf_counter()
    with (worker_pool(workers, "spawn") if workers > 1 else _InPlace()) as pool:
        running: dict[futures.Future, tuple] = {}
        while queue or running:
            while len(running) < workers and queue:
                job = queue.pop()
                fn = jobs.train_pick if job[0] == "train" else jobs.run_search
                running[pool.submit(fn, plan, *job[1:])] = job
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                result = future.result()  # a failed job raises here; the pool shuts down
                queue.record(job, result)
                _progress(*job, result, queue.done, queue.total, started)


class _Queue:
    """The jobs left: the trainings that finished searches' picks lack (first: they complete those rows), then
    the searches in :func:`search_order`. It records what finishes: a search's pick adds its trainings; a
    training's row is saved to ``picks.csv`` at once."""

    def __init__(self, plan: jobs.Plan, keys, seeds: int):
        self.plan = plan
        self.searches = [j for j in search_order(keys, seeds) if not plan.result_path(*j).exists()]
        self.have = jobs.trained_picks(plan)
        self.trainings = jobs.trainings_needed(plan, [r["arch"] for r in jobs.load_results(plan)], self.have)
        self.promised = set(self.trainings)  # queued, running or done: never queued twice
        self.total, self.done = len(self.searches) + len(self.trainings), 0

    def __bool__(self) -> bool:
        return bool(self.searches or self.trainings)

    def pop(self) -> tuple[str, str, int]:
        """``("train", arch, seed)`` or ``("search", method, seed)``."""
        return ("train", *self.trainings.pop(0)) if self.trainings else ("search", *self.searches.pop(0))

    def record(self, job: tuple[str, str, int], result: dict) -> None:
        kind, name, seed = job
        if kind == "search":
            new = [t for t in jobs.trainings_needed(self.plan, [result["arch"]], self.have) if t not in self.promised]
            self.trainings += new
            self.promised.update(new)
            self.total += len(new)
        else:
            self.have[name, seed] = result
            jobs.save_pick_rows(self.plan, self.have)
        self.done += 1


class _InPlace:
    """A pool of no processes: each job runs in this one when submitted (``--workers 1``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> futures.Future:
        future: futures.Future = futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as a pool does
            future.set_exception(exc)
        return future


def _progress(kind: str, name: str, seed: int, result: dict, done: int, total: int, start: float) -> None:
    elapsed = time.perf_counter() - start
    what = (f"search {name} s{seed}: {result['arch']} ({result['supernet_epochs']} supernet-epochs)"
            if kind == "search" else f"train {name} seed {seed}: {result['val']:.4f} val")
    print(f"[{done}/{total}] {what} {result['seconds']:.0f}s (elapsed {elapsed / 60:.1f} min, "
          f"left ~{elapsed / done * (total - done) / 60:.0f} min)", flush=True)


def plan_lines(plan: jobs.Plan, keys, seeds: int, workers: int) -> list[str]:
    """What is left, per method, with the time it should take: each method's mean search time so far (a method
    not yet run says so), and for each search the trainings its pick needs, at the rate and mean time so far."""
    left = [j for j in search_order(keys, seeds) if not plan.result_path(*j).exists()]
    done = jobs.load_results(plan)
    trained = [r["seconds"] for r in jobs.trained_picks(plan).values()]
    # trainings a search has cost so far: those its pick needed (a pick found before needs none)
    per_search = len(trained) / len(done) if done else len(plan.train_seeds)
    train_each = sum(trained) / len(trained) if trained else None
    lines, total, untimed = [], 0.0, []
    for key in dict.fromkeys(k for k, _ in left):
        count = sum(k == key for k, _ in left)
        mine = [r["seconds"] for r in done if r["method"] == key]
        if not mine:
            untimed.append(key)
            lines.append(f"{key}: {count} searches left (not timed yet)")
            continue
        hours = count * (sum(mine) / len(mine) + per_search * (train_each or 0.0)) / 3600
        total += hours
        lines.append(f"{key}: {count} searches left, about {hours:.2f} h with their picks' trainings")
    lines.append(f"{len(left)} searches left: about {total:.2f} h of job time ({total / workers:.2f} h on "
                 f"{workers} workers)" + (f", plus {', '.join(untimed)}, not timed yet" if untimed else ""))
    return lines


def write_report(plan: jobs.Plan, args: argparse.Namespace, argv: list[str]) -> dict:
    """The report and its figure from every finished search whose pick is trained; returns the rows."""
    wanted = set(search_order(args.methods, args.seeds))
    results = [r for r in jobs.load_results(plan) if (r["method"], r["seed"]) in wanted]
    rows = report.outcomes(plan, results, n_boot=args.n_boot)
    if jobs.BASELINE not in rows:
        raise ConfigError("no one-shot search has a trained pick yet: nothing to compare (run without --report-only)")
    default = report.best_measured(rows, n_boot=args.n_boot)
    ref = report.reference(plan)
    figure = report.draw(rows, ref, args.out.with_suffix(".png"))
    effects = report.setting_effects(rows, n_boot=args.n_boot)
    text = _render(plan, args, argv, rows, default, results, len(wanted), figure) + _settings_section(effects)
    print(text)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    summary = {"complete": sum(r["seeds"] for r in rows.values()) == len(wanted), "default": default,
               "flags": list(jobs.method(default["method"]).flags), "setting_effects": effects,
               "methods": {k: {f: v for f, v in r.items() if f != "per_seed"} | {"picks": {
                   s: o["arch"] for s, o in r["per_seed"].items()}} for k, r in rows.items()}}
    atomic_write(args.out.with_name(args.out.stem + "_summary.json"),
                 lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1, default=float) + "\n"))
    return rows


def _render(plan, args, argv, rows, default, results, wanted: int, figure: Path) -> str:
    measured = sum(r["seeds"] for r in rows.values())
    searching = sum(r["seconds"] for r in results) / 3600  # a resumed search's report counts its earlier part
    training = sum(r["seconds"] for r in jobs.trained_picks(plan).values()) / 3600
    state = ("complete" if measured == wanted else
             f"**partial: {measured} of {wanted} searches have a trained pick**; rerun the command to go on")
    trained, n_ref = len(jobs.trained_picks(plan)), len(local.load_groundtruth(plan.groundtruth))
    return "\n".join([
        "# What `gmgraph search` hands a user over the whole NB201 space (issue 30)", "",
        f"Machine: {_table.machine()}", "",
        f"Command: `python benchmarks/outcome_search.py{' ' + ' '.join(argv) if argv else ''}` ({state}).", "",
        f"Each search is one `gmgraph search` over all 15,625 architectures: E = {plan.epochs}, splits at "
        f"{', '.join(map(str, plan.split_at))} (exhaustive: the first only), evolution with "
        f"{_evaluations(results)} evaluations, argmax for DARTS/GDAS/SNAS/ProxylessNAS; the ground truth's data and network size; "
        f"one torch thread. The pick's true accuracy: its from-scratch training with the ground truth's protocol "
        f"({plan.settings['dataset']}, E = {plan.settings['schedule']['epochs']}, lr "
        f"{plan.settings['schedule']['lr']}), mean over training seeds {', '.join(map(str, plan.train_seeds))} "
        f"(val and test pooled), every pick trained on this machine ({trained} trainings, "
        f"`{_shown(plan.picks_csv)}`). Percentile and regret: against the ground truth's "
        f"{n_ref} architectures over the same seeds (regret < 0: the pick "
        "beats all of them). Δ: paired by seed to one-shot uniform; Wilcoxon signed-rank, Holm over the methods; "
        f"95% percentile bootstrap over seeds ({args.n_boot} draws). Time of the jobs, one torch thread "
        f"each: searches {searching:.2f} h, from-scratch trainings {training:.2f} h (this machine, "
        f"{args.workers} at a time).", "",
        _table.markdown(report.headers(n_ref), report.table_rows(rows)), "",
        *[f"- {line}" for line in report.verdicts(rows, default, complete=measured == wanted)], "",
        f"![picks beside the ground truth]({figure.name})", "",
    ])


def _settings_section(effects: dict[str, dict]) -> str:
    """The report's part on GM-NAS's reference settings (empty until a variant has paired seeds)."""
    if not effects:
        return ""
    return "\n".join([
        "## Do GM-NAS's reference settings change what GM finds?", "",
        "GM-NAS's reference code re-initialises the final leaves' weights after the last split "
        "(`--leaf-restart weights`) and scores each split with 100 batches (`--rounds 100`); gmgraph's GM split "
        "inherits the weights and scores with 10. Each variant against the method it varies (`against`), paired "
        "by seed (the two differ only in that setting, so the difference is the change in that method's gain "
        "over one-shot); "
        "Wilcoxon signed-rank, Holm over the variants; 95% percentile bootstrap over seeds.", "",
        _table.markdown(report.SETTING_HEADERS, report.setting_rows(effects)), "",
        *[f"- {line}" for line in report.setting_verdicts(effects)], "",
    ])


def _evaluations(results: list[dict]) -> str:
    """The evolution searches' evaluations (one number when they agree)."""
    counts = sorted({r["evaluations"] for r in results if r["method"] in EVOLVED and r.get("evaluations")})
    return "/".join(map(str, counts)) or "no"


EVOLVED = {m.key for m in jobs.METHODS if "evolution" in m.flags}


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    plan = make_plan(args)
    if args.plan:
        lines = plan_lines(plan, args.methods, args.seeds, args.workers)
        print("\n".join(lines))
        return {"plan": lines}
    if not args.report_only:
        run_all(plan, args.methods, args.seeds, args.workers)
    return write_report(plan, args, argv)


if __name__ == "__main__":
    main()
