"""Tests of ``gmgraph rank`` and gmgraph.rank_job (zero-cost proxies vs NAS-Bench-201)."""

from __future__ import annotations

import csv

import pytest
import torch

from gmgraph.arch import format_nb201
from gmgraph.cli import main
from gmgraph.errors import ConfigError
from gmgraph.nasbench import nb201
from gmgraph.rank_job import image_batch, parse_against, rank
from gmgraph.spaces.nb201 import count_params


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_params_rank_prints_the_last_line_and_writes_the_csv(tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["rank", "--metric", "params", "--sample", "20", "--seed", "0", "--csv", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("kendall_tau=") and " spearman=" in lines[-1]
    tau = float(lines[-1].split()[0].split("=")[1])
    rows = read(out)
    assert [r["arch_str"] for r in rows] == [format_nb201(a) for a in nb201.sample(20, 0)]
    assert all(nb201.index_of(r["arch_str"]) == int(r["index"]) for r in rows)
    for row in rows:  # unpruned counts: exactly the table's parameters, the table's accuracy
        assert int(float(row["score"])) == count_params(row["arch_str"])
        assert abs(int(float(row["score"])) / 1e6 - nb201.params(row["arch_str"])) < 1e-5
        assert float(row["true_accuracy"]) == nb201.query(row["arch_str"])
    assert tau > 0.3  # bigger NB201 networks are better on CIFAR-10


def test_synflow_on_a_narrow_network_and_the_default_csv_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["rank", "--metric", "synflow", "--sample", "8", "--width", "4", "--cells", "1", "--quiet",
            "--against", "nb201:cifar100", "--split", "val", "--epochs", "12"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "C=4, N=1" in out and out.strip().splitlines()[-1].startswith("kendall_tau=")
    rows = read(tmp_path / "rank-synflow-cifar100.csv")
    assert len(rows) == 8 and all(float(r["score"]) > 0 or "none" in r["arch_str"] for r in rows)
    assert float(rows[0]["true_accuracy"]) == nb201.query(rows[0]["arch_str"], "cifar100", "val", 12)


def test_data_dependent_metric_says_the_data_is_not_the_benchmarks(tmp_path, capsys):
    argv = ["rank", "--metric", "grad_norm", "--sample", "5", "--width", "4", "--cells", "1", "--batch-size", "8",
            "--csv", str(tmp_path / "g.csv"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "note: images are digits" in out and "not cifar10" in out


def test_the_scores_are_seeded():
    a = rank("synflow", "imagenet16-120", n=4, seed=1, width=4, cells=1, progress=False)
    b = rank("synflow", "imagenet16-120", n=4, seed=1, width=4, cells=1, progress=False)
    assert [r["score"] for r in a.rows] == [r["score"] for r in b.rows]


def test_batches_fit_the_benchmarks_network():
    (x, y), note = image_batch("synthetic", "imagenet16-120", batch_size=4)
    assert tuple(x.shape) == (4, 3, 16, 16) and note is not None
    assert parse_against("NB201:CIFAR100") == "cifar100"
    with pytest.raises(ConfigError, match="nb201:cifar10"):
        parse_against("nb101:cifar10")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "magic"], "unknown zero-cost metric 'magic'; accepted: synflow"),
        (["--metric", "params", "--against", "cifar10"], "--against 'cifar10' is not accepted; choose one of nb201:"),
        (["--metric", "params", "--sample", "0"], "--sample must be a positive integer, got 0"),
        (["--metric", "params", "--sample", "20000"], "--sample must be at most 15,625"),
        (["--metric", "params", "--epochs", "100"], "unknown epochs 100; accepted: 200, 12"),
        (["--metric", "snip", "--data", "cifar10"], "CIFAR-10 needs a data directory"),
        (["--metric", "params", "--device", "tpu"], "device 'tpu' is not one of auto, cpu, cuda, cuda:N"),
    ],
)
def test_errors_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["rank", *args, "--csv", str(tmp_path / "x.csv")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmgraph: error: ") and message in lines[0]
    assert not (tmp_path / "x.csv").exists()


def test_device_is_printed_and_an_explicit_cpu_gives_the_default_scores(tmp_path, capsys):
    argv = ["rank", "--metric", "synflow", "--sample", "4", "--width", "4", "--cells", "1", "--quiet"]
    assert main([*argv, "--device", "cpu", "--csv", str(tmp_path / "cpu.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device: cpu" and sum(line.startswith("device: ") for line in lines) == 1
    on_cpu = rank("synflow", n=4, width=4, cells=1, progress=False, device="cpu")
    assert [float(r["score"]) for r in read(tmp_path / "cpu.csv")] == [r["score"] for r in on_cpu.rows]
    assert on_cpu.device == "cpu"
    if not torch.cuda.is_available():  # the default, auto, is the CPU here
        assert rank("synflow", n=4, width=4, cells=1, progress=False).rows == on_cpu.rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["rank", "--metric", "params", "--device", "cuda", "--csv", str(tmp_path / "x.csv")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gmgraph: error: --device cuda") and "--device cpu" in lines[0]
    assert captured.out == "" and not (tmp_path / "x.csv").exists()
    with pytest.raises(ConfigError, match="--device cpu"):
        rank("params", n=2, progress=False, device="cuda")
