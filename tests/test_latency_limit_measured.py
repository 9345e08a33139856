"""A latency limit broken when measured (issue 32, item 4): the next candidate that keeps it, or one line.

The latency table and the end-to-end timing are stand-ins here (no test reads a clock to decide): the
table predicts from the parameter count, and the timing says what each test needs.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import gmgraph.search_job as search_job
from gmgraph.cli import main
from gmgraph.errors import ConfigError
from gmgraph.report import summary
from gmgraph.search.measured_limit import first_within
from tests.conftest import tiny_search

LIMIT = 6.0


class _Table:
    """1 ms per 1000 parameters of the derived network: every tiny NB201 arch is predicted within LIMIT."""

    def __init__(self, root):
        from gmgraph.search.measures import arch_measures

        self.params = arch_measures(root, (1, 8, 8))["params"]

    correction = None  # no fitted line: the fixed part is predicted to cost nothing

    def predict(self, arch):
        return 1000 * self.params(arch) / 2

    def corrected(self, ms):
        return ms


def _timing(ms):
    return SimpleNamespace(median_ms=ms, stable=True, spread=0.01, runs=20)


@pytest.fixture
def searched(monkeypatch):
    """Fakes the latency table; records what the search found (before the check) and each timing asked for."""
    monkeypatch.setattr(search_job, "LatencyTable", SimpleNamespace(build=lambda root, shape, quiet: _Table(root)))
    seen = SimpleNamespace(found=None, timed=0)
    search = search_job._search_architectures

    def recording_search(*args, **kwargs):
        seen.found = search(*args, **kwargs)
        return seen.found

    monkeypatch.setattr(search_job, "_search_architectures", recording_search)
    return seen


def test_the_next_candidate_that_keeps_the_limit_when_measured_is_chosen(tmp_path, monkeypatch, searched):
    def measure(net, shape, **kw):  # the search's choice measures over the limit, the rest well under it
        searched.timed += 1
        return _timing(2 * LIMIT if searched.timed == 1 else LIMIT / 2)

    monkeypatch.setattr(search_job, "measure", measure)
    # no best.onnx (nothing here reads it; the export times nothing), GM scores 2 of the 6 labels
    tiny_search(tmp_path, "digits", max_latency_ms=LIMIT, evaluations=6, export="false", labels="1<-0,3<-2")
    report = json.loads((tmp_path / "report.json").read_text())
    ranked = sorted(searched.found.history, key=lambda point: -point[1])
    assert report["final"]["latency_passed_over"][0]["arch"] == searched.found.best == ranked[0][0]
    assert report["final"]["latency_passed_over"][0]["latency_ms_measured"] == 2 * LIMIT
    assert report["arch"] == ranked[1][0] and report["search"]["best_fitness"] == ranked[1][1]
    assert report["final"]["latency_ms_measured"] == LIMIT / 2 and report["final"]["latency_limit_met_when_measured"]
    assert searched.timed == 2  # the chosen network is not timed again after its final training
    assert "1 better candidate measured over it (12 ms) and was passed over" in summary(report)


def test_when_no_candidate_keeps_the_limit_measured_the_run_fails_with_one_line(tmp_path, monkeypatch, searched,
                                                                               capsys):
    monkeypatch.setattr(search_job, "measure", lambda net, shape, **kw: _timing(2 * LIMIT))
    argv = ["search", "--data", "digits", "--width", "4", "--cells", "1", "--epochs", "2", "--method", "gm", "--sampler", "uniform", "--split-at", "1",
            "--rounds", "1", "--steps-per-epoch", "2", "--evaluations", "3", "--final-epochs", "0",
            "--bn-batches", "1", "--labels", "1<-0,3<-2", "--max-latency-ms", str(LIMIT), "--quiet",
            "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gmgraph: error: --max-latency-ms 6: the 3 best candidates all "
                                                   "measured over it in onnxruntime (the fastest 12 ms")
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "best.onnx").exists()


def test_first_within_takes_candidates_in_order_and_times_at_most_tries():
    timed = []

    def measure(arch):
        timed.append(arch["x"])
        return {"a": 9.0, "b": 7.0, "c": 1.0}[arch["x"]]

    pick = first_within([({"x": x}, f) for x, f in zip("abc", (0.9, 0.8, 0.7))], measure, limit=5.0)
    assert (pick.arch, pick.fitness, pick.latency_ms) == ({"x": "c"}, 0.7, 1.0)
    assert pick.passed_over == [({"x": "a"}, 9.0), ({"x": "b"}, 7.0)] and timed == ["a", "b", "c"]
    timed.clear()
    with pytest.raises(ConfigError, match=r"the 2 best candidates all measured over it in onnxruntime \(the "
                                          r"fastest 7 ms.*and 1 more were not timed; raise the limit"):
        first_within([({"x": x}, 0.5) for x in "abc"], measure, limit=5.0, tries=2)
    assert timed == ["a", "b"]


def test_the_summary_says_a_front_point_was_chosen_for_its_measured_latency():
    from gmgraph.report import cost_lines

    report = {"search": {"limits": {"latency": 6.0}, "rejected": 0},
              "final": {"latency_estimate": 3.0, "latency_ms_measured": 5.5, "latency_limit_met_when_measured": True,
                        "latency_passed_over": [{"arch": {}, "latency_ms_measured": 6.5}]},
              "pareto": {"objectives": [{"name": "accuracy"}, {"name": "latency"}], "front": [{}, {}], "chosen": 1}}
    lines = cost_lines(report)
    assert "1 better candidate measured over it (6.5 ms) and was passed over" in lines[1]
    assert "chosen: point 1 (best accuracy of the points whose measured latency keeps the limit)" in lines[2]
