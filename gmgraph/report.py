"""What a search run leaves in its output folder, and the summary a person reads.

Files (each written atomically): ``report.json`` (settings, split tree with
scores, per-leaf metrics, chosen architecture, budget, timings), ``arch.txt``
(the chosen architecture, one line), ``best.pt`` (the chosen network's weights
and architecture, loadable with ``torch.load(weights_only=True)``).

>>> print(summary({"arch": {"a": "x"}, "budget": {"supernet_epochs": 3, "epochs": 2},
...                "split_tree": [], "leaves": [{}], "search": {"evaluations": 5, "best_fitness": 0.5},
...                "final": {"supernet_test_accuracy": 0.4, "params": 10}, "timings": {"total_seconds": 1.0}}))
chosen architecture: a=x
...
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gmgraph.train.checkpoint import atomic_write

REPORT_KEYS = ("gmgraph_version", "settings", "space", "space_size", "split_tree", "leaves", "search",
               "arch", "final", "budget", "timings")


def _write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def arch_line(report: dict) -> str:
    """The chosen architecture as one line: the space's own string if it has one."""
    return report.get("arch_str") or ";".join(f"{k}={v}" for k, v in report["arch"].items())


def write_run(out: str | Path, report: dict, model: torch.nn.Module | None = None) -> None:
    """Write report.json, arch.txt and (with a model) best.pt into ``out``."""
    out = Path(out)
    _write_text(out / "report.json", json.dumps(report, indent=2, default=_jsonable) + "\n")
    _write_text(out / "arch.txt", arch_line(report) + "\n")
    if model is not None:
        state = {"arch": report["arch"], "model": model.state_dict()}
        atomic_write(out / "best.pt", lambda tmp: torch.save(state, tmp))


def _jsonable(value):
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


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
    if "oracle" in report:
        lines.append(f"NAS-Bench-201 CIFAR-10 test accuracy of this arch (reference only): "
                     f"{report['oracle']['nb201_cifar10_test']:.2f}%")
    lines.append(f"time: {report['timings']['total_seconds']:.0f} s")
    return "\n".join(lines)
