"""What ``gmgraph search`` and ``gmgraph rank`` refuse at their start, before any training or data (issue 32,
items 5, 7 and 11): limits no architecture can meet, runs that cannot fit the machine's memory, ``--nproc``
beyond the machine, and flags named in their errors."""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch import nn

import gmgraph
import gmgraph.search_job as search_job
from gmgraph import spaces
from gmgraph.choice import Choice, Zero
from gmgraph.cli import main
from gmgraph.config import SearchConfig, SearchSettings
from gmgraph.errors import ConfigError
from gmgraph.latency import LatencyTable
from gmgraph.search.cost_bounds import smallest_costs
from gmgraph.search.measures import arch_measures
from gmgraph.train import distributed, memory

SMALL = ["--data", "synthetic", "--method", "gm", "--sampler", "uniform", "--width", "4", "--cells", "1", "--epochs", "2", "--split-at", "1", "--rounds", "1",
         "--evaluations", "3", "--final-epochs", "0", "--steps-per-epoch", "1", "--quiet"]


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(search_job, "run_fewshot", lambda *a, **k: pytest.fail("trained before refusing"))


def _refused(argv, capsys) -> str:
    """Run ``argv``: exit 2 and one error line, which is returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmgraph: error: ") and err.count("\n") == 1, err
    return err.strip()


# ------------------------------------------------------------------ item 5: impossible limits


def test_a_params_limit_below_the_smallest_network_is_refused_before_training(tmp_path, capsys, no_training):
    line = _refused(["search", *SMALL, "--max-params", "0.001", "--out", str(tmp_path / "run")], capsys)
    root = gmgraph.trace(spaces.get("nb201").build(width=4, cells=1, num_classes=10, in_channels=3))
    least = smallest_costs(root, (3, 32, 32))["params"]
    assert f"--max-params 0.001 cannot be met: every architecture of this space has at least {least:.6g} M " \
           "parameters" in line
    assert not (tmp_path / "run").exists()  # no checkpoint.pt, no folder


def test_a_limit_the_smallest_network_meets_is_not_refused():
    root = gmgraph.trace(spaces.get("nb201").build(width=4, cells=1, num_classes=10, in_channels=3))
    least = smallest_costs(root, (3, 32, 32))
    exact = SearchSettings(search=SearchConfig(max_params=least["params"], max_flops=least["flops"]))
    search_job.check_limits(exact, root, (3, 32, 32))  # the cheapest arch meets them
    under = SearchSettings(search=SearchConfig(max_flops=least["flops"] * 0.999))
    with pytest.raises(ConfigError, match="--max-flops .* cannot be met"):
        search_job.check_limits(under, root, (3, 32, 32))


def test_argmax_with_a_limit_is_refused_before_training(tmp_path, capsys, no_training):
    line = _refused(["search", *SMALL, "--sampler", "darts", "--search", "argmax", "--max-params", "1",
                     "--out", str(tmp_path / "run")], capsys)
    assert "--search argmax cannot honour --max-params" in line


def test_a_latency_limit_under_the_fixed_part_is_refused_before_training(tmp_path, capsys, no_training, monkeypatch):
    table = LatencyTable(key={}, space={}, flow=[], fixed_ms=2.0, entries=[])  # every network runs 2 ms of stem+head
    monkeypatch.setattr(search_job, "_latency_table", lambda *a, **k: table)
    line = _refused(["search", *SMALL, "--max-latency-ms", "1.5", "--out", str(tmp_path / "run")], capsys)
    assert "--max-latency-ms 1.5 cannot be met: every network of this space takes at least 2 ms" in line


class _PrunedStem(nn.Module):
    """``head(a(stem(x)) + b(x))``: the stem only feeds decision a, so with a = none and b = skip derive drops it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 3, padding=1)
        self.a = Choice({"none": Zero(), "conv": nn.Conv2d(1, 1, 3, padding=1)}, "a")
        self.b = Choice({"none": Zero(), "skip": nn.Identity(), "conv": nn.Conv2d(1, 1, 1)}, "b")
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head((self.a(self.stem(x)) + self.b(x)).flatten(1))


