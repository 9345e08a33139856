"""onnxruntime vs torch eager latency of exported NAS-Bench-201 networks (C=16, N=5, 10 classes, 3x32x32).

Run: ``.venv/bin/python benchmarks/bench_onnx.py``. Two architectures: the best
one by NAS-Bench-201 CIFAR-10 test accuracy and the median one. Both runtimes
get the same number of threads (each of ``THREADS`` in turn); each timing is the
median of ``RUNS`` calls after ``WARMUP`` untimed ones, taken in alternating
blocks of ``BLOCK`` calls (torch, onnxruntime, torch, ...) so that load from
other processes hits both alike, without one runtime's spinning worker threads
landing on every single call of the other.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

from gmgraph.nasbench import nb201 as table  # noqa: E402
from gmgraph.onnx_export import export_onnx  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402

THREADS = (1, 2)
RUNS = 50
BLOCK = 10
WARMUP = 5
BATCHES = (1, 64)
TARGET = 0.8  # onnxruntime at most 0.8x torch eager at batch 1


def chosen_archs() -> list[tuple[str, int]]:
    """(name, NB201 index) of the best and the median architecture by CIFAR-10 test accuracy."""
    acc = np.asarray(table.accuracies("cifar10", "test"))
    order = np.argsort(acc, kind="stable")
    return [("best", int(order[-1])), ("median", int(order[len(order) // 2]))]


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies(net: torch.nn.Module, sess, batch: int) -> tuple[float, float]:
    """Median ms per call of torch eager and of onnxruntime on one random batch."""
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    feed = {"input": x.numpy()}
    calls = {"torch": lambda: net(x), "ort": lambda: sess.run(None, feed)}
    times: dict[str, list[float]] = {"torch": [], "ort": []}
    with torch.inference_mode():
        for call in calls.values():
            for _ in range(WARMUP):
                call()
        for _ in range(RUNS // BLOCK):
            for name, call in calls.items():
                for _ in range(BLOCK):
                    start = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - start) * 1e3)
    return statistics.median(times["torch"]), statistics.median(times["ort"])


def main() -> None:
    rows, export_seconds = [], []
    with tempfile.TemporaryDirectory() as folder:
        torch.set_num_threads(1)
        models = []
        for name, index in chosen_archs():
            torch.manual_seed(0)
            net = nb201.network(table.arch_of(index), C=16, N=5, num_classes=10, in_channels=3).eval()
            start = time.perf_counter()
            path = export_onnx(net, torch.randn(1, 3, 32, 32), Path(folder) / f"{name}.onnx")
            export_seconds.append(time.perf_counter() - start)
            models.append((name, index, net, path))
        for threads in THREADS:
            torch.set_num_threads(threads)
            for name, index, net, path in models:
                sess = session(path, threads)
                params = sum(p.numel() for p in net.parameters()) / 1e6
                for batch in BATCHES:
                    torch_ms, ort_ms = latencies(net, sess, batch)
                    ratio = ort_ms / torch_ms
                    meets = ("yes" if ratio <= TARGET else "no") if batch == 1 else ""
                    rows.append([f"{name} (#{index}, {table.query(index):.2f}%)", f"{params:.3f}", threads, batch,
                                 f"{torch_ms:.2f}", f"{ort_ms:.2f}", f"{ratio:.2f}", meets])
                    print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    notes = (
        f"Latency in ms, median of {RUNS} calls after {WARMUP} warm-up calls, in alternating blocks of {BLOCK}. "
        f"torch.set_num_threads(n) and onnxruntime intra_op_num_threads=n with the same n (the threads column; "
        f"inter_op 1, CPUExecutionProvider, default graph optimisations); torch eager is the derived "
        f"fx.GraphModule under inference_mode. Target: ort/torch <= {TARGET} at batch 1. Each export_onnx call "
        f"(dynamo export + onnx.checker full check + onnxruntime comparison at batch 1 and 7, 1 thread) took "
        f"{', '.join(f'{s:.1f}' for s in export_seconds)} s. The machine is shared with other jobs "
        f"(1-minute load average {load:.1f} at the end of the run), so absolute times are noisy."
    )
    headers = ["architecture (NB201 index, C-10 test acc)", "params (M)", "threads", "batch", "torch eager ms",
               "onnxruntime ms", "ort / torch", f"<= {TARGET}"]
    save("onnx", "ONNX export: onnxruntime vs torch eager latency (NB201, C=16, N=5, 3x32x32)", headers, rows, notes)


if __name__ == "__main__":
    main()
