"""Ranking fidelity of one-shot and few-shot supernets against a local ground truth, paired by seed.

Run (the full benchmark; resumable: rerun the same command after an interruption)::

    .venv/bin/python benchmarks/ranking.py

Defaults: the 40-epoch digits16 ground truth (``digits16_201_e40.csv``), 10 seeds, E = 20, 40, 60, budget 40,
every ground-truth architecture, full epochs: 20,400 supernet-epochs and
260 x 155 estimates, about 2.65 h on this 2-core machine when nothing else
runs. Measured: a quiet run of seeds 0 and 1 (``--seeds 2``, every cell, 54
of the 270 jobs) took 32.1 min wall; ``--plan --calibrate`` on it predicts
2.65 h from its unit costs (0.62 s per supernet epoch and 0.14 s per
estimate of digits16 at C=8, N=1, batch 64, one thread). E = 80 would add
about 0.3 h. The committed report's jobs add up to 6.84 h (3.42 h on 2
workers) because they ran on a loaded machine (README, "Ranking quality").
``--plan`` prints the jobs and the predicted time, in all and per method
(from one timed epoch per sampler, or ``--calibrate WORKDIR``: from the jobs
of a timed small run);
``--quick`` checks the pipeline in seconds; ``--plot-only`` redraws the
figures from the saved summary; ``--report-only`` writes the report from the
jobs finished so far and says how many (a long run's interim report). More seeds or another E later add jobs to the
same work folder without redoing the finished ones. ``--primary-seeds 20``
gives the verdict's cell (rule (a), E = ``--primary``) 20 seeds and the other
cells ``--seeds``: the committed report, where every method's MDE at E = 40 is
at most 0.06, is ``ranking.py --primary-seeds 20`` (80 more jobs than the
default, 47.6 min measured).

Protocol (``ranking_protocol``): every method trains an NB201 supernet of the
ground truth's size (C, N) on its data and batch size (from the side JSON),
then estimates every ground-truth architecture's val accuracy and loss with
inherited weights (BN recalibrated on fixed training batches). Two rules:
(a) equal epochs per leaf lineage, at each E of ``--epochs`` (splits at
``--split-fractions`` of E); (b) an equal total of ``--budget``
supernet-epochs. Few-shot runs fork from the one-shot run of the same seed
at its first split epoch, so the comparison is paired; PA&DA is paired
through the seed (same initialisation and data order). The splits trained
with DARTS or SNAS (``--methods gm-darts random-darts gm-snas random-snas``,
on request) fork from the one-shot run of their own sampler and seed, which
is planned with them; the report pairs each with that run as well.

Statistics (``ranking_stats``, ``ranking_summary``): Kendall tau per seed
(accuracy ties broken by the val loss), paired differences against one-shot,
Wilcoxon signed-rank with Holm's correction within each cell, two-level
bootstrap intervals (seeds and architectures), the minimum detectable
difference at 80 % power, tau over the true top 20 %, self-consistency across
seeds, op-count bias and the splitters' consistency. Outputs: the report
(default ``benchmarks/results/ranking.md``) with one verdict per method, its
figures (``ranking_*.png`` beside it), the summary JSON and per-architecture
estimates CSV (default ``benchmarks/data/ranking_summary.json`` and
``ranking_estimates.csv.gz``) and, per job, a result file in ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import groundtruth_lib as local  # noqa: E402
import ranking_jobs as jobs_lib  # noqa: E402
import ranking_plots  # noqa: E402
import ranking_pool  # noqa: E402
import ranking_report  # noqa: E402
import ranking_stats  # noqa: E402
import ranking_summary  # noqa: E402
from ranking_protocol import (  # noqa: E402
    BASELINE,
    DEFAULT_METHODS,
    METHODS,
    job_seconds,
    method,
    plan_jobs,
    predict_seconds,
    unit_costs,
)

from gmgraph.config import TrainConfig  # noqa: E402
from gmgraph.errors import ConfigError, DataError, GmGraphError  # noqa: E402
from gmgraph.files import atomic_write  # noqa: E402

HERE = Path(__file__).resolve().parent
REPORT = _table.RESULTS / "ranking.md"
SUMMARY = HERE / "data" / "ranking_summary.json"
ESTIMATES = HERE / "data" / "ranking_estimates.csv.gz"
WORKDIR = HERE.parent / "runs" / "ranking"
QUICK = HERE.parent / "runs" / "ranking-quick"  # --quick never touches the committed results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` replaces the sizes by tiny ones.

    Raises:
        ConfigError: a ``--primary`` not among ``--epochs``, or fewer than 2 seeds.

    Example:
        >>> a = parse_args([])
        >>> a.seeds, a.epochs, a.budget, a.split_fractions, a.workers
        (10, [20, 40, 60], 40, [0.25, 0.5], 2)
        >>> quick = parse_args(["--quick"])
        >>> quick.epochs, quick.out.parent.name
        ([4], 'ranking-quick')
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--groundtruth", type=Path, default=local.DIGITS16_PATH,
                   help=f"ground-truth CSV (+ side .json; default {local.DIGITS16_PATH.name})")
    p.add_argument("--workdir", type=Path, default=None, help=f"result files (default {WORKDIR}/<truth name>)")
    p.add_argument("--out", type=Path, default=None, help=f"report (default {REPORT}); figures and data beside it")
    p.add_argument("--seeds", type=int, default=10, help="supernet seeds per method (default 10)")
    p.add_argument("--epochs", type=int, nargs="+", default=[20, 40, 60], help="rule (a) lineage epochs E")
    p.add_argument("--primary", type=int, default=40, help="the E the verdict reads (default 40)")
    p.add_argument("--primary-seeds", type=int, default=0,
                   help="seeds of the --primary cell (rule a) when more than --seeds; the extra seeds run "
                        "that cell only (0: --seeds)")
    p.add_argument("--budget", type=int, default=40, help="rule (b) supernet-epochs per method (0: skip rule b)")
    p.add_argument("--split-fractions", type=float, nargs="+", default=[0.25, 0.5],
                   help="split epochs as fractions of E (GM-NAS NB201: 10 and 20 of 40)")
    p.add_argument("--archs", type=int, default=0, help="use only the first N ground-truth archs (0: all)")
    p.add_argument("--methods", nargs="+", default=None, choices=[m.key for m in METHODS],
                   help="the methods to compare (default: the seven of the committed report; add darts, darts2, "
                        "gdas, snas, proxyless for the samplers with architecture parameters, gm-darts, "
                        "random-darts, gm-snas, random-snas for GM and random splits trained with DARTS or SNAS "
                        "(they fork from their sampler's one-shot run, planned with them); one-shot always runs)")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="cap training steps per epoch")
    p.add_argument("--bn-batches", type=int, default=4)
    p.add_argument("--rounds-small", type=int, default=0,
                   help="GM rounds R (0: the largest R whose scoring costs at most one epoch)")
    p.add_argument("--rounds-large", type=int, default=10, help="GM rounds of the second GM run")
    p.add_argument("--metric-children", type=int, default=4)
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap draws")
    p.add_argument("--workers", type=int, default=None,
                   help="processes running independent jobs, one torch thread each (default 2; --quick: 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--plot", choices=("yes", "no"), default="yes")
    p.add_argument("--plot-only", action="store_true", help="redraw the figures from the saved summary")
    p.add_argument("--plan", action="store_true", help="print the jobs and the predicted time, then stop")
    p.add_argument("--report-only", action="store_true",
                   help="run no job: write the report from the jobs finished so far (it says how many)")
    p.add_argument("--calibrate", type=Path, default=None,
                   help="with --plan: predict from the unit costs measured by the jobs in this work folder "
                        "(a timed small run) instead of one timed epoch per sampler")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny settings: checks the pipeline, not the numbers (default output in {QUICK})")
    args = p.parse_args(argv)
    if args.quick:  # one E, one split, 2 seeds, 6 archs, 1 step per epoch: every stage, in seconds
        args.seeds, args.epochs, args.primary, args.budget, args.split_fractions = 2, [4], 4, 20, [0.5]
        args.steps_per_epoch, args.bn_batches, args.rounds_large, args.metric_children = 1, 1, 2, 1
        args.archs, args.n_boot = args.archs or 6, 50
        args.out = args.out or QUICK / "ranking.md"
        args.workdir = args.workdir or QUICK / args.groundtruth.stem
    args.workers = args.workers or (1 if args.quick else 2)
    if args.primary not in args.epochs:
        raise ConfigError(f"--primary {args.primary} must be one of --epochs {args.epochs}")
    if args.seeds < 2:
        raise ConfigError("--seeds must be at least 2: the statistics pair seeds")
    if args.primary_seeds and args.primary_seeds < args.seeds:
        raise ConfigError(f"--primary-seeds {args.primary_seeds} must be at least --seeds {args.seeds}")
    return args


def outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Where the report, figures, summary and estimates go (all beside ``--out`` when given).

    Example:
        >>> sorted(p.name for p in outputs(parse_args(["--out", "/tmp/r/x.md"])).values())
        ['x', 'x.md', 'x_estimates.csv.gz', 'x_summary.json']
    """
    if args.out is None:
        return {"report": REPORT, "summary": SUMMARY, "estimates": ESTIMATES, "prefix": REPORT.with_suffix("")}
    stem = args.out.with_suffix("")
    return {"report": args.out, "summary": Path(f"{stem}_summary.json"), "estimates": Path(f"{stem}_estimates.csv.gz"),
            "prefix": stem}


