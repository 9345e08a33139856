"""benchmarks/bench_elastic.py --quick writes its two tables, well-formed (no timing is checked)."""

from __future__ import annotations

import doctest
import re

import bench_elastic as bench
import pytest

MEMORY = re.compile(r"^\| ([^|]+) \| ([^|]+) \| ([\d,]+) \| ([\d,]+) \| (\d+\.\d{3}) \|$")
SPEED = re.compile(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)-([\d.]+) \| (\d+)% \|$")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("elastic")
    path = bench.main(["--quick", "--threads", "1", "--out", str(out)])
    assert path == out / "elastic.md"
    return path.read_text()


def test_the_memory_table_divides_what_each_supernet_holds_by_its_largest_subnet(quick):
    rows = [m.groups() for line in quick.splitlines() if (m := MEMORY.match(line))]
    assert {rule.split("(")[0] for _, rule, *_ in rows} == {
        "elastic_kernels", "conv_kernels", "elastic_expansions", "inverted_residual_expansions", "ofa.supernet"}
    for _, rule, held, widest, ratio in rows:
        held, widest = int(held.replace(",", "")), int(widest.replace(",", ""))
        assert float(ratio) == pytest.approx(held / widest, abs=5e-4)
        if rule.startswith(("elastic", "ofa")):  # a count, not a timing: one shared tensor per layer
            assert held == widest


def test_the_speed_table_has_a_row_per_space_with_its_median_inside_its_interval(quick):
    rows = [m.groups() for line in quick.splitlines() if (m := SPEED.match(line))]
    assert len(rows) == 3 and {r[0] for r in rows} == {"1"}
    for *_, elastic, plain, ratio, low, high, _spread in rows:
        assert float(elastic) > 0 and float(plain) > 0
        assert float(low) <= float(ratio) <= float(high)
    assert "Command: `.venv/bin/python benchmarks/bench_elastic.py --quick --threads 1 --out " in quick


def test_doctests():
    assert doctest.testmod(bench).failed == 0
