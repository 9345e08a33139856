"""benchmarks/bench_gpu.py is rehearsed on the CPU, so the minutes a GPU is lent are not lost to a bug in it.

Every section runs through the code it runs on CUDA, at toy sizes (``--smoke``);
the kernel section also runs the Triton kernels in Triton's interpreter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
SECTIONS = ("kernel", "darts", "single-path", "sync", "search", "elastic")


def rehearse(*flags: str, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run the script at toy sizes with no time budget: what it runs never depends on the machine's speed.

    One thread: the suite runs a test process per core, and a second OpenMP thread per process made these toy
    steps tens of times slower. The timeout only guards against a hang (a quiet run takes about 30 s).
    """
    clean = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GMGRAPH_KERNELS", "OUT")}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--steps", "2", "--budget", "inf", *flags]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=clean | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"} | env)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done, rows


def test_the_kernel_section_checks_the_triton_kernels_in_the_interpreter(tmp_path):
    done, rows = rehearse("--skip", "darts,single-path,sync,search,elastic", "--out", str(tmp_path / "gpu.md"),
                          TRITON_INTERPRET="1", GMGRAPH_KERNELS="triton")

    assert done.returncode == 0, done.stderr[-3000:]
    assert len(rows) == 2 * 15 + 3 and all(r["ok"] and r["backend"] == "triton" for r in rows)  # 2 shapes x 15
    layouts = [r["case"] for r in rows if "channels_last" in r["case"]]
    assert layouts == ["2x3x5x4 K=1 skip=1 pool=1 float32 channels_last",
                       "2x3x5x4 K=2 skip=1 pool=1 float32 channels_last"]


# In-process: the whole rehearsal, usage errors, and how a run cut short or partly broken still reports (the
# script's own start as a program is covered above; another subprocess would only add its imports, about 3 s a test).


@pytest.fixture
def bench(monkeypatch):
    import bench_gpu

    monkeypatch.setattr(bench_gpu, "ROWS", [])
    monkeypatch.delenv("OUT", raising=False)
    return bench_gpu


@pytest.mark.e2e
def test_every_section_runs_on_the_cpu_and_writes_only_where_out_says(bench, tmp_path, capsys, monkeypatch):
    """The whole rehearsal, in this process: the same sections and rows as ``python benchmarks/bench_gpu.py``
    (the script's own start is the kernel test's subprocess above), under ``rehearse``'s environment: the
    suite's one thread here, and one OpenMP thread for the search section's ``gmgraph search`` process."""
    for name in ("TRITON_INTERPRET", "GMGRAPH_KERNELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    committed = ROOT / "benchmarks" / "results" / "gpu.md"
    before = committed.read_bytes() if committed.exists() else None
    out = tmp_path / "gpu.md"

    # one warm-up step and one timed step per case: more run no other code on the CPU (no graphs to capture)
    with torch.random.fork_rng(devices=[]):
        code = bench.main(["--device", "cpu", "--smoke", "--steps", "1", "--warmup", "1", "--budget", "inf",
                           "--out", str(out)])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]

    assert code == 0, [r for r in rows if r.get("ok") is False] or captured.err[-3000:]
    assert rows == bench.ROWS  # every row is printed as a JSON line
    assert [r for r in rows if r.get("ok") is False] == []
    assert {r["section"] for r in rows} == set(SECTIONS)
    darts = [r for r in rows if r["section"] == "darts"]
    assert len(darts) == 14  # 7 cases x batches 4 and 8
    assert all(r["ms"] > 0 for r in darts) and [r["vs_unfused_eager_fp32"] for r in darts][::7] == [1.0, 1.0]
    assert [r["case"] for r in darts][4] == "batch 4 fused graphs fp32 cudnn.benchmark"
    assert not any(r["graph_captured"] for r in darts)  # CUDA graphs are CUDA-only
    (search,) = [r for r in rows if r["section"] == "search"]
    assert search["hardware"]["device"] == "cpu"
    assert {r["case"] for r in rows if r["section"] == "sync"} == {"uniform", "darts", "gdas", "pada", "snas", "proxyless", "darts-order-2"}
    text = out.read_text()
    assert text.startswith("# GPU path: CPU (a rehearsal, no GPU)")
    assert all(f"### {name}" in text for name in SECTIONS)
    assert (committed.read_bytes() if committed.exists() else None) == before