def make_plan(args: argparse.Namespace) -> jobs_lib.Plan:
    """The settings every job shares, from the command line (work folder: one per ground truth).

    Example:
        >>> make_plan(parse_args(["--groundtruth", "x/gt.csv"])).workdir.endswith("runs/ranking/gt")
        True
    """
    workdir = args.workdir or WORKDIR / args.groundtruth.stem
    return jobs_lib.Plan(str(args.groundtruth), str(workdir), archs=args.archs, fractions=tuple(args.split_fractions),
                         steps_per_epoch=args.steps_per_epoch, bn_batches=args.bn_batches,
                         rounds_small=args.rounds_small, rounds_large=args.rounds_large,
                         metric_children=args.metric_children, threads=args.threads)


def _show_plan(plan: jobs_lib.Plan, todo: list, args: argparse.Namespace) -> dict:
    """The jobs, their supernet-epochs and the predicted time (per method too), from a timed small run or one
    timed epoch per sampler."""
    b = jobs_lib.bench(plan)
    if args.calibrate is not None:
        calibration = jobs_lib.Plan(plan.groundtruth, str(args.calibrate))
        unit = unit_costs(ranking_pool.load_results(calibration))
        source = f"unit costs measured by the jobs in {args.calibrate}"
    else:
        samplers = tuple(dict.fromkeys(method(j.method).base if j.kind == "fork" else j.method
                                       for j in todo if j.kind != "zerocost"))  # a few-shot method: its base's
        unit = {**jobs_lib.probe(plan, methods=samplers), "scoring_seconds": {}}
        source = "one timed epoch per sampler and estimate (split scoring not included)"
    seconds = predict_seconds(todo, archs=len(b.archs), workers=args.workers, **unit)
    print(f"{len(todo)} jobs to run, {sum(j.cost for j in todo)} supernet-epochs, {len(b.archs)} archs per "
          f"estimate; {source}: {json.dumps(_rounded(unit))}")
    by_method = _seconds_by_method(todo, unit, len(b.archs))
    for key, (jobs, cost, cpu) in by_method.items():
        print(f"  {key}: {jobs} jobs, {cost} supernet-epochs, {cpu / 3600:.2f} h CPU")
    print(f"predicted: {seconds / 3600:.2f} h on {args.workers} worker(s) (perfect packing)")
    return {"unit": unit, "seconds": seconds, "by_method": by_method}


