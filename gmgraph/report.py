"""The summary of a finished search run that a person reads (the run folder itself: :mod:`gmgraph.run_folder`).

>>> print(summary({"arch": {"a": "x"}, "budget": {"supernet_epochs": 3, "epochs": 2},
...                "split_tree": [], "leaves": [{}], "search": {"evaluations": 5, "best_fitness": 0.5},
...                "final": {"supernet_test_accuracy": 0.4, "params": 10, "standalone_epochs": 1,
...                          "standalone_test_accuracy": 0.5},
...                "timings": {"total_seconds": 80.4, "train_seconds": 36.2, "export_seconds": 2.71}}))
chosen architecture: a=x
leaves: 1; budget: 3 supernet-epochs over 2 epochs; search: 5 evaluations
supernet-estimated accuracy: test 0.4000
trained from scratch for 1 epoch: test accuracy 0.5000; 10 parameters
time: 80 s (supernet training 36 s, export/report 2.7 s)
"""

from __future__ import annotations

from gmgraph.arch import format_pairs

PHASES = {"data": "data", "latency": "latency table", "train": "supernet training", "scoring": "split scoring", "search": "search",
          "final": "final training", "export": "export/report"}
"""The phases report.json's ``timings`` holds (``<phase>_seconds``), in order, as the summary names them."""


def arch_line(report: dict) -> str:
    """The chosen architecture as one line: the space's own text, as the run wrote it."""
    return report.get("arch_str") or format_pairs(report["arch"])


_METRIC_WORDS = {"accuracy": "accuracy", "r2": "R²", "miou": "mean IoU"}
"""How a summary names a task's metric (:mod:`gmgraph.task`; report.json keeps the ``*_accuracy`` keys for it)."""


def summary(report: dict) -> str:
    """A short human summary of a finished run."""
    final, budget = report["final"], report["budget"]
    lines = [f"chosen architecture: {arch_line(report)}"]
    for split in report["split_tree"]:
        groups = " | ".join("+".join(g) for g in split["groups"])
        lines.append(f"  split [{split['node']}] at epoch {split['epoch']}: {split['label']} -> {groups}"
                     f" (score {split['score']:.4g})")
    lines.append(f"leaves: {len(report['leaves'])}; budget: {count(budget['supernet_epochs'], 'supernet-epoch')} "
                 f"over {count(budget['epochs'], 'epoch')}; search: {search_count(report['search'])}")
    metric = _METRIC_WORDS.get(final.get("metric", "accuracy"), final.get("metric", "accuracy"))
    line = f"supernet-estimated {metric}: test {final['supernet_test_accuracy']:.4f}"
    if "supernet_val_accuracy" in final:
        line += f", val {final['supernet_val_accuracy']:.4f}"
    lines.append(line)
    if "standalone_test_accuracy" in final:
        lines.append(f"trained from scratch for {count(final['standalone_epochs'], 'epoch')}: test {metric} "
                     f"{final['standalone_test_accuracy']:.4f}; {final['params']} parameters")
    if "nb201_cifar10_test" in report.get("oracle", {}):
        lines.append(f"NAS-Bench-201 CIFAR-10 test accuracy of this arch (reference only): "
                     f"{report['oracle']['nb201_cifar10_test']:.2f}%")
    lines += cost_lines(report)
    hardware = report.get("hardware")
    if hardware:
        where = hardware["device"] + (f" ({hardware['gpu']})" if hardware.get("gpu") else "")
        sampler = f" with the {report['sampler']} sampler" if report.get("sampler") else ""
        lines.append(f"trained on {where} in {hardware['precision']}{sampler}")
    lines.append(time_line(report["timings"]))
    return "\n".join(lines)


def search_count(search: dict) -> str:
    """The search's one count: distinct networks evaluated (the leaves' ``evaluated`` add up to it).

    >>> search_count({"evaluations": 100, "evaluations_asked": 100})
    '100 evaluations'
    >>> search_count({"evaluations": 2, "evaluations_asked": 6})
    '2 evaluations (6 asked: no other distinct network was found)'
    """
    n, asked = search["evaluations"], search.get("evaluations_asked")
    text = count(n, "evaluation")
    if asked is not None and n < asked:
        limits = " within the limits" if search.get("limits") else ""
        text += f" ({asked} asked: no other distinct network{limits} was found)"
    return text


