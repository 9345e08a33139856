"""Time trace, restrict, split and derive on the NAS-Bench-201 supernet (C=16, N=5).

Run: ``.venv/bin/python benchmarks/bench_passes.py`` (median of 20 runs each).
Baseline in the same run: ``copy.deepcopy`` of the whole supernet, the floor of
any pass that must copy weights.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _table import save  # noqa: E402

import gmgraph  # noqa: E402
from gmgraph.passes import derive, restrict, split  # noqa: E402
from gmgraph.spaces import nb201  # noqa: E402

RUNS = 20


def median_ms(fn) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    model = nb201.supernet(C=16, N=5)
    gm = gmgraph.trace(model)
    generator = torch.Generator().manual_seed(0)
    archs = [gmgraph.sample(gm, generator) for _ in range(RUNS)]
    conv = {label: "nor_conv_3x3" for label in nb201.LABELS}
    half = [["none", "skip_connect"], ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]]
    baseline = median_ms(lambda: copy.deepcopy(gm))
    it = iter(archs * 2)
    timings = [
        ("trace", median_ms(lambda: gmgraph.trace(model)), None),
        ("restrict (1 label to 2 ops)", median_ms(lambda: restrict(gm, {"1<-0": half[0]})), 100),
        ("split (5 ops into 2+3)", median_ms(lambda: split(gm, "1<-0", half)), None),
        ("derive (random arch)", median_ms(lambda: derive(gm, next(it))), 50),
        ("derive (all conv3x3)", median_ms(lambda: derive(gm, conv)), 50),
        ("baseline: deepcopy(supernet)", baseline, None),
    ]
    rows = [
        [name, f"{ms:.1f}", f"{ms / baseline:.2f}x", "" if target is None else f"<= {target} ms"]
        for name, ms, target in timings
    ]
    save("passes", "Graph passes on the NB201 supernet (C=16, N=5), median of 20",
         ["pass", "ms", "vs deepcopy", "target"], rows)


if __name__ == "__main__":
    main()