def test_the_bounds_are_the_least_any_architecture_costs_where_pruning_drops_a_plain_module():
    root = gmgraph.trace(_PrunedStem())
    measures = arch_measures(root, (1, 4, 4))
    archs = [dict(zip(("a", "b"), ops)) for ops in itertools.product(("none", "conv"), ("none", "skip", "conv"))]
    least = smallest_costs(root, (1, 4, 4))
    for name in ("params", "flops"):
        assert least[name] == min(measures[name](arch) for arch in archs)
    # counting every plain module (the stem too) would refuse a limit the cheapest arch meets
    assert least["params"] * 1e6 == sum(p.numel() for p in root.head.parameters())


def test_the_bounds_hold_on_nb201_and_the_empty_cell_meets_them():
    root = gmgraph.trace(spaces.get("nb201").build(width=4, cells=2, num_classes=10, in_channels=1))
    measures, least = arch_measures(root, (1, 8, 8)), smallest_costs(root, (1, 8, 8))
    labels = gmgraph.space(root)
    empty = dict.fromkeys(labels, "none")
    assert least == {name: measures[name](empty) for name in least}
    for seed in range(10):
        arch = {label: ops[(seed * 7 + i) % len(ops)] for i, (label, ops) in enumerate(labels.items())}
        assert all(measures[name](arch) >= least[name] for name in least)


# ------------------------------------------------------------------ item 7: memory and workers


def _machine(monkeypatch, total: float, available: float | None = None) -> None:
    budget = memory.Budget("this machine has", int(total), int(available if available is not None else total))
    monkeypatch.setattr(memory, "budget", lambda device: budget)


def test_a_supernet_too_big_for_the_machine_is_one_line_naming_the_width_that_fits(tmp_path, capsys, monkeypatch):
    _machine(monkeypatch, 8e9)
    monkeypatch.setattr(search_job, "build_supernet", lambda *a, **k: pytest.fail("allocated the supernet"))
    line = _refused(["search", *SMALL, "--width", "100000", "--out", str(tmp_path / "run")], capsys)
    assert "this run cannot fit in memory: training needs at least" in line and "this machine has 8.0 GB" in line
    width = int(re.search(r"--width ([\d,]+) or less fits", line)[1].replace(",", ""))

    def build(w):
        return spaces.get("nb201").build(width=w, cells=1, num_classes=10, in_channels=3)
    assert memory.estimate(build, width, (3, 32, 32), 64).total_bytes <= 8e9
    assert memory.estimate(build, int(width * 1.05) + 1, (3, 32, 32), 64).total_bytes > 8e9  # to within 5%
    assert not (tmp_path / "run").exists()


def test_a_batch_too_big_for_the_machine_names_the_batch_size_that_fits(monkeypatch):
    def build(w):
        return spaces.get("nb201").build(width=w, cells=1, num_classes=10, in_channels=3)
    need = memory.estimate(build, 8, (3, 32, 32), 1000)
    room = need.weight_bytes + need.activation_bytes // 3
    _machine(monkeypatch, room)
    with pytest.raises(ConfigError, match=r"--batch-size ([\d,]+) or less fits") as refused:
        memory.check_training(build, 8, (3, 32, 32), 1000, torch.device("cpu"))
    fits = int(re.search(r"--batch-size ([\d,]+)", str(refused.value))[1].replace(",", ""))
    assert memory.estimate(build, 8, (3, 32, 32), fits).total_bytes <= room
    assert memory.estimate(build, 8, (3, 32, 32), fits + 1).total_bytes > room