UNITS = {"params": "M params", "flops": "M FLOPs", "latency": "ms"}
"""How each cost measure is shown: its unit (params and FLOPs in millions, latency in ms)."""


def cost_lines(report: dict) -> list[str]:
    """The limits the search kept and the chosen arch's costs; the Pareto front's size and the chosen point.

    >>> for line in cost_lines({"search": {"limits": {"params": 0.5}, "rejected": 3},
    ...                         "final": {"params_estimate": 0.31, "flops_estimate": 12.5}}):
    ...     print(line)
    limits: params <= 0.5 M params (3 candidates rejected); chosen arch: 0.31 M params, 12.5 M FLOPs
    """
    search, final = report.get("search", {}), report.get("final", {})
    costs = [f"{final[f'{name}_estimate']:.4g} {unit}{' predicted' if name == 'latency' else ''}"
             for name, unit in UNITS.items() if f"{name}_estimate" in final]
    if "latency_ms_measured" in final:
        costs.append(f"{final['latency_ms_measured']:.4g} ms measured in onnxruntime")
    limits = search.get("limits") or {}
    lines = []
    if limits:
        kept = ", ".join(f"{name} <= {value:g} {UNITS[name]}" for name, value in limits.items())
        lines.append(f"limits: {kept} ({count(search.get('rejected', 0), 'candidate')} rejected); "
                     f"chosen arch: {', '.join(costs)}")
    elif costs:
        lines.append(f"chosen arch: {', '.join(costs)}")
    passed_over = final.get("latency_passed_over") or []
    if passed_over:
        over = ", ".join(f"{point['latency_ms_measured']:.4g}" for point in passed_over)
        lines.append(f"latency limit checked by measurement: {count(len(passed_over), 'better candidate')} measured "
                     f"over it ({over} ms) and {'was' if len(passed_over) == 1 else 'were'} passed over")
    if final.get("latency_limit_met_when_measured") is False:  # a report.json from before the measured check
        lines.append("warning: the chosen arch's measured latency is over --max-latency-ms (the predictor was "
                     "off for it); see report.json final.latency_ms_measured")
    pareto = report.get("pareto")
    if pareto:
        names = "/".join(o["name"] for o in pareto["objectives"])
        why = f"best {pareto['objectives'][0]['name']}"
        if passed_over:
            why += " of the points whose measured latency keeps the limit"
        lines.append(f"Pareto front ({names}): {count(len(pareto['front']), 'point')}; chosen: point "
                     f"{pareto['chosen']} ({why}); export another with `gmgraph export --run DIR --pick N`")
    return lines


def time_line(timings: dict) -> str:
    """The run's wall time and its phases; after a resume, also the time across every invocation.

    >>> print(time_line({"total_seconds": 41.0, "train_seconds": 30.5, "search_seconds": 9.2,
    ...                  "earlier_seconds": 55.2, "all_invocations_seconds": 96.2}))
    time: 41 s in this invocation (supernet training 30 s, search 9.2 s); 96 s in all, 55 s of it before the resume
    """
    phases = ", ".join(f"{name} {seconds(timings[f'{phase}_seconds'])}" for phase, name in PHASES.items()
                       if timings.get(f"{phase}_seconds", 0.0) >= 0.05)  # what shows as 0.0 s is left out
    line = f"time: {seconds(timings['total_seconds'])}"
    if "all_invocations_seconds" in timings:
        line += " in this invocation"
    if phases:
        line += f" ({phases})"
    if "all_invocations_seconds" in timings:
        line += (f"; {seconds(timings['all_invocations_seconds'])} in all, "
                 f"{seconds(timings.get('earlier_seconds', 0.0))} of it before the resume")
    return line


def seconds(value: float) -> str:
    """``2.7 s`` under ten seconds, ``36 s`` from there, ``4 min 35 s`` from ten minutes on."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 600:
        return f"{value:.0f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s"


def count(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
