"""Tasks: losses, metrics summed over batches equal to the whole's, batch splitting and checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score, r2_score

from gmgraph.errors import DataError
from gmgraph.task import TASKS, get_task, split_batch


def summed(task, outputs, targets, parts=3):
    """The task's metric from statistics summed over ``parts`` batches."""
    stats = sum(task.statistics(o, t) for o, t in zip(outputs.chunk(parts), targets.chunk(parts)))
    return task.value(stats)


def test_classification_accuracy_adds_up_over_batches():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(30, 5, generator=g), torch.randint(5, (30,), generator=g)
    assert summed(TASKS["classification"], out, y) == pytest.approx(float((out.argmax(1) == y).double().mean()),
                                                                     abs=1e-12)


def test_regression_r2_over_batches_equals_sklearns():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(40, generator=g) * 3 + 5
    out = y + torch.randn(40, generator=g)
    assert summed(TASKS["regression"], out, y, parts=4) == pytest.approx(r2_score(y.double().numpy(), out.double().numpy()), abs=1e-9)
    assert TASKS["regression"].score(torch.ones(3), torch.ones(3)) == 1.0  # constant and exact: finite


def test_segmentation_mean_iou_over_batches_equals_sklearns():
    g = torch.Generator().manual_seed(2)
    logits, masks = torch.randn(6, 4, 5, 5, generator=g), torch.randint(3, (6, 5, 5), generator=g)
    predicted = logits.argmax(1)
    present = np.union1d(masks.unique().numpy(), predicted.unique().numpy())
    expected = jaccard_score(masks.reshape(-1).numpy(), predicted.reshape(-1).numpy(), labels=present,
                             average="macro")
    assert summed(TASKS["segmentation"], logits, masks) == pytest.approx(expected, abs=1e-12)
    loss = TASKS["segmentation"].loss(logits, masks)
    assert loss.shape == () and float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(
        logits.permute(0, 2, 3, 1).reshape(-1, 4), masks.reshape(-1))), rel=1e-6)


@pytest.mark.parametrize(("task", "output", "target", "message"), [
    ("classification", torch.zeros(4, 3), torch.zeros(4), "class indices .*float32"),
    ("classification", torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), "from 0 to 3 .* 3 outputs per sample"),
    ("classification", torch.zeros(4, 3, 2, 2), torch.zeros(4, dtype=torch.long), r"logits of shape \(batch, classes\)"),
    ("segmentation", torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long), r"need \(2, 4, 4\)"),
    ("regression", torch.zeros(4, 2), torch.zeros(4), "one output per target value"),
    ("regression", torch.zeros(4), torch.zeros(4, dtype=torch.long), "floating point"),
])
def test_a_batch_that_does_not_fit_the_task_is_named_in_one_line(task, output, target, message):
    with pytest.raises(DataError, match=message):
        TASKS[task].check(output, target)


def test_batches_split_from_tuples_and_dicts_and_bad_ones_are_named():
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    assert split_batch((x, y, torch.arange(2)))[1] is y
    assert split_batch({"inputs": x, "targets": y})[0] is x
    with pytest.raises(DataError, match=r"keys \['pixels', 'y'\]"):
        split_batch({"pixels": x, "y": y})
    with pytest.raises(DataError, match=r"one tensor of shape \(2, 3\) \(no target\)"):
        split_batch(x)
    with pytest.raises(DataError, match="unknown task 'detection'"):
        get_task("detection")
