"""Second-order DARTS: the architecture gradient through one unrolled weight step (``--darts-order 2``).

DARTS (Liu et al., ICLR 2019, eqs. 6-8) differentiates the validation loss
after one step of the weight optimizer::

    w'  = w - xi * (mu * m + grad_w L_train(w, a) + lambda * w)        one SGD step (m: momentum buffer)
    eps = 0.01 / ||grad_w' L_val(w', a)||,      w+- = w +- eps * grad_w' L_val(w', a)
    grad_a ~ grad_a L_val(w', a) - xi * (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps)

``xi`` is the weight optimizer's current learning rate, ``mu``/``lambda`` its
momentum and weight decay. The momentum term is DARTS's (and GM-NAS's
``architect_ig.py``): the optimizer's momentum buffer before this step, times
``mu``; a Nesterov optimizer's real step differs slightly and, as in DARTS, is
not modelled. One backward of ``L_val(w', a)`` gives both its alpha gradient
(the first-order term, taken at ``w'``) and the vector of the Hessian-vector
product; the two perturbed passes backpropagate into the alphas only.

The weights are restored exactly (copied back, not added back) after each
pass, and no pass records BatchNorm running statistics (each normalises with
its batch's). Nothing is read back to the host: ``eps`` stays a device tensor.

Checked against autograd through one explicit unrolled step::

    >>> _ = torch.manual_seed(0)
    >>> w, a = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    >>> x, y = torch.randn(3), torch.randn(3)
    >>> train_loss = lambda: ((w * a - x) ** 2).sum()
    >>> val_loss = lambda: ((w * a.exp() - y) ** 2).sum()
    >>> hyper, _ = hypergradient(train_loss, val_loss, [w], [a], lr=0.01)
    >>> g = torch.autograd.grad(train_loss(), w, create_graph=True)[0]
    >>> w1 = w - 0.01 * g
    >>> exact = torch.autograd.grad(((w1 * a.exp() - y) ** 2).sum(), a)[0]
    >>> torch.allclose(hyper[0], exact, atol=1e-4)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from gmgraph.device import autocast

if TYPE_CHECKING:
    from gmgraph.train.loop import SupernetTrainer

R = 0.01
"""DARTS's finite-difference radius: ``eps = R / ||grad_w' L_val||``."""


def hypergradient(train_loss: Callable[[], torch.Tensor], val_loss: Callable[[], torch.Tensor],
                  params: Sequence[torch.Tensor], alphas: Sequence[torch.Tensor], *, lr: float,
                  momentum: float = 0.0, weight_decay: float = 0.0,
                  buffers: Sequence[torch.Tensor | None] | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The second-order architecture gradient (one tensor per alpha) and ``L_val(w', a)``, detached.

    ``train_loss()`` and ``val_loss()`` compute their losses with the current
    values of ``params`` (the weights, changed in place and restored here) and
    ``alphas``; ``buffers`` are the optimizer's momentum buffers (None: none yet).
    """
    params, alphas = list(params), list(alphas)
    saved = [p.detach().clone() for p in params]
    with _frozen(alphas):
        step = _grads(train_loss(), params)
    if weight_decay:
        torch._foreach_add_(step, saved, alpha=weight_decay)
    if momentum and buffers is not None:
        moving = [(s, b) for s, b in zip(step, buffers) if b is not None]
        if moving:
            torch._foreach_add_([s for s, _ in moving], [b for _, b in moving], alpha=momentum)
    with torch.no_grad():
        torch._foreach_add_(params, step, alpha=-lr)  # w'
    loss = val_loss()
    grads = _grads(loss, params + alphas)
    direction, first_order = grads[:len(params)], grads[len(params):]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(direction)))
    eps = R / norm.clamp_min(1e-12)  # a device tensor: nothing is read back
    shift = torch._foreach_mul(direction, eps)
    curvature = []
    for sign in (1, -1):
        with torch.no_grad():
            torch._foreach_copy_(params, saved)
            (torch._foreach_add_ if sign > 0 else torch._foreach_sub_)(params, shift)  # w+ then w-
        with _frozen(params):
            curvature.append(_grads(train_loss(), alphas))
    with torch.no_grad():
        torch._foreach_copy_(params, saved)  # exactly the weights we started from
    difference = torch._foreach_sub(curvature[0], curvature[1])
    torch._foreach_mul_(difference, lr / 2 / eps)
    return torch._foreach_sub(first_order, difference), loss.detach()


def second_order_pass(trainer: SupernetTrainer, val: tuple[torch.Tensor, torch.Tensor],
                      train: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Write the second-order architecture gradient of ``trainer``'s step into its alphas' ``.grad``.

    The training loss is the weight step's (cross-entropy); the validation
    loss adds the trainer's architecture penalty (``--latency-weight``), whose
    gradient reaches the alphas only. Returns ``L_val(w', a)`` (a device tensor).
    """
    optimizer, gm = trainer.optimizer, trainer.gm
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    alphas = [a for group in trainer.arch_optimizer.param_groups for a in group["params"]]
    group = optimizer.param_groups[0]

    def loss_on(batch: tuple[torch.Tensor, torch.Tensor], penalty: bool) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            x, y = batch
            with trainer.sampler.context(), autocast(trainer.device, trainer.config.precision):
                value = trainer.task.loss(trainer._forward(x, y).float(), y)
            return value + trainer._penalty() if penalty and trainer.arch_penalty is not None else value
        return loss

    with _batch_statistics_only(gm):
        hyper, loss = hypergradient(loss_on(train, False), loss_on(val, True), params, alphas, lr=group["lr"],
                                    momentum=group.get("momentum", 0.0), weight_decay=group.get("weight_decay", 0.0),
                                    buffers=[optimizer.state.get(p, {}).get("momentum_buffer") for p in params])
    for alpha, grad in zip(alphas, hyper):
        alpha.grad = grad
    return loss


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``d loss / d inputs``, zeros for an input the loss does not reach."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


@contextlib.contextmanager
def _frozen(tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """Treat ``tensors`` as constants: autograd records nothing toward them (fewer kernels, less memory)."""
    live = [t for t in tensors if t.requires_grad]
    for t in live:
        t.requires_grad_(False)
    try:
        yield
    finally:
        for t in live:
            t.requires_grad_(True)


@contextlib.contextmanager
def _batch_statistics_only(gm: nn.Module) -> Iterator[None]:
    """Every BatchNorm normalises with its batch's statistics and records none (the passes here are lookahead)."""
    norms = [m for m in gm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for norm in norms:
        norm.track_running_stats = False
    try:
        yield
    finally:
        for norm in norms:
            norm.track_running_stats = True
