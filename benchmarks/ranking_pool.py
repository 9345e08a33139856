"""Running many ranking jobs, resumably, in worker processes (one torch thread each).

A job is skipped when its result file exists; a few-shot job waits for the
fork its one-shot run leaves (and a lost fork has that one-shot run redone).
One-shot runs go first, then the longest jobs, which packs the workers well::

    >>> from ranking_jobs import example_plan
    >>> from ranking_protocol import plan_jobs
    >>> plan = example_plan()
    >>> jobs = plan_jobs(("exhaustive",), 1, (2,), None, (0.5,))
    >>> [j.id for j in pending(plan, jobs)]
    ['a-2-oneshot-s0', 'a-2-exhaustive-s0', 'zc-0-zerocost-s0']
    >>> run_jobs(plan, jobs)
    >>> len(load_results(plan)), pending(plan, jobs)
    (3, [])
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ranking_jobs import Plan, run_job  # noqa: E402
from ranking_protocol import Job, leaves_fork  # noqa: E402
from worker_pool import worker_pool  # noqa: E402

from gmgraph.errors import ConfigError  # noqa: E402


def load_results(plan: Plan) -> list[dict]:
    """Every finished result in the plan's work folder."""
    folder = Path(plan.workdir) / "results"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def pending(plan: Plan, jobs: list[Job]) -> list[Job]:
    """The jobs still to run: no result yet, or a finished one-shot run whose fork a pending job lacks."""
    todo = [j for j in jobs if not plan.result_path(j).exists()]
    by_id = {j.id: j for j in jobs}
    missing_forks = {j.needs for j in todo if j.needs and not plan.fork_of(j).exists()}
    redo = [by_id[i] for i in sorted(missing_forks) if i in by_id and by_id[i] not in todo]
    return redo + todo


def _priority(job: Job) -> tuple:
    """One-shot runs that leave a fork first (they unlock the few-shot runs), then the longest jobs."""
    return (job.kind != "oneshot" or not leaves_fork(job.method), -job.cost, job.id)


def run_jobs(plan: Plan, jobs: list[Job], *, workers: int = 1,
             on_done: Callable[[dict, int, int], None] | None = None) -> None:
    """Run the pending ``jobs`` on ``workers`` processes, calling ``on_done(result, done, total)`` after each.

    Raises:
        ConfigError: a job forks from a one-shot run that is not in ``jobs``.
    """
    todo = sorted(pending(plan, jobs), key=_priority)
    ids = {j.id for j in jobs}
    for job in todo:
        if job.needs and job.needs not in ids:
            raise ConfigError(f"{job.id} forks from {job.needs}, which this run does not plan")
    waiting_for = {j.needs for j in todo if j.needs and not plan.fork_of(j).exists()}
    done, total = 0, len(todo)

    def report(result: dict) -> None:
        nonlocal done
        done += 1
        waiting_for.discard(result["id"])
        if on_done is not None:
            on_done(result, done, total)

    if workers <= 1:
        for job in todo:
            report(run_job(plan, job))
        return
    with worker_pool(workers, "spawn") as pool:  # fresh interpreters: no forked torch thread pools
        running: dict[futures.Future, Job] = {}
        while todo or running:
            ready = [j for j in todo if j.needs not in waiting_for]
            if not ready and not running:
                raise ConfigError(f"no job can start: {todo[0].id} waits for {todo[0].needs}")
            for job in ready[: workers - len(running)]:
                todo.remove(job)
                running[pool.submit(run_job, plan, job)] = job
            finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in finished:
                running.pop(future)
                report(future.result())  # a failed job raises here; the pool shuts down
