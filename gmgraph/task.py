"""What a search optimises: a :class:`Task` is a loss to train by, a metric to choose by, and how a batch splits.

Classification (cross-entropy, accuracy) is the default; ``regression`` (MSE, R²)
and ``segmentation`` (per-pixel cross-entropy, mean IoU) ship too, and a user
builds their own from three functions. Metrics are kept as *additive statistics*
(a small float64 tensor per batch, summed over batches on the device, read back
once) so they add up over batches and over ranks exactly as hits and counts do::

    >>> import torch
    >>> task = TASKS["regression"]
    >>> out, target = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])
    >>> float(task.loss(out, target))                                  # mean squared error
    0.3333333432674408
    >>> halves = task.statistics(out[:2], target[:2]) + task.statistics(out[2:], target[2:])
    >>> round(task.value(halves), 6), task.metric                      # R² of the whole, from the parts
    (0.785714, 'r2')

A batch is split into (input, target) by :func:`split_batch`: tuples and lists
``(x, y, ...)``, and dicts with an input key (``input``, ``image``, ``x``,
``inputs``) and a target key (``target``, ``label``, ``y``, ``mask``, ``targets``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gmgraph.errors import DataError

INPUT_KEYS = ("input", "image", "x", "inputs", "images")
TARGET_KEYS = ("target", "label", "y", "mask", "targets", "labels")


@dataclass(frozen=True)
class Task:
    """A loss, a metric with its direction, and a check of a batch before training.

    Attributes:
        name: the ``--task`` name.
        loss: ``(output, target, reduction="mean") -> scalar tensor``, the batch's mean loss (what training
            minimises); ``reduction="sum"`` sums it over the target's elements (data-parallel ranks add
            those and divide by the global count of target elements).
        statistics: ``(output, target) -> 1-D float64 tensor`` of additive statistics of a batch.
        value: summed statistics -> the metric (a float).
        metric: the metric's name (a report's column: ``accuracy``, ``r2``, ``miou``).
        higher_is_better: the metric's direction (every built-in metric: higher is better).
        check: ``(output, target) -> None``; raises :class:`DataError` naming what does not fit.
        distill: ``(student, teacher) -> scalar``, how far a subnet's outputs are from the largest's
            (in-place distillation, ``--distill``): KL between the class distributions, or squared error.
    """

    name: str
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    statistics: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    value: Callable[[torch.Tensor], float]
    metric: str
    higher_is_better: bool = True
    check: Callable[[torch.Tensor, torch.Tensor], None] = lambda output, target: None
    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = lambda student, teacher: F.mse_loss(
        student, teacher)

    def score(self, output: torch.Tensor, target: torch.Tensor) -> float:
        """The metric of one batch (reads it back).

        >>> TASKS["classification"].score(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
        0.5
        """
        return self.value(self.statistics(output, target))

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` beats ``b`` in this task's direction."""
        return a > b if self.higher_is_better else a < b


def split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, target)`` of a batch: a tuple or list ``(x, y, ...)``, or a dict with one input and one target key.

    >>> x, y = split_batch({"image": torch.zeros(2, 1), "label": torch.tensor([0, 1])})
    >>> y.tolist()
    [0, 1]

    Raises:
        DataError: saying what the batch is and what it should be.
    """
    if isinstance(batch, tuple | list) and len(batch) >= 2:
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in TARGET_KEYS if k in batch), None)
        if x is not None and y is not None:
            return x, y
        raise DataError(f"a batch is a dict with keys {sorted(map(str, batch))}; gmgraph reads the input from one "
                        f"of {', '.join(INPUT_KEYS)} and the target from one of {', '.join(TARGET_KEYS)}")
    raise DataError(f"a batch must be (input, target, ...) or a dict of them, got {_describe(batch)}")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"one tensor of shape {tuple(value.shape)} (no target)"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__


# ------------------------------------------------------------------ classification


def _class_statistics(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    hits = (output.argmax(1) == target).sum().double()
    return torch.stack([hits, hits.new_full((), float(target.numel()))])  # made on the device: no copy to it


def _ratio(stats: torch.Tensor) -> float:
    hits, seen = stats.tolist()
    return hits / seen if seen else 0.0


def _check_classes(output: torch.Tensor, target: torch.Tensor, *, pixels: bool = False) -> None:
    want = "(batch, classes, height, width)" if pixels else "(batch, classes)"
    if output.dim() != (4 if pixels else 2):
        raise DataError(f"the network outputs shape {tuple(output.shape)}; this task needs logits of shape {want}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise DataError(f"targets must be class indices (an integer dtype), got {target.dtype}")
    expected = (output.shape[0], *output.shape[2:]) if pixels else (output.shape[0],)
    if tuple(target.shape) != expected:
        raise DataError(f"targets have shape {tuple(target.shape)} but the outputs {tuple(output.shape)} need "
                        f"{expected}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= output.shape[1]):
        raise DataError(f"targets run from {int(target.min())} to {int(target.max())} but the network has "
                        f"{output.shape[1]} outputs per {'pixel' if pixels else 'sample'}; build it with num_classes "
                        f"above the largest target")


def _cross_entropy(output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(output, target, reduction=reduction)


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(teacher) || softmax(student))`` over dim 1, summed over classes, mean over samples (and
    pixels: ``batchmean`` of a per-pixel map is its sum over pixels, so those are averaged here)."""
    pixels = student[0, 0].numel()
    return F.kl_div(student.log_softmax(1), teacher.log_softmax(1), log_target=True, reduction="batchmean") / pixels