def test_the_meta_estimate_counts_the_real_supernets_parameters_and_allocates_nothing():
    def build(w):
        return spaces.get("nb201").build(width=w, cells=1, num_classes=10, in_channels=1)
    need = memory.estimate(build, 4, (1, 8, 8), batch=32)
    assert need.params == sum(p.numel() for p in build(4).parameters())
    assert need.weight_bytes == 8 * need.params  # weights and momentum, fp32
    assert need.activation_bytes > 0
    assert memory.estimate(build, 4, (1, 8, 8), batch=32, every_op=True).activation_bytes > need.activation_bytes
    huge = memory.estimate(build, 100_000, (1, 8, 8), batch=32)  # terabytes, estimated without allocating them
    assert huge.weight_bytes > 1e12


def test_nproc_beyond_the_machines_memory_is_refused_before_any_worker_starts(tmp_path, capsys, monkeypatch):
    _machine(monkeypatch, 24e9, 20e9)
    monkeypatch.setattr(memory, "process_bytes", lambda: 380_000_000)
    monkeypatch.setattr(distributed, "launch", lambda *a, **k: pytest.fail("workers were started"))
    line = _refused(["search", *SMALL, "--nproc", "64", "--out", str(tmp_path / "run")], capsys)
    assert line == ("gmgraph: error: --nproc 64 cannot fit in memory: 64 workers and their launcher need about "
                    "24.7 GB (380 MB each for Python and torch, before any training), and this machine has 24.0 GB; "
                    "--nproc 62 or fewer fits")
    assert not (tmp_path / "run").exists()


def test_more_workers_than_cores_is_warned_with_the_numbers(tmp_path, capsys, monkeypatch):
    _machine(monkeypatch, 64e9)
    monkeypatch.setattr(memory, "process_bytes", lambda: 380_000_000)
    monkeypatch.setattr(memory, "cores", lambda: 2)
    started = []
    monkeypatch.setattr(distributed, "launch", lambda args, n: started.append(n) or 0)
    assert main(["search", *[a for a in SMALL if a != "--quiet"], "--nproc", "6", "--out", str(tmp_path / "run")]) == 0
    assert started == [6]
    assert ("warning: --nproc 6 starts more workers than this machine's 2 cores: they take turns on the cores and "
            "wait for each other at every step, so this is slower than --nproc 2") in capsys.readouterr().err


# ------------------------------------------------------------------ item 11: errors that name their flag, early


def test_rank_sample_0_names_the_flag(capsys):
    assert main(["rank", "--metric", "params", "--sample", "0", "--quiet"]) == 2
    assert capsys.readouterr().err == "gmgraph: error: --sample must be a positive integer, got 0\n"


def test_rank_refuses_a_bad_split_before_loading_images(capsys, monkeypatch):
    import gmgraph.rank_job as nasbench_rank

    monkeypatch.setattr(nasbench_rank, "image_batch", lambda *a, **k: pytest.fail("images were loaded"))
    assert main(["rank", "--metric", "snip", "--split", "train", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown split 'train'" in err and "device:" not in err


@pytest.mark.parametrize("space, shape", [("nb201", (3, 16, 16)), ("mobilenet", (1, 8, 8)), ("ofa", (1, 8, 8))])
def test_a_small_supernet_is_counted_on_the_cpu_as_the_meta_pass_counts_it_and_leaves_the_rng_alone(
        space, shape, monkeypatch):
    spec = spaces.get(space, None)

    def build(width):
        return spec.make(width, 1, 10, shape[0])

    torch.manual_seed(7)
    on_cpu = memory.estimate(build, 4, shape, 16, every_op=True)
    after = torch.rand(1)
    monkeypatch.setattr(memory, "REAL_PASS_PARAMS", 0)  # every network counts on the meta device
    torch.manual_seed(7)
    on_meta = memory.estimate(build, 4, shape, 16, every_op=True)
    assert on_cpu == on_meta and on_cpu.activation_bytes > 0
    torch.manual_seed(7)
    assert torch.equal(torch.rand(1), after)  # the CPU build drew nothing from the caller's generator
