"""``gmgraph search`` with limits and objectives (issue 17): the chosen arch keeps every limit, a Pareto
search reports its front and front.pt, ``gmgraph export --pick`` exports a point, and bad values are one line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import gmgraph
import gmgraph.search_job as search_job
from gmgraph.cli import main
from gmgraph.onnx_export import read_metadata
from gmgraph.search.canonical import canonical_form
from gmgraph.search.pareto import non_dominated
from gmgraph.spaces import nb201
from tests.conftest import tiny_search

TWO_LABELS = "1<-0,3<-2"
"""GM scores 2 of NB201's 6 labels: enough to split, and on digits the same split as scoring all six."""


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_a_params_limit_is_kept_and_reported(tmp_path):
    # NB201 C=4 N=1 on digits: archs span about 0.004-0.010 M params; 0.006 rules out many
    tiny_search(tmp_path, "digits", max_params=0.006, evaluations=8, export="false", labels=TWO_LABELS)
    report = _report(tmp_path)
    assert report["final"]["params_estimate"] <= 0.006
    assert report["final"]["params"] / 1e6 == pytest.approx(report["final"]["params_estimate"])
    assert report["search"]["limits"] == {"params": 0.006} and report["search"]["rejected"] > 0


def test_an_impossible_limit_is_one_clear_line(tmp_path, capsys, monkeypatch):
    # refused from the space alone, before any training: no checkpoint.pt, no run folder left behind
    monkeypatch.setattr(search_job, "run_fewshot", lambda *a, **k: pytest.fail("trained despite an impossible limit"))
    argv = ["search", "--width", "4", "--cells", "1", "--epochs", "2", "--method", "gm", "--sampler", "uniform", "--split-at", "1", "--rounds", "1",
            "--steps-per-epoch", "1", "--evaluations", "3", "--final-epochs", "0", "--max-flops", "1e-9",
            "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-flops 1e-09 cannot be met" in err[0] and "at least 0.124074 M FLOPs" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def pareto_run(tmp_path_factory):
    """One Pareto search (accuracy and params, 20 evaluations) for the two tests that read it: its front and
    exports here, and that its front offers each network once (the issue's case, below). No best.onnx:
    `export --pick` exports from front.pt, which the run writes either way."""
    out = tmp_path_factory.mktemp("pareto")
    tiny_search(out, "digits", search="pareto", objectives="accuracy,params", evaluations=20, export="false",
                html="true", labels=TWO_LABELS)
    return out


def test_a_pareto_search_reports_its_front_and_exports_any_point(pareto_run, capsys):
    pareto = _report(pareto_run)["pareto"]
    values = np.array([[p["values"]["accuracy"], p["values"]["params"]] for p in pareto["front"]])
    assert non_dominated(values, ("max", "min")).all() and len(values) >= 1
    history = np.array([[p["values"]["accuracy"], p["values"]["params"]] for p in pareto["history"]])
    front_of_history = {tuple(v) for v in history[non_dominated(history, ("max", "min"))]}
    assert {tuple(v) for v in values} == front_of_history  # the front is exactly what the search saw
    assert pareto["front"][pareto["chosen"]]["values"]["accuracy"] == values[:, 0].max()
    assert (pareto_run / "front.pt").is_file() and (pareto_run / "front.png").is_file()
    assert "Pareto front" in (pareto_run / "report.html").read_text()

    last = len(pareto["front"]) - 1
    assert main(["export", "--run", str(pareto_run), "--pick", str(last)]) == 0
    meta = read_metadata(pareto_run / f"front-{last}.onnx")
    assert meta["arch"] == pareto["front"][last]["arch"] and meta["pareto_point"]["index"] == last
    capsys.readouterr()
    assert main(["export", "--run", str(pareto_run), "--pick", str(last + 1)]) == 2
    assert "--pick must be a point of the front" in capsys.readouterr().err
    assert main(["export", "--run", str(pareto_run), "--max-latency-ms", "5"]) == 2
    assert "needs a front with latency" in capsys.readouterr().err


def test_a_pareto_run_offers_each_network_once_on_its_front(pareto_run):
    """(From tests/search/test_dedup.py, which ran a search of its own for it.)"""
    # the case: before, this run's front held 3 points of one network (same accuracy and params)
    # GM scores 2 of the 6 labels: on digits it picks the same split as scoring all six, so the same run
    report = _report(pareto_run)
    canonical = canonical_form(gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1)))
    front = [canonical.network(point["arch"]) for point in report["pareto"]["front"]]
    history = {canonical.network(point["arch"]) for point in report["pareto"]["history"]}
    assert len(set(front)) == len(front) and len(history) == report["search"]["evaluations"] == 20
    points = torch.load(pareto_run / "front.pt", weights_only=True)["points"]  # what `export --pick N` exports
    assert [point["arch"] for point in points] == [point["arch"] for point in report["pareto"]["front"]]


class _FakeTable:
    """A latency table stand-in: 1 ms per 1000 parameters of the derived network (the wiring is tested here;
    tests/latency tests the real table)."""

    def __init__(self, root):
        from gmgraph.search.measures import arch_measures

        self.params = arch_measures(root, (1, 8, 8))["params"]

    def predict(self, arch):
        return 1000 * self.params(arch)


def test_a_latency_limit_reads_the_table_and_checks_the_chosen_arch_end_to_end(tmp_path, monkeypatch):
    built, timed = [], []
    monkeypatch.setattr(search_job, "LatencyTable", SimpleNamespace(
        build=lambda root, shape, quiet: built.append(shape) or _FakeTable(root)))

    def fake_measure(net, shape, **kw):
        timed.append(shape)
        ms = sum(p.numel() for p in net.parameters()) / 1000
        return SimpleNamespace(median_ms=ms, stable=True, spread=0.01, runs=kw.get("runs", 20))

    monkeypatch.setattr(search_job, "measure", fake_measure)
    tiny_search(tmp_path, "digits", max_latency_ms=6.0, evaluations=8, export="false", labels=TWO_LABELS)
    final = _report(tmp_path)["final"]
    assert built == [(1, 8, 8)] and timed == [(1, 8, 8)]
    assert final["latency_estimate"] <= 6.0 and final["latency_ms_measured"] == pytest.approx(final["latency_estimate"])
    assert final["latency_limit_met_when_measured"] is True


@pytest.mark.parametrize("flags, message", [
    (["--max-latency-ms", "-1"], "max-latency-ms must be a positive number"),
    (["--max-params", "0"], "max-params must be a positive number"),
    (["--objectives", "accuracy,speed"], "unknown objective 'speed'"),
    (["--objectives", "accuracy,flops"], "needs --search pareto"),
    (["--latency-weight", "-0.1"], "latency-weight must be 0 or more"),
    (["--latency-weight", "0.1"], "--latency-weight acts on architecture parameters: use --sampler darts or gdas"),
])
def test_bad_limits_and_objectives_are_one_line(flags, message, tmp_path, capsys):
    assert main(["search", *flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()