CLASSIFICATION = Task("classification", _cross_entropy, _class_statistics, _ratio, "accuracy", check=_check_classes,
                      distill=_kl)


# ------------------------------------------------------------------ regression


def _regression_loss(output: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.mse_loss(output.reshape(target.shape), target.to(output.dtype), reduction=reduction)


def _regression_statistics(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    y, err = target.double().reshape(-1), (output.double().reshape(-1) - target.double().reshape(-1))
    return torch.stack([err.square().sum(), y.sum(), y.square().sum(), y.new_full((), float(y.numel()))])


def _r2(stats: torch.Tensor) -> float:
    """R² = 1 - SSE / SST; SST from the sums, clamped at 0 (rounding must not make a variance negative)."""
    sse, total, squares, n = stats.tolist()
    if n == 0:
        return 0.0
    sst = max(squares - total * total / n, 0.0)
    return 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)  # constant targets: finite, as sklearn


def _check_regression(output: torch.Tensor, target: torch.Tensor) -> None:
    if not target.is_floating_point():
        raise DataError(f"regression targets must be floating point, got {target.dtype}")
    if output.numel() != target.numel():
        raise DataError(f"the network outputs shape {tuple(output.shape)} but the targets have shape "
                        f"{tuple(target.shape)}; one output per target value")


REGRESSION = Task("regression", _regression_loss, _regression_statistics, _r2, "r2", check=_check_regression)


# ------------------------------------------------------------------ segmentation


def _confusion(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The flattened confusion matrix (true class x predicted class) of a batch's pixels."""
    classes = output.shape[1]
    index = target.reshape(-1) * classes + output.argmax(1).reshape(-1)
    return torch.bincount(index, minlength=classes * classes).double()


def _mean_iou(stats: torch.Tensor) -> float:
    """Mean intersection over union over the classes that occur (in the targets or the predictions).

    >>> round(_mean_iou(torch.tensor([3.0, 1.0, 0.0, 4.0])), 4)   # IoU 3/4 and 4/5
    0.775
    """
    classes = int(round(stats.numel() ** 0.5))
    matrix = stats.reshape(classes, classes)
    hits = matrix.diagonal()
    union = matrix.sum(0) + matrix.sum(1) - hits
    present = union > 0
    return float((hits[present] / union[present]).mean()) if bool(present.any()) else 0.0


SEGMENTATION = Task("segmentation", _cross_entropy, _confusion, _mean_iou, "miou",
                    check=lambda out, y: _check_classes(out, y, pixels=True), distill=_kl)

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION, SEGMENTATION)}
"""The built-in tasks by ``--task`` name."""


def get_task(task: str | Task) -> Task:
    """``task`` itself, or the built-in task of that name.

    Raises:
        DataError: an unknown name, naming the known ones.
    """
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)} or pass a gmgraph.task.Task")
    return TASKS[task]