def _seconds_by_method(todo: list, unit: dict, archs: int) -> dict[str, tuple[int, int, float]]:
    """Per method (zero-cost scores as ``zerocost``): its jobs, supernet-epochs and predicted CPU seconds.

    Example:
        >>> jobs = plan_jobs(("gm-darts",), 2, (8,), None, (0.25, 0.5))
        >>> unit = {"epoch_seconds": 1.0, "estimate_seconds": 0.0, "zero_cost_seconds": 0.0,
        ...         "method_epoch_seconds": {"darts": 3.0}}
        >>> _seconds_by_method(jobs, unit, 10)["gm-darts"]   # 2 seeds x (22 - 2) epochs at darts' 3 s
        (2, 40, 120.0)
    """
    out: dict[str, tuple[int, int, float]] = {}
    for job in todo:
        n, cost, cpu = out.get(job.method, (0, 0, 0.0))
        out[job.method] = (n + 1, cost + job.cost, cpu + job_seconds(job, archs=archs, **unit))
    return out


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    return {k: _rounded(v) for k, v in value.items()} if isinstance(value, dict) else value


def _progress(start: float, truth):
    """A progress line per finished job: its tau, its time, and the time left at the pace so far."""
    def on_done(result: dict, done: int, total: int) -> None:
        tau = ""
        if "estimates" in result:
            tau = f" tau={ranking_stats.kendall_tau(ranking_summary.scores(result), truth):.3f}"
        elapsed = time.perf_counter() - start
        print(f"[{done}/{total}] {result['id']}{tau} {result['seconds']:.0f}s "
              f"(elapsed {elapsed / 60:.1f} min, left ~{elapsed / done * (total - done) / 60:.0f} min)", flush=True)
    return on_done


