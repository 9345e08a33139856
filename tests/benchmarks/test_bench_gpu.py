"""benchmarks/bench_gpu.py is rehearsed on the CPU, so the minutes a GPU is lent are not lost to a bug in it.

Every section runs through the code it runs on CUDA, at toy sizes (``--smoke``);
the kernel section also runs the Triton kernels in Triton's interpreter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
SECTIONS = ("kernel", "darts", "single-path", "sync", "search")


def rehearse(*flags: str, **env: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    clean = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "GMGRAPH_KERNELS", "OUT")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--steps", "2", *flags],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=clean | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"} | env)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done, rows


def test_every_section_runs_on_the_cpu_and_writes_only_where_out_says(tmp_path):
    committed = ROOT / "benchmarks" / "results" / "gpu.md"
    before = committed.read_bytes() if committed.exists() else None
    out = tmp_path / "gpu.md"

    done, rows = rehearse("--out", str(out))

    assert done.returncode == 0, done.stderr[-3000:]
    assert [r for r in rows if r.get("ok") is False] == []
    assert {r["section"] for r in rows} == set(SECTIONS)
    darts = [r for r in rows if r["section"] == "darts"]
    assert len(darts) == 12  # 6 cases x batches 4 and 8
    assert all(r["ms"] > 0 for r in darts) and [r["vs_unfused_eager_fp32"] for r in darts][::6] == [1.0, 1.0]
    assert not any(r["graph_captured"] for r in darts)  # CUDA graphs are CUDA-only
    (search,) = [r for r in rows if r["section"] == "search"]
    assert search["hardware"]["device"] == "cpu"
    assert {r["case"] for r in rows if r["section"] == "sync"} == {"uniform", "darts", "gdas", "pada"}
    text = out.read_text()
    assert text.startswith("# GPU path: CPU (a rehearsal, no GPU)")
    assert all(f"### {name}" in text for name in SECTIONS)
    assert (committed.read_bytes() if committed.exists() else None) == before


def test_the_kernel_section_checks_the_triton_kernels_in_the_interpreter(tmp_path):
    done, rows = rehearse("--skip", "darts,single-path,sync,search", "--out", str(tmp_path / "gpu.md"),
                          TRITON_INTERPRET="1", GMGRAPH_KERNELS="triton")

    assert done.returncode == 0, done.stderr[-3000:]
    assert len(rows) == 21 and all(r["ok"] and r["backend"] == "triton" for r in rows)
    layouts = [r["case"] for r in rows if "channels_last" in r["case"]]
    assert layouts == ["2x3x5x4 K=1 skip=1 pool=1 float32 channels_last",
                       "2x3x5x4 K=2 skip=1 pool=1 float32 channels_last"]


def test_a_cpu_run_without_out_is_refused_so_the_gpu_table_holds_gpu_figures_only():
    done, rows = rehearse("--skip", "kernel,darts,single-path,sync,search")

    assert done.returncode == 2 and rows == []
    assert "a CPU run needs --out" in done.stderr


def test_an_unknown_section_is_a_usage_error(tmp_path):
    done, _ = rehearse("--skip", "kernels", "--out", str(tmp_path / "gpu.md"))

    assert done.returncode == 2 and "--skip: no section kernels" in done.stderr
