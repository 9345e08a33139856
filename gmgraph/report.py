"""The summary of a finished search run that a person reads (the run folder itself: :mod:`gmgraph.run`).

>>> print(summary({"arch": {"a": "x"}, "budget": {"supernet_epochs": 3, "epochs": 2},
...                "split_tree": [], "leaves": [{}], "search": {"evaluations": 5, "best_fitness": 0.5},
...                "final": {"supernet_test_accuracy": 0.4, "params": 10}, "timings": {"total_seconds": 1.0}}))
chosen architecture: a=x
...
"""

from __future__ import annotations

from gmgraph.arch import format_pairs


def arch_line(report: dict) -> str:
    """The chosen architecture as one line: the space's own text, as the run wrote it."""
    return report.get("arch_str") or format_pairs(report["arch"])


def summary(report: dict) -> str:
    """A short human summary of a finished run."""
    final, budget = report["final"], report["budget"]
    lines = [f"chosen architecture: {arch_line(report)}"]
    for split in report["split_tree"]:
        groups = " | ".join("+".join(g) for g in split["groups"])
        lines.append(f"  split [{split['node']}] at epoch {split['epoch']}: {split['label']} -> {groups}"
                     f" (score {split['score']:.4g})")
    lines.append(f"leaves: {len(report['leaves'])}; budget: {budget['supernet_epochs']} supernet-epochs "
                 f"over {budget['epochs']} epochs; search: {report['search']['evaluations']} evaluations")
    line = f"supernet-estimated accuracy: test {final['supernet_test_accuracy']:.4f}"
    if "supernet_val_accuracy" in final:
        line += f", val {final['supernet_val_accuracy']:.4f}"
    lines.append(line)
    if "standalone_test_accuracy" in final:
        lines.append(f"trained from scratch for {final['standalone_epochs']} epochs: test accuracy "
                     f"{final['standalone_test_accuracy']:.4f}; {final['params']} parameters")
    if "nb201_cifar10_test" in report.get("oracle", {}):
        lines.append(f"NAS-Bench-201 CIFAR-10 test accuracy of this arch (reference only): "
                     f"{report['oracle']['nb201_cifar10_test']:.2f}%")
    hardware = report.get("hardware")
    if hardware:
        where = hardware["device"] + (f" ({hardware['gpu']})" if hardware.get("gpu") else "")
        lines.append(f"trained on {where} in {hardware['precision']}")
    lines.append(f"time: {report['timings']['total_seconds']:.0f} s")
    return "\n".join(lines)
