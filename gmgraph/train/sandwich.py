"""The sandwich weight step (BigNAS, OFA): several subnets on one batch, gradients added, one optimizer step.

:class:`~gmgraph.train.loop.SupernetTrainer` runs it for a sampler with
``multi_path`` (``sandwich``): for each path of ``sampler.step_archs()``
(the largest, the smallest, then random ones) a forward and a backward whose
gradients add up in ``.grad``; the trainer then clips and takes its one step.
The first path (the largest) learns from the labels; every later one from
:func:`sandwich_loss` against the largest's detached logits (in-place
distillation). The step reports the largest subnet's loss, hits and logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gmgraph.device import autocast
from gmgraph.task import Task, get_task

if TYPE_CHECKING:
    from gmgraph.train.loop import SupernetTrainer


def sandwich_loss(logits: torch.Tensor, y: torch.Tensor, teacher: torch.Tensor | None,
                  distill: float, task: Task | str = "classification") -> torch.Tensor:
    """Loss of one sandwich path: the task's loss, mixed with a distillation term from ``teacher`` (detached
    outputs of the largest subnet) by ``distill``.

    ``(1 - distill) * loss(logits, y) + distill * D(teacher, logits)``; the task's loss alone without a teacher
    or with ``distill`` 0. ``D`` is the task's :attr:`~gmgraph.task.Task.distill` (classes:
    ``KL(softmax(teacher) || softmax(logits))``, per sample or per pixel; regression: squared error).

    >>> y = torch.tensor([0])
    >>> float(sandwich_loss(torch.tensor([[2.0, 0.0]]), y, torch.tensor([[2.0, 0.0]]), 1.0))
    0.0
    """
    task = get_task(task)
    ce = task.loss(logits.float(), y)
    if teacher is None or distill == 0:
        return ce
    kl = task.distill(logits.float(), teacher.detach().float())
    return kl if distill == 1 else (1 - distill) * ce + distill * kl


def sandwich_pass(trainer: SupernetTrainer, x: torch.Tensor, y: torch.Tensor):
    """Forward and backward of every path of the step: ``(loss, metric statistics, logits)`` of the largest, on
    the device."""
    sampler = trainer.sampler
    trainer.optimizer.zero_grad(set_to_none=True)
    first = teacher = None
    for arch in sampler.step_archs():
        with trainer._alphas_fixed(), sampler.running(arch), autocast(trainer.device, trainer.config.precision):
            logits = trainer._forward(x, y)
            loss = sandwich_loss(logits, y, teacher, sampler.distill, trainer.task)
        scaled = trainer.scaler.scale(loss) if trainer.scaler is not None else loss
        trainer._backward(scaled, trainer.optimizer)  # adds into .grad: one optimizer step for all paths
        if first is None:
            teacher = logits.detach()
            first = (loss.detach(), trainer.task.statistics(teacher, y), teacher)
    return first
