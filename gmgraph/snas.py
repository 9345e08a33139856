"""SNAS: relaxed Gumbel-softmax weights, trained with the weights by the same loss (Xie et al., ICLR 2019).

Each step every label runs all its ops, weighted by a fresh relaxed (soft, not
one-hot) Gumbel-softmax sample of its architecture logits::

    z = softmax((alpha + g) / tau),   g ~ Gumbel(0, 1) per op

The sampler is *joint* (:attr:`gmgraph.samplers.Sampler.joint`): the weight
step's training loss backpropagates into the alphas too, and the trainer
steps the architecture optimizer (Adam, ``--arch-lr``) right after the weight
optimizer, on the same batch; no validation batches are drawn. A resource
constraint is the trainer's architecture penalty (``--latency-weight``: the
expected latency under ``softmax(alpha)``), added to that training loss. The
architecture a leaf derives is the argmax of its alphas (``--search argmax``).

The temperature follows the GM-NAS reference's SNAS schedule
(``skhu101/GM-NAS``, ``WS-GM/exp_scripts/snas-ws-201.sh``: ``--tau_max 1
--tau_min 0.1``; ``WS-GM/nasbench201/utils.py``, ``TempScheduler``): in epoch
``e`` (0-based) of ``E``, ``tau = tau_min + (tau_max - tau_min) * (1 - e / E)``,
so it falls linearly from ``tau_max`` and reaches ``tau_min`` only after the
last epoch. Settable as sampler options ``tau_max`` / ``tau_min``. Alphas
start as ``N(0, 0.01^2)`` (the reference's ``N(1, 0.01^2)`` less a constant,
which no softmax sees). One difference: the reference's GM + SNAS trains the
alphas on validation batches (its ``architect_ig.py`` takes a first-order
step for ``ws-snas``); this follows the SNAS paper, one loss for both::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> sampler = SnasSampler(gmgraph.trace(nb201.supernet(C=4, N=1)), seed=0)
    >>> sampler.start_epoch(5, 10); sampler.tau
    0.55
    >>> z = sampler.weights()["1<-0"].detach()
    >>> round(float(z.sum()), 6), bool(z.max() < 1)
    (1.0, True)
"""

from __future__ import annotations

import torch
from torch import fx

from gmgraph.errors import ConfigError
from gmgraph.graph import running
from gmgraph.samplers import DartsSampler, _exponential

TAU_MAX, TAU_MIN = 1.0, 0.1
"""The reference's temperature schedule (``snas-ws-201.sh``)."""


def temperature(epoch: int, total: int, tau_max: float = TAU_MAX, tau_min: float = TAU_MIN) -> float:
    """The temperature of epoch ``epoch`` (0-based) of ``total``: linear from ``tau_max`` toward ``tau_min``.

    >>> [round(temperature(e, 4), 3) for e in range(4)]
    [1.0, 0.775, 0.55, 0.325]
    """
    return max(tau_min, tau_min + (tau_max - tau_min) * (1 - epoch / max(total, 1)))


class SnasSampler(DartsSampler):
    """Relaxed Gumbel-softmax of alpha; weights and alphas learn from one training loss (SNAS)."""

    name = "snas"
    bilevel = False
    joint = True
    static_graph = False  # fresh noise each step (drawn from the sampler's own generator, not graph-safe)

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, tau_max: float = TAU_MAX, tau_min: float = TAU_MIN):
        super().__init__(gm, seed=seed)
        for name, value in (("tau_max", tau_max), ("tau_min", tau_min)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"snas {name} must be a positive number, got {value!r}")
        if tau_min > tau_max:
            raise ConfigError(f"snas tau_min ({tau_min}) must not exceed tau_max ({tau_max})")
        self.tau_max, self.tau_min, self.tau = float(tau_max), float(tau_min), float(tau_max)
        with torch.no_grad():
            for alpha in self.alphas.values():
                alpha.mul_(10)  # DARTS's 1e-3 N(0, 1) draws, scaled to the reference's 0.01

    def _options(self):
        return {"tau_max": self.tau_max, "tau_min": self.tau_min}

    def start_epoch(self, epoch, total):
        self.tau = temperature(epoch, total, self.tau_max, self.tau_min)

    def weights(self, generator=None):
        g = generator or self.device_generator
        return {label: ((alpha - _exponential(alpha, g).log()) / self.tau).softmax(0)
                for label, alpha in self.alphas.items()}

    def context(self, generator=None):
        return running(self.groups, weights=self.weights(generator))  # every op runs: soft weights

    def _extra_state(self):
        return {"tau": self.tau}

    def _load_extra_state(self, state):
        self.tau = float(state["tau"])