def _ceilings(path: Path, seeds: int) -> dict:
    """Seed-vs-seed agreement of the ground truth: 1 vs 1, 3 vs 3 and half vs half seeds, and 3 vs 3 in its top 20 %."""
    out = {}
    cases = [(k, None) for k in dict.fromkeys((1, 3, seeds // 2))] + [(3, 0.2)]  # (seeds per side, top share)
    for k, top in cases:
        if k < 1 or 2 * k > seeds:
            continue
        name = f"{k}-seed mean vs {k}-seed mean" if k > 1 else "1 seed vs 1 seed"
        name += "" if top is None else f", within the true top {top:.0%}"
        try:
            out[name] = local.seed_agreement(path, per_side=k, top=top)
        except GmGraphError:  # e.g. a seed whose accuracies are all equal: a correlation is undefined
            out[name] = None
    return out


def _settings_text(args: argparse.Namespace, plan: jobs_lib.Plan, b: jobs_lib.Bench, summary: dict) -> str:
    g, s, t = b.settings, b.settings["schedule"], TrainConfig()
    rounds = {r["method"]: r["rounds"] for c in summary["cells"] for r in c["methods"] if r["rounds"]}
    more = args.primary_seeds > args.seeds
    primary_seeds = f", {args.primary_seeds} in the primary cell (rule a, E = {args.primary})" if more else ""
    rule_b = (f"rule (b) at {args.budget} supernet-epochs per method (few-shot leaves shorter; their cosine re-aimed "
              "to end at the leaf's last epoch)" if args.budget else "rule (b) not run (--budget 0)")
    return (
        f"Ground truth: `{Path(plan.groundtruth).name}`, {len(b.archs)} NB201 architectures trained from scratch on "
        f"{g['dataset']} (C={s['C']}, N={s['N']}, batch {s['batch_size']}, {s['epochs']} epochs, seeds {g['seeds']}); "
        f"true score = mean accuracy over seeds (val and test pooled), ties broken by the mean val loss "
        f"{'(present)' if b.truth_loss is not None else '(absent in this file)'}. Supernets: the same C, N, data "
        f"and batch; SGD (lr {t.lr}, Nesterov, weight decay {t.weight_decay}), cosine to {t.lr_min} over each run, "
        f"{'full epochs' if plan.steps_per_epoch is None else f'{plan.steps_per_epoch} steps per epoch'}. "
        f"Estimates: val accuracy and loss with inherited weights in the architecture's leaf, BN recalibrated on "
        f"{plan.bn_batches} fixed training batches; ranked by accuracy, ties broken by the loss.\n\n"
        f"Seeds: {args.seeds} per method in every cell{primary_seeds} (the tables' 'seeds' column). "
        f"Protocol: rule (a) at E = {', '.join(map(str, args.epochs))} lineage epochs, splits at "
        f"{', '.join(map(str, plan.fractions))} of E (exhaustive: the first split only, 5 children; the "
        f"other splitters: every split, 2 balanced groups each); {rule_b}. Every few-shot run "
        f"forks from the one-shot run of its seed and sampler at the first split (weights, optimizer, sampler "
        f"and RNG state); PA&DA shares the seed's initialisation and data order. GM: R = "
        f"{', '.join(f'{v} ({k})' for k, v in rounds.items()) or '-'} (small: the largest R whose scoring "
        f"costs at most one supernet epoch by pass count; the measured scoring time is the table's 'scoring s'), NB201 shared set; synflow metric split with "
        f"{plan.metric_children} sampled children per distance. Zero-cost references score the untrained "
        f"supernet of each seed on one fixed training batch.\n\n"
        f"Statistics: Kendall tau-b per seed; Δτ = paired difference to one-shot (uniform) per seed; Wilcoxon "
        f"signed-rank (two-sided), Holm-corrected over the methods of each table (one family per table). "
        f"Intervals: 95% percentile bootstrap, two-level (each of {summary['n_boot']} draws resamples the seeds "
        f"and, once for all seeds, the architectures). MDE 80% = (t[n-1, 0.975] + t[n-1, 0.8]) · SD(Δτ) / √n, "
        f"the smallest mean Δτ detected with 80% power at α = 0.05 (≈ 2.8·SD/√n for large n). Tau top-20%: "
        f"tau over the architectures in the true top 20%. Self-consistency: mean tau between the estimates of "
        f"two seeds of the same method (agreement with itself, not with the truth).")


def _timing_text(args: argparse.Namespace, argv: list[str], wall: float, ran: int, planned: int,
                summary: dict, *, finished: int | None = None) -> str:
    command = "python benchmarks/ranking.py " + " ".join(shlex.quote(a) for a in argv)
    partial = ("" if finished is None or finished >= planned else
               f"**Partial: {finished} of the {planned} planned jobs have finished**; the tables hold those, and "
               "rerunning the command without --report-only runs the rest. ")
    return (f"Command: `{command}`. {partial}This invocation ran {ran} of {planned} jobs in {wall / 60:.1f} min wall "
            f"({args.workers} worker(s) × {args.threads} thread); all jobs' own time adds up to "
            f"{summary['job_seconds'] / 3600:.2f} h, {summary['job_seconds'] / 3600 / args.workers:.2f} h on "
            f"{args.workers} worker(s). The 's/run' column is each job's own time as it ran (training summed "
            f"over a resumed job's invocations, plus its estimates), so it grows with whatever else loaded the "
            f"machine then; for methods' relative costs read the supernet-epochs, or `--plan`'s one timed epoch "
            f"per sampler, measured side by side.")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = outputs(args)
    if args.plot_only:
        if not out["summary"].is_file():
            raise DataError(f"no summary at {out['summary']}; run the benchmark (with the same --out) first")
        summary = json.loads(out["summary"].read_text())
        for path in ranking_plots.draw_all(summary, out["estimates"], out["prefix"]):
            print(f"wrote {path}")
        return {"summary": summary}
    plan = make_plan(args)
    jobs = plan_jobs(tuple(args.methods or [m.key for m in DEFAULT_METHODS]), args.seeds, tuple(args.epochs),
                     args.budget or None, plan.fractions, primary=args.primary, primary_seeds=args.primary_seeds)
    jobs_lib.claim_workdir(plan)
    todo = ranking_pool.pending(plan, jobs)
    if args.plan:
        return {"jobs": jobs, "todo": todo, **_show_plan(plan, todo, args)}
    b = jobs_lib.bench(plan)
    truth = ranking_stats.tiebroken(b.truth, b.truth_loss)
    start = time.perf_counter()
    if not args.report_only:
        ranking_pool.run_jobs(plan, jobs, workers=args.workers, on_done=_progress(start, truth))
    wall = time.perf_counter() - start
    wanted, ran = {j.id for j in jobs}, 0 if args.report_only else len(todo)
    results = [r for r in ranking_pool.load_results(plan) if r["id"] in wanted]
    if args.report_only and not any(r["method"] == BASELINE for r in results):
        raise DataError(f"no one-shot job has finished in {plan.workdir}: nothing to report (run without "
                        "--report-only)")
    summary = ranking_summary.summarize(results, b.archs, truth, epochs=args.epochs, budget=args.budget or None,
                                        primary=args.primary, n_boot=args.n_boot, accuracy=b.truth)
    atomic_write(out["summary"], lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
    ranking_plots.write_estimates(results, b.archs, b.truth.tolist(), out["estimates"])
    plots = ranking_plots.draw_all(summary, out["estimates"], out["prefix"]) if args.plot == "yes" else []
    text = ranking_report.render(summary, ceilings=_ceilings(args.groundtruth, len(b.settings["seeds"])),
                                 settings_text=_settings_text(args, plan, b, summary),
                                 timing_text=_timing_text(args, argv, wall, ran, len(jobs), summary,
                                                          finished=len(results)),
                                 plots=[str(p) for p in plots])
    atomic_write(out["report"], lambda tmp: Path(tmp).write_text(text))
    print(text)
    return {"summary": summary, "results": results, "report": out["report"], "plots": plots, "ran": ran}


if __name__ == "__main__":
    main()
