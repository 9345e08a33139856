"""A benchmark killed with SIGTERM takes its worker processes with it (benchmarks/worker_pool.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from worker_pool import worker_pool

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# A benchmark whose two workers write their pids, then work "forever" (10 minutes) while it waits for them.
SCRIPT = """
import os, sys, time
sys.path.insert(0, {benchmarks!r})
from worker_pool import worker_pool

def work(folder):
    with open(os.path.join(folder, f"{{os.getpid()}}.pid"), "w") as f:
        f.write("")
    time.sleep(600)

if __name__ == "__main__":
    with worker_pool(2, sys.argv[2]) as pool:
        jobs = [pool.submit(work, sys.argv[1]) for _ in range(2)]
        for job in jobs:
            job.result()
"""


def alive(pid: int) -> bool:
    """Running or sleeping (not gone, not a zombie waiting for a parent to reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_until(condition, guard: float = 120.0) -> bool:
    """Poll ``condition`` until it holds; ``guard`` seconds only stop a hang, they never decide the test."""
    deadline = time.monotonic() + guard  # clock: hang guard
    while not condition():
        if time.monotonic() > deadline:  # clock: hang guard
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_the_workers_end_when_the_benchmark_is_killed(tmp_path, start_method):
    script = tmp_path / "bench.py"
    script.write_text(SCRIPT.format(benchmarks=str(BENCHMARKS)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bench = subprocess.Popen([sys.executable, str(script), str(tmp_path), start_method], env=env)
    try:
        assert wait_until(lambda: len(list(tmp_path.glob("*.pid"))) == 2), "the workers never started"
        workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
        assert all(alive(pid) for pid in workers)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) == -signal.SIGTERM  # killed at once, no cleanup of its own
        assert wait_until(lambda: not any(alive(pid) for pid in workers)), "a worker outlived the benchmark"
    finally:
        bench.kill()
        for pid in [int(p.stem) for p in tmp_path.glob("*.pid")]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def set_variable(name: str, value: str) -> None:
    os.environ[name] = value


def read_variable(name: str) -> str | None:
    return os.environ.get(name)


def test_the_pool_runs_jobs_and_the_initializer_in_each_worker():
    with worker_pool(2, "fork", set_variable, ("GMGRAPH_TEST_WORKER", "ready")) as pool:
        assert list(pool.map(read_variable, ["GMGRAPH_TEST_WORKER"] * 3)) == ["ready"] * 3
    assert "GMGRAPH_TEST_WORKER" not in os.environ  # it ran in the workers, not here
