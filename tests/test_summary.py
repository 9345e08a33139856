import json
import re

import pytest

from gmgraph.cli import main
from gmgraph.report import PHASES, count, seconds, summary, time_line

REPORT = {"arch": {"a": "x"}, "budget": {"supernet_epochs": 1, "epochs": 1}, "split_tree": [], "leaves": [{}],
          "search": {"evaluations": 1, "best_fitness": 0.5},
          "final": {"supernet_test_accuracy": 0.4, "params": 10, "standalone_epochs": 1, "standalone_test_accuracy": 0.5},
          "timings": {"total_seconds": 1.0}}


def test_counts_are_singular_for_one():
    text = summary(REPORT)
    assert "over 1 epoch;" in text and "1 supernet-epoch " in text and "search: 1 evaluation" in text
    assert "trained from scratch for 1 epoch:" in text
    assert "1 epochs" not in text and "1 evaluations" not in text
    assert count(2, "epoch") == "2 epochs" and count(0, "epoch") == "0 epochs"


def test_seconds_read_naturally():
    assert [seconds(s) for s in (0.04, 2.71, 79.4, 275.0, 612.0)] == ["0.0 s", "2.7 s", "79 s", "275 s", "10 min 12 s"]


def test_time_line_names_every_phase_in_order():
    timings = {f"{phase}_seconds": float(i + 1) for i, phase in enumerate(PHASES)} | {"total_seconds": 22.0}
    line = time_line(timings)
    assert line.startswith("time: 22 s (")
    assert [line.index(name) for name in PHASES.values()] == sorted(line.index(name) for name in PHASES.values())
    assert "in this invocation" not in line


def test_time_line_after_a_resume_gives_this_invocation_and_the_total():
    line = time_line({"total_seconds": 40.0, "train_seconds": 30.0, "earlier_seconds": 55.0,
                      "all_invocations_seconds": 95.0})
    assert line == "time: 40 s in this invocation (supernet training 30 s); 95 s in all, 55 s of it before the resume"


def test_old_reports_with_only_a_total_still_summarise():
    assert summary(REPORT).endswith("time: 1.0 s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, finished_search):
    """A tiny run (the session's, tests/conftest.py), then the same run resumed from its checkpoint:
    (first report, resumed report)."""
    out = finished_search.copy(tmp_path_factory.mktemp("run") / "run")
    reports = [json.loads((out / "report.json").read_text())]
    (out / "report.json").unlink()  # as if killed after its last checkpoint: --resume redoes the rest
    # --export false acts after training: the resume redoes search, final training and report, not best.onnx
    assert main([*finished_search.argv, "--quiet", "--export", "false", "--html", "false", "--out", str(out),
                 "--resume"]) == 0
    reports.append(json.loads((out / "report.json").read_text()))
    return reports


def test_report_times_every_phase_of_the_whole_run(runs):
    first, _ = runs
    timings = first["timings"]
    phases = [timings[f"{phase}_seconds"] for phase in PHASES]
    assert all(s >= 0 for s in phases)
    assert timings["scoring_seconds"] > 0 and timings["export_seconds"] > 0 and timings["train_seconds"] > 0
    # The phases are disjoint parts of the run. How much lies outside them depends on the machine's speed,
    # so no number of seconds is asserted (tests/test_no_wall_clock.py).
    assert sum(phases) <= timings["total_seconds"]
    assert "earlier_seconds" not in timings and "all_invocations_seconds" not in timings


def test_resumed_report_counts_this_invocation_and_all(runs):
    first, resumed = runs
    timings = resumed["timings"]
    assert timings["scoring_seconds"] == 0  # scored before the resume, not again
    assert timings["earlier_seconds"] >= first["timings"]["scoring_seconds"]
    assert timings["all_invocations_seconds"] == pytest.approx(timings["total_seconds"] + timings["earlier_seconds"])
    assert resumed["final"] == first["final"]


def test_search_prints_the_time_line_and_fixed_decimal_epoch_lines(finished_search):
    captured = finished_search  # what the session's run printed (3 epochs, not --quiet)
    assert re.search(r"^time: \d+(\.\d)? s \(.*supernet training .*export/report .*\)$", captured.stdout, re.M)
    epochs = [line for line in captured.stderr.splitlines() if re.search(r"epoch \d/3 ", line)]
    assert epochs, captured.stderr
    for line in epochs:  # every number with four decimals, whatever its value
        assert re.search(r"  loss=\d+\.\d{4}  acc=\d\.\d{4}  ", line), line
