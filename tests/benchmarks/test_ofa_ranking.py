"""benchmarks/ofa_ranking.py --quick writes its three tables, well-formed; a rerun adds nothing; --depths restricts
every stage; a workdir of other settings is refused (no quality claim)."""

from __future__ import annotations

import doctest
import re

import ofa_ranking as bench
import pytest

from gmgraph.errors import ConfigError

NUM = r"(-?\d+\.\d{3}|nan)"
TRUTH = re.compile(rf"^\| (\d+) \| ([\d ]+) \| (\d+) \| [\d.]+ \| {NUM} / {NUM} / {NUM} \| {NUM} \((\d+)\) \| ")
METHOD = re.compile(rf"^\| (\w+) \| (\d+) \| ([-\d. ]+) \| {NUM} \| {NUM} to {NUM} \| {NUM} \| (\d+) \| \d+ \|$")
PAIR = re.compile(r"^\| (\w+) - (\w+) \| (\d+) \| ([-+\d. ]+) \| ([-+]\d\.\d{3}) \| .* \| (\d\.\d{3}) \| (\d\.\d{3}) \| ")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("ofa")


@pytest.fixture(scope="module")
def runs(work):
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


def test_depths_restrict_every_stage_and_the_report_says_so(tmp_path):
    bench.main(["--quick", "--depths", "d4,d3", "--methods", "shrink", "--workdir", str(tmp_path), "--out",
                str(tmp_path)])
    names = [row["arch"] for row in bench.read_csv(tmp_path / "groundtruth.csv")]
    assert len(names) == 4 * 2 and len(set(names)) == 4
    stages = [part.split(":") for name in names for part in name.split("/")]
    assert {depth for depth, _ in stages} == {"d3", "d4"}  # both depths drawn, no other
    assert all(blocks.count("-") == (1 if depth == "d3" else 0) for depth, blocks in stages)
    assert [row["method"] for row in bench.read_csv(tmp_path / "estimates.csv")] == ["shrink"] * 4 * 2
    report = (tmp_path / "ofa_ranking.md").read_text()
    assert "restrict(gm, {'s<i>.depth': ('d3', 'd4')})" in report and "the depth of each stage and" in report
    assert "shrink: `kernel:1,depth:1`" in report


def test_a_workdir_of_other_settings_is_refused(runs, work, tmp_path_factory):
    with pytest.raises(ConfigError, match="holds truth rows of depths"):
        bench.main(["--quick", "--depths", "d2,d3", "--workdir", str(work), "--out", str(tmp_path_factory.mktemp("o"))])
    with pytest.raises(ConfigError, match="made before it was written"):
        old = tmp_path_factory.mktemp("old")
        (old / "groundtruth.csv").write_text("arch,seed\n")
        bench.main(["--quick", "--workdir", str(old), "--out", str(old)])


def test_the_depth_free_schedule_shrinks_depth_between_kernel_and_width():
    assert bench.shrink_text(12, depth=True) == "full:2,kernel:2,depth:2+2,width:2+2"
    assert bench.shrink_text(12) == "full:3,kernel:3,width:3+3"
    with pytest.raises(ConfigError, match="each depth is one of d2, d3, d4"):
        bench.parse_args(["--depths", "d1"])