def test_a_cpu_run_without_out_is_refused_so_the_gpu_table_holds_gpu_figures_only(bench, capsys):
    code = bench.main(["--device", "cpu", "--smoke", "--steps", "2", "--budget", "inf",
                       "--skip", "kernel,darts,single-path,sync,search,elastic"])

    assert code == 2 and bench.ROWS == []
    captured = capsys.readouterr()
    assert "a CPU run needs --out" in captured.err
    assert [line for line in captured.out.splitlines() if line.startswith("{")] == []  # no row printed


def test_an_unknown_section_is_a_usage_error(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--device", "cpu", "--smoke", "--steps", "2", "--budget", "inf",
                    "--skip", "kernels", "--out", str(tmp_path / "gpu.md")])

    assert exit_.value.code == 2 and "--skip: no section kernels" in capsys.readouterr().err


def test_cases_past_the_budget_are_listed_as_skipped_not_dropped(bench, tmp_path):
    out = tmp_path / "gpu.md"
    code = bench.main(["--device", "cpu", "--smoke", "--budget", "0", "--skip", "kernel,sync,search,elastic", "--out", str(out)])

    assert code == 0
    assert [(r["section"], r.get("skipped")) for r in bench.ROWS] == (
        [("darts", "past the 0 s budget")] * 14 + [("single-path", "past the 0 s budget")] * 4)
    assert out.read_text().count("past the 0 s budget") == 18


def test_a_broken_section_is_a_failed_row_and_the_others_still_run_and_are_written(bench, tmp_path, monkeypatch):
    def broken(args):
        raise RuntimeError("no kernel image is available for execution on the device")

    # the section after the broken one is the kernel checks: the cheapest real section (a tenth of the sync's)
    for name in ("TRITON_INTERPRET", "GMGRAPH_KERNELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(bench, "SECTIONS", (("sync", broken), ("kernel", bench.check_kernels)))
    out = tmp_path / "gpu.md"
    code = bench.main(["--device", "cpu", "--smoke", "--budget", "inf", "--out", str(out)])

    assert code == 1
    assert bench.ROWS[0] == {"section": "sync", "case": "the section itself", "ok": False,
                             "error": "RuntimeError: no kernel image is available for execution on the device"}
    kernel = bench.ROWS[1:]
    assert len(kernel) == 2 * 15 + 3 and all(r["section"] == "kernel" and r["ok"] for r in kernel)  # as on the CPU
    text = out.read_text()
    assert "no kernel image is available" in text and "### kernel" in text


def test_a_search_that_overruns_is_a_failed_row_not_a_crash(bench, monkeypatch):
    def overrun(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(bench.subprocess, "run", overrun)
    monkeypatch.setattr(bench, "clock", lambda: 0.0)  # a fake clock: 1000 s left, so the cap (240 s) applies
    args = bench.parse(["--device", "cpu", "--smoke"])
    args.device, args.deadline = torch.device("cpu"), 1000.0

    bench.search_run(args)

    (only,) = bench.ROWS
    assert only["ok"] is False and only["error"] == "stopped after 240 s"


def test_without_its_baseline_a_darts_row_has_no_ratio(bench, tmp_path, monkeypatch):
    calls = []

    def time_steps(trainer, data, steps, repeats, warmup):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return 10.0

    monkeypatch.setattr(bench, "time_steps", time_steps)
    bench.main(["--device", "cpu", "--smoke", "--budget", "inf", "--skip", "kernel,sync,search,single-path,elastic",
                "--out", str(tmp_path / "g.md")])

    first_batch = [r for r in bench.ROWS if r["case"].startswith("batch 4 ")]
    assert first_batch[0]["ok"] is False
    assert [r["vs_unfused_eager_fp32"] for r in first_batch[1:]] == [None] * 6


def test_the_budget_runs_the_cases_that_start_before_it_and_lists_the_rest(bench, tmp_path, monkeypatch):
    ticks = iter(range(0, 10_000, 10))  # a fake clock: every reading is 10 s after the one before
    monkeypatch.setattr(bench, "clock", lambda: float(next(ticks)))
    monkeypatch.setattr(bench, "time_steps", lambda trainer, data, steps, repeats, warmup: 10.0)
    bench.main(["--device", "cpu", "--smoke", "--budget", "45", "--skip", "kernel,sync,search,single-path,elastic",
                "--out", str(tmp_path / "g.md")])

    skipped = [bool(r.get("skipped")) for r in bench.ROWS]
    assert len(skipped) == 14 and skipped == sorted(skipped)  # the ones that ran, then only skipped ones
    assert skipped.count(False) == 3  # readings 20, 30, 40 are inside the 45 s budget, 50 is past it
