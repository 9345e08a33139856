"""benchmarks/ofa_ranking.py --quick writes its three tables, well-formed; a rerun adds nothing (no quality claim)."""

from __future__ import annotations

import doctest
import re

import ofa_ranking as bench
import pytest

NUM = r"(-?\d+\.\d{3}|nan)"
TRUTH = re.compile(rf"^\| (\d+) \| ([\d ]+) \| (\d+) \| [\d.]+ \| {NUM} / {NUM} / {NUM} \| {NUM} \((\d+)\) \| ")
METHOD = re.compile(rf"^\| (\w+) \| (\d+) \| ([-\d. ]+) \| {NUM} \| {NUM} to {NUM} \| {NUM} \| (\d+) \| \d+ \|$")
PAIR = re.compile(r"^\| (\w+) - (\w+) \| (\d+) \| ([-+\d. ]+) \| ([-+]\d\.\d{3}) \| .* \| (\d\.\d{3}) \| (\d\.\d{3}) \| ")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    work = tmp_path_factory.mktemp("ofa")
    argv = ["--quick", "--workdir", str(work), "--out", str(work)]
    first = bench.main(argv).read_text()
    before = {name: (work / name).read_text() for name in ("groundtruth.csv", "estimates.csv")}
    second = bench.main(argv).read_text()
    after = {name: (work / name).read_text() for name in ("groundtruth.csv", "estimates.csv")}
    return first, second, before, after


def _rows(text: str, pattern: re.Pattern) -> list[tuple]:
    return [m.groups() for line in text.splitlines() if (m := pattern.match(line))]


@pytest.mark.e2e  # the first test of the quick run (runs): the run is set up for it
def test_the_ground_truth_row_counts_every_arch_and_seed(runs):
    first, _, before, _ = runs
    [(archs, seeds, epochs, low, mean, high, _tau, pairs)] = _rows(first, TRUTH)
    assert (archs, seeds.split(), epochs, pairs) == ("4", ["0", "1"], "1", "1")
    assert float(low) <= float(mean) <= float(high)
    assert len(before["groundtruth.csv"].splitlines()) == 1 + 4 * 2


def test_every_method_has_a_tau_per_seed_inside_minus_one_to_one(runs):
    first, *_ = runs
    rows = _rows(first, METHOD)
    assert [r[0] for r in rows] == list(bench.METHODS)
    for method, seeds, taus, mean, low, high, _consistency, cost in rows:
        values = [float(t) for t in taus.split()]
        assert seeds == "2" and len(values) == 2 and all(-1 <= t <= 1 for t in values)
        assert float(mean) == pytest.approx(sum(values) / 2, abs=1e-3) and float(low) <= float(high)
        assert int(cost) == (3 if method in ("gm", "random") else 2)  # the split leaf pair trains its last epoch


def test_the_comparisons_are_paired_by_seed_and_holm_never_lowers_a_p(runs):
    first, *_ = runs
    rows = _rows(first, PAIR)
    assert [(a, b) for a, b, *_ in rows] == [(m, "uniform") for m in bench.METHODS[1:]] + [("gm", "random")]
    for *_, pairs, diffs, mean, p, p_holm in rows:
        assert pairs == "2" and float(mean) == pytest.approx(sum(float(d) for d in diffs.split()) / 2, abs=1e-3)
        assert float(p) <= float(p_holm) <= 1


def test_a_rerun_adds_no_rows_and_reports_the_same_tables(runs):
    first, second, before, after = runs
    assert after == before
    strip = [line for line in first.splitlines() if not line.startswith("Command:")]
    assert strip == [line for line in second.splitlines() if not line.startswith("Command:")]
    assert "PARTIAL" not in first


def test_doctests():
    assert doctest.testmod(bench).failed == 0
