"""``report.html``: one self-contained page per search run (images embedded, no external assets).

>>> import json, tempfile, pathlib
>>> from gmgraph.run_folder import REPORT_KEYS
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
import re
from pathlib import Path

from gmgraph import viz
from gmgraph.config import SearchSettings
from gmgraph.files import write_text
from gmgraph.report import arch_line, summary
from gmgraph.run_folder import DRAWINGS, HTML, read_report
from gmgraph.settings import flag_text, flags
from gmgraph.spaces import arch_to_str

# Split paths and arch strings have no spaces: table cells break them after / + | (see breakable), code
# and the summary anywhere, so nothing is wider than the page (tests/test_report_html.py measures it in
# Chromium at 1400 px).
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; max-width: 100%; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td { overflow-wrap: break-word; }
th { background: #f3f3f3; }
th.section { background: #e4e9f2; }
code, pre { background: #f6f6f6; padding: 0.2em 0.4em; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.note { color: #555; font-size: 0.9em; }
"""

AXIS_UNITS = {"accuracy": "validation, 0 to 1", "params": "millions", "flops": "millions", "latency": "ms"}
"""Units on the Pareto plot's axes: the search's objectives as report.json records them (params and FLOPs
in millions, latency in milliseconds in onnxruntime; see :data:`gmgraph.report.UNITS`)."""


def draw_run(out: str | Path, report: dict) -> dict[str, Path]:
    """Write the run's PNGs into ``out``, keyed by the page's section that shows them: the chosen cell, the
    split tree, the training curves, the search's progress and its Pareto front (the last three where the
    report has them)."""
    out = Path(out)
    arch, tree, training, search, front = (out / name for name in DRAWINGS)
    pngs = {"architecture": viz.draw_cell(report["arch"], arch, title=arch_line(report))}
    if report["split_tree"]:
        pngs["split tree"] = viz.draw_split_tree(report["split_tree"], tree)
    histories = {leaf["id"]: leaf["history"] for leaf in report["leaves"] if leaf.get("history")}
    if histories:
        pngs["training"] = viz.draw_training_curves(histories, training)
    points = search_points(report)
    if points:
        pngs["search"] = viz.draw_search_progress(points, report["leaves"], search)
    if report.get("pareto"):
        pngs["pareto"] = viz.draw_front(report["pareto"], report["leaves"], front, units=AXIS_UNITS)
    return pngs


def search_points(report: dict) -> list[tuple[dict, float]]:
    """Every architecture the search evaluated, in order, with its validation accuracy.

    A Pareto search records them under ``pareto.history`` (accuracy is its first
    objective); any other under ``search.history`` (``{"arch", "fitness"}`` each).
    Empty where the report holds neither.

    >>> search_points({"search": {"history": [{"arch": {"a": "x"}, "fitness": 0.5}]}})
    [({'a': 'x'}, 0.5)]
    """
    pareto = report.get("pareto")
    if pareto and pareto.get("history"):
        first = pareto["objectives"][0]["name"]
        return [(point["arch"], point["values"][first]) for point in pareto["history"]]
    return [(point["arch"], point["fitness"]) for point in (report.get("search") or {}).get("history") or []]


def render_run(out: str | Path) -> Path:
    """(Re)build ``out/report.html`` and its PNGs from ``out/report.json``.

    Raises:
        RunError: when ``out`` holds no readable, complete report.json.
    """
    out = Path(out)
    report = read_report(out)
    return write_text(out / HTML, _page(report, draw_run(out, report)))


def _page(report: dict, pngs: dict[str, Path]) -> str:
    """The page: the summary, then one section per part of the run, each with its drawing and its table."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gmgraph run</title>"
             f"<style>{_STYLE}</style></head><body>",
             "<h1>gmgraph search run</h1>",
             f"<p>Chosen architecture: <code id='arch'>{html.escape(arch_line(report))}</code></p>",
             f"<pre>{html.escape(summary(report))}</pre>"]
    parts += _section("Architecture", pngs.get("architecture"), "",
                      _table(["label", "op"], [[k, v] for k, v in report["arch"].items()]))
    if report["split_tree"]:
        parts += _section("Split tree", pngs.get("split tree"), _SPLIT_NOTE, _table(
            ["node", "epoch", "label", "groups", "score"],
            [[s["node"], s["epoch"], s["label"], " | ".join("+".join(g) for g in s["groups"]), f"{s['score']:.4g}"]
             for s in report["split_tree"]]))
    if "training" in pngs:
        parts += _section("Supernet training", pngs["training"], _TRAINING_NOTE)
    if "search" in pngs:
        parts += _section("Search progress", pngs["search"], _SEARCH_NOTE)
    parts += _section("Leaves", None, "One row per sub-supernet the search ran on; <em>leaf</em> is its name in "
                      "the plots' legends.", _table(
                          ["leaf", "split path", "space size", "evaluated", "best val accuracy", "best arch"],
                          [[viz.short_name(leaf["id"]), leaf["id"], leaf.get("space_size", ""),
                            leaf.get("evaluated", ""), _num(leaf.get("best_val_accuracy")),
                            _Code(_arch(report, leaf.get("best_arch")))] for leaf in report["leaves"]]))
    if report.get("pareto"):
        pareto = report["pareto"]
        names = [o["name"] for o in pareto["objectives"]]
        units = [f"{n} ({AXIS_UNITS[n]})" if n in AXIS_UNITS else n for n in names]
        parts += _section("Pareto front", pngs.get("pareto"),
                          "Export a point with <code>gmgraph export --run DIR --pick N</code>.",
                          _table(["N", *units, "arch", ""], [
                              [i, *(f"{p['values'][n]:.4g}" for n in names),
                               _Code(p.get("arch_str") or _arch(report, p["arch"])),
                               "chosen" if i == pareto["chosen"] else ""] for i, p in enumerate(pareto["front"])]))
    parts += _section("Settings", None, "Each setting as its <code>gmgraph search</code> flag; values other than "
                      "the default in bold.", _settings_table(report.get("settings") or {}))
    parts.append("</body></html>")
    return "\n".join(parts)


_SPLIT_NOTE = ("Each box is a (sub-)supernet: the candidates it keeps of the decision it was split on, and the "
               "decision it was split on next. Each heatmap shows a split's gradient-matching distances between "
               "the decision's candidate ops (0: the same gradients); ops close to each other stay together.")
_TRAINING_NOTE = ("Loss and accuracy per epoch of every (sub-)supernet, one colour each; after a split the children "
                  "continue their parent's line. Accuracy is of sampled paths (one per batch, BatchNorm on the "
                  "batch's statistics): solid on the training batches, dashed on validation batches.")
_SEARCH_NOTE = ("Each evaluated architecture's validation accuracy (on the shared weights, BatchNorm recalibrated), "
                "in the order the search evaluated them, coloured by sub-supernet; the line is the best so far.")


class _Code(str):
    """A table cell shown as code (escaped all the same)."""


def _section(title: str, png: Path | None, note: str, body: str = "") -> list[str]:
    """A section: its heading, its drawing embedded, a note (trusted HTML), then ``body`` (e.g. a table)."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if png is not None:
        data = base64.b64encode(Path(png).read_bytes()).decode()
        parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    if note:
        parts.append(f"<p class='note'>{note}</p>")
    if body:
        parts.append(body)
    return parts


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    text = breakable(str(value))
    return f"<code>{text}</code>" if isinstance(value, _Code) and text else text


def breakable(text: str) -> str:
    """``text`` escaped, with line-break opportunities after ``/``, ``+`` and ``|``: the places where split
    paths and arch strings, which have no spaces, read best broken.

    >>> breakable("root/1<-0=none+skip")
    'root/<wbr>1&lt;-0=none+<wbr>skip'
    """
    return re.sub(r"([/+|])", r"\1<wbr>", html.escape(text))


def settings_rows(settings: dict) -> list[tuple[str, str, str, str | None]]:
    """``(section, flag, value, default)`` for each recorded setting, as ``gmgraph search`` takes it.

    ``default`` is None where the value is the default. A recorded setting that
    has no flag (set from Python) shows as its dotted path.

    >>> settings_rows({"seed": 3, "train": {"lr": 0.05, "sampler_options": {"tau_max": 5}}})
    [('run', '--seed', '3', '0'), ('train', '--lr', '0.05', None), ('train', 'train.sampler_options.tau_max', '5', None)]
    """
    rows, shown = [], set()
    for flag in flags(SearchSettings):
        value = _at(settings, flag.path)
        if value is _MISSING:  # a report from before the setting existed
            continue
        default = list(flag.default) if isinstance(flag.default, tuple) else flag.default
        rows.append((_section_of(flag.path), f"--{flag.name}", setting_text(value),
                     None if value == default else setting_text(default)))
        shown.add(flag.path)
    for path, value in _flat(settings):
        if path not in shown:
            rows.append((_section_of(path), ".".join(path), setting_text(value), None))
    return rows


def setting_text(value) -> str:
    """A setting's value as a flag takes it: ``none``, ``true``, ``1,2``; a mapping as ``key=value`` pairs.

    >>> setting_text(None), setting_text(True), setting_text([1, 2]), setting_text({}), setting_text({"a": 1})
    ('none', 'true', '1,2', '', 'a=1')
    """
    if isinstance(value, dict):
        return ", ".join(f"{k}={setting_text(v)}" for k, v in value.items())
    return flag_text(value)


_MISSING = object()


def _at(settings: dict, path: tuple[str, ...]):
    for part in path:
        if not isinstance(settings, dict) or part not in settings:
            return _MISSING
        settings = settings[part]
    return settings


def _flat(settings: dict, prefix: tuple[str, ...] = ()):
    """``(path, value)`` of every recorded setting that is not a table (an empty table sets nothing)."""
    for key, value in settings.items():
        if isinstance(value, dict):
            yield from _flat(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _section_of(path: tuple[str, ...]) -> str:
    return path[0] if len(path) > 1 else "run"


def _settings_table(settings: dict) -> str:
    rows, section = [], None
    for where, flag, value, default in settings_rows(settings):
        if where != section:
            section = where
            rows.append(f"<tr><th class='section' colspan='3'>{html.escape(where)}</th></tr>")
        shown = f"<code>{html.escape(value)}</code>" if value else ""
        if default is not None:
            shown = f"<strong>{shown}</strong>"
        rows.append(f"<tr><td>{html.escape(flag)}</td><td>{shown}</td>"
                    f"<td>{'' if default is None else html.escape(default)}</td></tr>")
    return "<table><tr><th>flag</th><th>value</th><th>default (where different)</th></tr>" + "".join(rows) + "</table>"


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _arch(report: dict, arch) -> str:
    return "" if not arch else arch_to_str(report["settings"].get("space"), arch)
