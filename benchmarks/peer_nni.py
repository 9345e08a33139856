"""NNI 3.0's side of ``bench_peers.py``: its NB201 space, turned into supernets by its own strategies.

Imported only inside NNI's environment (``peer_env.py``). Each step is the one NNI's one-shot
Lightning modules take, without Lightning around it (no logging, hooks or torchmetrics: what is
left is NNI's model, its mutation and its optimisation order, and what is cut only makes NNI faster):

* single path (``RandomOneShot``, RSPS): every ``PathSamplingLayer`` resampled from a memo holding
  the step's path (NNI walks all modules to do so each step, as its module does), then zero grads,
  forward, cross-entropy, backward, clip, SGD step (Lightning's automatic optimisation);
* DARTS (``DARTS``, first order): the architecture step is zero alpha grads, forward and a full
  backward (weights included) on the validation batch, Adam step; the weight step is zero grads,
  forward, a full backward (alphas included), clip over the weights, SGD step (its
  ``DartsLightningModule.training_step`` and ``advance_optimization``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():  # NNI 3.0 warns that it does not know this torch's newer classes
    warnings.simplefilter("ignore")
    from nni.nas.hub.pytorch import NasBench201
    from nni.nas.strategy import DARTS, RandomOneShot


def supernet(strategy: str, C: int, N: int, num_classes: int) -> nn.Module:
    """NNI's NB201 space mutated by ``strategy`` ("rsps": ``RandomOneShot``, "darts": ``DARTS``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = NasBench201(stem_out_channels=C, num_modules_per_stack=N, num_labels=num_classes)
        (RandomOneShot() if strategy == "rsps" else DARTS()).mutate_model(model)
    return model


def alphas(model: nn.Module) -> dict[str, nn.Parameter]:
    """label -> the alpha every DARTS layer of that label shares."""
    return {m.label: next(iter(m.arch_parameters())) for m in model.modules() if hasattr(m, "arch_parameters")}


def weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters NNI's weight optimizer holds (its DARTS module removes the alphas)."""
    arch = {id(a) for a in alphas(model).values()}
    return [p for p in model.parameters() if id(p) not in arch]


def set_path(model: nn.Module, path: Mapping[str, str]) -> None:
    """Every sampling layer runs ``path`` (NNI label -> op), set as NNI's ``resample`` sets it."""
    memo = dict(path)
    for module in model.modules():
        if hasattr(module, "resample"):
            memo.update(module.resample(memo=memo))


class Steps:
    """NNI's steps on one mutated model with SGD (and, for DARTS, Adam) set as gmgraph's trainer sets them."""

    def __init__(self, model: nn.Module, *, lr: float, momentum: float, weight_decay: float, clip: float,
                 arch_lr: float, arch_weight_decay: float):
        self.model, self.clip, self.params = model, clip, weights(model)
        self.optimizer = torch.optim.SGD(self.params, lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
        arch = list(alphas(model).values())
        self.arch_optimizer = torch.optim.Adam(arch, lr=arch_lr, betas=(0.5, 0.999),
                                               weight_decay=arch_weight_decay) if arch else None

    def single_path(self, x: torch.Tensor, y: torch.Tensor, path: Mapping[str, str]) -> torch.Tensor:
        set_path(self.model, path)
        return self.weight_step(x, y)

    def weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        return (logits.detach().argmax(1) == y).sum()

    def darts_weight_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        set_path(self.model, {})  # NNI's module resamples before each phase (a no-op walk for DARTS layers)
        return self.weight_step(x, y)

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        set_path(self.model, {})
        self.arch_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.arch_optimizer.step()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, path: Mapping[str, str]) -> torch.Tensor:
        """Logits without gradients on ``path``, in the mode the model is in (the caller sets eval mode)."""
        set_path(self.model, path)
        return self.model(x)
