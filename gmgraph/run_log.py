"""``--log-dir``: a run's curves as files a user opens: CSV always, TensorBoard when it is installed.

Written after every epoch (so a long run can be watched) and at the end:

* ``epochs.csv``: one row per epoch of each (sub-)supernet and of the final training:
  ``phase, node, epoch, loss, accuracy, val_accuracy, lr, seconds``. An epoch trained before a split
  belongs to the node that trained it (the parent), so each row is one epoch of work;
* ``splits.csv``: one row per split: ``epoch, node, label, groups, score``;
* ``tensorboard/<node>/``: the same scalars per node (``loss``, ``accuracy``, ``val_accuracy``, ``lr``),
  so TensorBoard draws one curve per sub-supernet, and each split as text. Open with
  ``tensorboard --logdir <log-dir>/tensorboard``.

The CSV files are rewritten whole from the run's state each time (a resumed run's files are
complete again); TensorBoard's event files are append-only, so each invocation writes only the
epochs it trained.

>>> import tempfile, csv
>>> folder = tempfile.mkdtemp()
>>> log = RunLog(folder, tensorboard=False)
>>> log.rows("supernet", "root", [{"epoch": 1, "loss": 2.3, "accuracy": 0.1, "lr": 0.05, "seconds": 1.5}])
>>> log.flush()
>>> next(csv.DictReader(open(f"{folder}/epochs.csv")))["loss"]
'2.3'
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from gmgraph.files import write_text
from gmgraph.progress import log

EPOCH_COLUMNS = ("phase", "node", "epoch", "loss", "accuracy", "val_accuracy", "lr", "seconds")
SPLIT_COLUMNS = ("epoch", "node", "label", "groups", "score")
SCALARS = ("loss", "accuracy", "val_accuracy", "lr")


class RunLog:
    """The log folder of one invocation of a run (see the module's docstring).

    Args:
        folder: where to write (created).
        tensorboard: write TensorBoard events too; None: when ``torch.utils.tensorboard`` imports.
        first_epoch: epochs up to this one were logged by an earlier invocation (a resume): TensorBoard
            gets only later ones. None: the epoch before the first that :meth:`fewshot` is told of.
    """

    def __init__(self, folder: str | Path, *, tensorboard: bool | None = None, first_epoch: int | None = None,
                 quiet: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.first_epoch = first_epoch
        self._epochs: dict[tuple[str, str, int], dict] = {}
        self._splits: dict[tuple[int, str], dict] = {}
        self._written: set[tuple] = set()
        self._writers: dict[str, object] = {}
        self._summary = _summary_writer() if tensorboard is not False else None
        if tensorboard and self._summary is None:
            raise ImportError("TensorBoard logging needs the tensorboard package: pip install tensorboard")
        if tensorboard is None and self._summary is None:
            log(f"--log-dir: tensorboard is not installed, so {self.folder} gets the CSV files only "
                "(pip install tensorboard for event files)", quiet=quiet)

    def rows(self, phase: str, node: str, history: Iterable[Mapping]) -> None:
        """Record ``history`` (a trainer's epoch statistics) as ``node``'s epochs of ``phase``."""
        for stats in history:
            self._epochs[(phase, node, int(stats["epoch"]))] = {"phase": phase, "node": node,
                                                                **{k: stats.get(k) for k in EPOCH_COLUMNS[2:]}}

    def fewshot(self, epochs: int, result) -> None:
        """Record a few-shot run's state after ``epochs`` epochs (:class:`~gmgraph.train.fewshot.FewShotResult`):
        every leaf's epochs, each under the node that trained it, and every split. Fits ``run_fewshot``'s
        ``on_epoch``."""
        if self.first_epoch is None:
            self.first_epoch = epochs - 1
        born = {child: (entry["node"], entry["epoch"]) for entry in result.tree for child in entry["children"]}
        for leaf in result.leaves:
            for stats in leaf.trainer.history:
                self.rows("supernet", _trained_by(leaf.id, int(stats["epoch"]), born), [stats])
        for entry in result.tree:
            groups = " | ".join("+".join(g) for g in entry["groups"])
            self._splits[(entry["epoch"], entry["node"])] = {"epoch": entry["epoch"], "node": entry["node"],
                                                             "label": entry["label"], "groups": groups,
                                                             "score": entry.get("score")}

    def flush(self) -> None:
        """Write the CSV files (whole, atomically) and the TensorBoard events not written yet."""
        order = sorted(self._epochs, key=lambda k: (k[0] != "supernet", k[2], k[1]))  # as trained: epoch by epoch
        write_text(self.folder / "epochs.csv", _csv(EPOCH_COLUMNS, [self._epochs[k] for k in order]))
        write_text(self.folder / "splits.csv", _csv(SPLIT_COLUMNS, [self._splits[k] for k in sorted(self._splits)]))
        if self._summary is not None:
            self._tensorboard()

    def close(self) -> None:
        self.flush()
        for writer in self._writers.values():
            writer.close()

    def _tensorboard(self) -> None:
        for key, row in sorted(self._epochs.items()):
            if key in self._written or (row["phase"] == "supernet" and row["epoch"] <= (self.first_epoch or 0)):
                continue
            writer = self._writer(row["node"] if row["phase"] == "supernet" else "final")
            for name in SCALARS:
                if row.get(name) is not None:
                    writer.add_scalar(name, float(row[name]), row["epoch"])
            self._written.add(key)
        for key, row in sorted(self._splits.items()):
            if key in self._written or row["epoch"] < (self.first_epoch or 0):
                continue
            self._writer(row["node"]).add_text("split", f"{row['label']} into {row['groups']} "
                                                        f"(score {row['score']})", row["epoch"])
            self._written.add(key)
        for writer in self._writers.values():
            writer.flush()

    def _writer(self, node: str):
        if node not in self._writers:
            self._writers[node] = self._summary(str(self.folder / "tensorboard" / _folder_name(node)))
        return self._writers[node]


def _trained_by(leaf: str, epoch: int, born: Mapping[str, tuple[str, int]]) -> str:
    """The node of ``leaf``'s lineage that trained epoch ``epoch`` (1-based): an epoch up to a split's epoch
    was trained by the node that split."""
    node = leaf
    while node in born and epoch <= born[node][1]:
        node = born[node][0]
    return node


def _folder_name(node: str) -> str:
    """A node id as one folder name: ``root/1<-0=none+skip`` -> ``root.1_0=none+skip``."""
    return re.sub(r"[^A-Za-z0-9=+_.-]+", "_", node.replace("/", "."))


def _csv(columns: tuple[str, ...], rows: list[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if row.get(k) is None else row.get(k)) for k in columns} for row in rows])
    return out.getvalue()


def _summary_writer():
    """``torch.utils.tensorboard.SummaryWriter``, or None without the tensorboard package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter
