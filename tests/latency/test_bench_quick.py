"""benchmarks/bench_latency.py --quick runs end to end on real onnxruntime and writes its table."""

from __future__ import annotations

import bench_latency


def test_quick_benchmark_writes_a_table(tmp_path):
    path = bench_latency.main(["--quick", "--out", str(tmp_path)])
    assert path == tmp_path / "latency.md"
    text = path.read_text()
    header = "| " + " | ".join(bench_latency.HEADERS) + " |"
    assert header in text and "Command: `.venv/bin/python benchmarks/bench_latency.py --quick`" in text
    row = next(line for line in text.splitlines() if line.startswith("| nb201 w4 c1"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == len(bench_latency.HEADERS) and cells[1] == "4"
    assert -1.0 <= float(cells[4]) <= 1.0 and cells[5].endswith("%")  # rho and the share within 10 %
