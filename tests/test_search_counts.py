"""One count of evaluations (issue 32, item 3): the summary, report.json and the leaves table agree.

An evaluation is one distinct network scored; a repeat costs none, so a search
asked for N evaluations makes N (unless the space runs out), and the leaves'
``evaluated`` add up to the same number.
"""

from __future__ import annotations

import json

from gmgraph.report import search_count, summary
from tests.conftest import tiny_search


def test_the_summary_report_and_leaves_give_one_count(tmp_path):
    # evolution, 30 evaluations on NB201: before, a child repeated an evaluated arch, and report.json and
    # the summary said 29 evaluations while the leaves table added up to 30
    # (GM scores 2 of the 6 labels: on digits the same split as scoring all six, so the same run)
    tiny_search(tmp_path, "digits", export="false", search="evolution", evaluations=30, labels="1<-0,3<-2")
    report = json.loads((tmp_path / "report.json").read_text())
    search = report["search"]
    assert search["evaluations"] == search["evaluations_asked"] == 30
    assert sum(leaf["evaluated"] for leaf in report["leaves"]) == 30
    assert "search: 30 evaluations\n" in summary(report)


def test_fewer_evaluations_than_asked_say_why():
    assert search_count({"evaluations": 2, "evaluations_asked": 6}) == (
        "2 evaluations (6 asked: no other distinct network was found)")
    assert search_count({"evaluations": 5, "evaluations_asked": 6, "limits": {"params": 0.5}}) == (
        "5 evaluations (6 asked: no other distinct network within the limits was found)")
    assert search_count({"evaluations": 1}) == "1 evaluation"  # argmax, or a report from before
