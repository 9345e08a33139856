"""Which ``--method`` and ``--sampler`` the committed results name as ``gmgraph search``'s default (issue 30).

The rule is ``outcome_search_report.best_measured``'s: the highest mean true
accuracy of the pick; among the methods not told apart from it, the cheapest.
The evidence, best first:

1. ``benchmarks/results/outcome_search_summary.json``, once complete: the
   searches over the whole space, their picks trained from scratch;
2. otherwise the picks among the ground truth's 155 architectures in the
   ranking benchmark's primary cell (rule (a), E = 40), from its committed
   estimates (``outcome.py``'s table).

``tests/benchmarks/test_default_evidence.py`` holds the CLI's defaults to this::

    >>> named = committed_default()
    >>> named["method"], named["sampler"]
    ('oneshot', 'pada')
    >>> named["flags"], named["source"]  # every flag it sets: a winner's --rounds or --search is pinned too
    (('--method', 'oneshot', '--sampler', 'pada', '--search', 'evolution'), 'outcome_search_summary.json')
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _table  # noqa: E402
import outcome  # noqa: E402
import outcome_search_jobs as search_jobs  # noqa: E402
import outcome_search_report as search_report  # noqa: E402
from ranking_protocol import method as ranking_method  # noqa: E402

SEARCH_SUMMARY = _table.RESULTS / "outcome_search_summary.json"
PRIMARY = ("a", 40)


def committed_default(n_boot: int = 2000) -> dict:
    """``{"method", "sampler", "flags", "source"}``: the splitter and sampler the best committed evidence names,
    and every ``gmgraph search`` flag that selects it (``--search``, ``--rounds``, ... where the winner sets
    them)."""
    if SEARCH_SUMMARY.exists():
        summary = json.loads(SEARCH_SUMMARY.read_text())
        if summary["complete"]:
            m = search_jobs.method(summary["default"]["method"])
            return {"method": _flag(m.flags, "--method"), "sampler": m.sampler, "flags": m.flags,
                    "source": SEARCH_SUMMARY.name}
    rows = _primary_cell(n_boot)
    m = ranking_method(search_report.best_measured(rows, n_boot=n_boot)["method"])
    return {"method": m.splitter, "sampler": m.sampler, "flags": ("--method", m.splitter, "--sampler", m.sampler),
            "source": outcome.ESTIMATES.name}


def _primary_cell(n_boot: int) -> dict[str, dict]:
    """outcome.py's rows of the primary cell, with each method's cost (supernet-epochs, seconds per run)."""
    runs = outcome.read_estimates(outcome.ESTIMATES)
    costs = outcome.costs(json.loads(outcome.SUMMARY.read_text()))
    rows = outcome.cell_outcomes(runs, *PRIMARY, n_boot=n_boot)
    for key, row in rows.items():
        row["cost"], row["seconds"] = costs[(*PRIMARY, key)]
    return rows


def _flag(flags: tuple[str, ...], name: str) -> str:
    return flags[flags.index(name) + 1]
