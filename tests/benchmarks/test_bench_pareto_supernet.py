"""benchmarks/bench_pareto_supernet.py --quick runs end to end and its hypervolume fractions are fractions."""

from __future__ import annotations

import re

import bench_pareto_supernet as bench
import groundtruth_lib as local
import numpy as np
import pytest


def test_front_fraction_is_one_for_the_truth_and_less_for_a_wrong_score():
    truth = np.array([[0.9, 3.0], [0.8, 2.0], [0.7, 1.0], [0.6, 2.5], [0.1, 0.5]])  # last: a dead arch
    ref = bench.reference(truth)
    assert ref == pytest.approx((0.57, 3.2))
    true_hv = bench.hypervolume(truth, ref, bench.SENSES)
    assert bench.front_fraction(truth[:, 0], truth, ref, true_hv) == pytest.approx(1.0)
    inverted = -truth[:, 0]  # prefers the worst archs
    assert bench.front_fraction(inverted, truth, ref, true_hv) < 0.6


def test_quick_run_writes_a_table(tmp_path):
    # a made-up ground truth of 12 archs on the tiny synthetic data (the pipeline reads only its rows and side
    # file): the same code as on the committed digits one, without its 360 val images per estimate
    truth = tmp_path / "gt.csv"
    local.made_up(12, [0, 1], out=truth, schedule=local.Schedule(C=2, N=1, epochs=1, batch_size=16))
    path = bench.main(["--quick", "--groundtruth", str(truth), "--out", str(tmp_path)])
    text = path.read_text()
    fractions = [float(x) for x in re.findall(r"\| (?:one-shot|GM few-shot|random score[^|]*) \| \d+ \| ([0-9.]+) \|", text)]
    assert len(fractions) == 3 and all(0.0 < f <= 1.0 for f in fractions)
