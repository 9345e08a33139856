"""``report.html``: one self-contained page per search run (images embedded, no external assets).

>>> import json, tempfile, pathlib
>>> from gmgraph.run import REPORT_KEYS
>>> run = pathlib.Path(tempfile.mkdtemp())
>>> report = {"arch": {"1<-0": "none"}, "arch_str": "1<-0=none", "settings": {"space": "toy"},
...           "split_tree": [], "leaves": [], "final": {"supernet_test_accuracy": 0.5},
...           "budget": {"supernet_epochs": 1, "epochs": 1}, "search": {"evaluations": 1, "best_fitness": 0.5},
...           "timings": {"total_seconds": 1.0}, "input_shape": [1, 8, 8], "num_classes": 10,
...           "hardware": {"device": "cpu", "precision": "fp32"}}
>>> report |= {k: None for k in REPORT_KEYS if k not in report}
>>> _ = (run / "report.json").write_text(json.dumps(report))
>>> render_run(run).name
'report.html'
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from gmgraph import viz
from gmgraph.files import write_text
from gmgraph.report import arch_line, summary
from gmgraph.run import HTML, read_report
from gmgraph.spaces import arch_to_str

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
code, pre { background: #f6f6f6; padding: 0.2em 0.4em; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def draw_run(out: str | Path, report: dict) -> dict[str, Path]:
    """Write the run's PNGs into ``out``: the chosen cell, the split tree, training curves."""
    out = Path(out)
    pngs = {"architecture": viz.draw_cell(report["arch"], out / "arch.png", title=arch_line(report))}
    if report["split_tree"]:
        pngs["split tree"] = viz.draw_split_tree(report["split_tree"], out / "split_tree.png")
    histories = {leaf["id"]: leaf["history"] for leaf in report["leaves"] if leaf.get("history")}
    if histories:
        pngs["training curves"] = viz.draw_training_curves(histories, out / "training.png")
    if report.get("pareto"):
        pngs["Pareto front"] = viz.draw_front(report["pareto"], report["leaves"], out / "front.png")
    return pngs


def render_run(out: str | Path) -> Path:
    """(Re)build ``out/report.html`` and its PNGs from ``out/report.json``.

    Raises:
        RunError: when ``out`` holds no readable, complete report.json.
    """
    out = Path(out)
    report = read_report(out)
    return write_text(out / HTML, _page(report, draw_run(out, report)))


def _page(report: dict, pngs: dict[str, Path]) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gmgraph run</title>"
             f"<style>{_STYLE}</style></head><body>",
             "<h1>gmgraph search run</h1>",
             f"<p>Chosen architecture: <code id='arch'>{html.escape(arch_line(report))}</code></p>",
             f"<pre>{html.escape(summary(report))}</pre>"]
    for title, path in pngs.items():
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    parts.append("<h2>Split tree</h2>" + _table(
        ["node", "epoch", "label", "groups", "score"],
        [[s["node"], s["epoch"], s["label"], " | ".join("+".join(g) for g in s["groups"]), f"{s['score']:.4g}"]
         for s in report["split_tree"]]))
    parts.append("<h2>Leaves</h2>" + _table(
        ["leaf", "space size", "evaluated", "best val accuracy", "best arch"],
        [[leaf["id"], leaf.get("space_size", ""), leaf.get("evaluated", ""), _num(leaf.get("best_val_accuracy")),
          _arch(report, leaf.get("best_arch"))] for leaf in report["leaves"]]))
    if report.get("pareto"):
        pareto = report["pareto"]
        names = [o["name"] for o in pareto["objectives"]]
        parts.append("<h2>Pareto front</h2><p>Export a point with <code>gmgraph export --run DIR --pick N</code>."
                     "</p>" + _table(["N", *names, "arch", ""], [
                         [i, *(f"{p['values'][n]:.4g}" for n in names), p.get("arch_str") or _arch(report, p["arch"]),
                          "chosen" if i == pareto["chosen"] else ""] for i, p in enumerate(pareto["front"])]))
    parts.append("<h2>Final architecture</h2>" + _table(["label", "op"], [[k, v] for k, v in report["arch"].items()]))
    parts.append("<h2>Settings</h2>" + _table(["setting", "value"],
                                              [[k, v] for k, v in report.get("settings", {}).items()]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _arch(report: dict, arch) -> str:
    return "" if not arch else arch_to_str(report["settings"].get("space"), arch)
