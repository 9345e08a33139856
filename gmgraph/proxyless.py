"""ProxylessNAS (Cai et al., ICLR 2019): binary gates, one path per weight step, two per architecture step.

docs/algorithms.md §12. Each label keeps architecture logits ``alpha`` (as ``darts``):

* **Weight step** (:meth:`ProxylessSampler.context`): one op per label drawn from
  ``p = softmax(alpha)``; only that path runs, so only its parameters get
  gradients and only its activations are kept (single-path memory).
* **Architecture step** (:meth:`ProxylessSampler.arch_pass`): per label two
  different ops ``{a, b}`` drawn from ``p`` without replacement, their
  probabilities renormalised, ``q = softmax(alpha[[a, b]])``, and one of them
  made active by a draw from ``q``. The Choices run ``g_a·op_a(x) + g_b·op_b(x)``
  with binary gates ``g`` (1 for the active op, 0 for the other), so the
  forward is the active path's while ``∂L/∂g_j`` exists for both. The gate
  gradient reaches alpha as ProxylessNAS says,
  ``∂L/∂alpha_i = Σ_j ∂L/∂g_j · q_j (δ_ij − q_i)`` over the two: the gates are
  ``g = onehot + (q − q.detach())`` (exactly 0 and 1 forward; the Jacobian of
  ``q`` backward). Only the two drawn ops' alphas get this gradient. With
  ``rescale`` (the reference's ``rescale_updated_arch_param``), after the
  optimizer step the two logits are shifted by one constant so that their
  ``logsumexp`` is what it was before it: the step moves mass between the two
  and leaves the other ops' probabilities where they were.
* ``--latency-weight`` adds ``λ·E[latency]`` over ``softmax(alpha)`` to the
  architecture loss (the trainer's ``arch_penalty``): its gradient reaches
  every alpha, as in the paper.

Draws are on the host, from the sampler's generator: the architecture step
copies ``softmax(alpha)`` of every label to the host in one transfer and the
weight step that follows draws its path from the same copy (so the path of
weight step ``t`` follows the alphas of the architecture update before it,
the reference's order: weight step, then architecture step). No value is read
into Python; on a GPU that one copy per step is the step's only wait, which a
single-path step cannot avoid (which op runs must be known on the host).

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> sampler = ProxylessSampler(gmgraph.trace(nb201.supernet(C=4, N=1)), seed=0)
    >>> with sampler.context():
    ...     sampler.last_arch["1<-0"] in nb201.OPS
    True
    >>> sorted(sampler.arch_parameters())[0]
    'alpha/1<-0'
"""

from __future__ import annotations

import torch
from torch import fx

from gmgraph.device import autocast
from gmgraph.errors import ConfigError
from gmgraph.graph import running
from gmgraph.samplers import DartsSampler


class ProxylessSampler(DartsSampler):
    """Binary-gate ProxylessNAS: a single sampled path for weights, two paths and gate gradients for alphas."""

    name = "proxyless"
    bilevel = True
    static_graph = False  # the path changes every step
    single_process = True  # the two-path architecture step is not averaged across ranks

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, rescale: bool = True):
        super().__init__(gm, seed=seed)
        self.single_process = True  # (DartsSampler sets it per instance, by its order)
        if not isinstance(rescale, bool):
            raise ConfigError(f"proxyless rescale must be true or false, got {rescale!r}")
        self.rescale = rescale
        self._probs: dict[str, torch.Tensor] | None = None  # the host copy the next weight step draws from
        self._pending: dict[str, tuple[list[int], torch.Tensor]] = {}  # label -> (pair, logsumexp before the step)

    def _options(self):
        return {"rescale": self.rescale}

    def host_probs(self) -> dict[str, torch.Tensor]:
        """label -> ``softmax(alpha)`` on the host, all labels in one device-to-host copy."""
        self._settle()
        with torch.no_grad():
            flat = torch.cat([a.detach().softmax(0) for a in self.alphas.values()]).to("cpu", torch.float64)
        return dict(zip(self.alphas, flat.split([len(a) for a in self.alphas.values()])))

    def context(self, generator=None):
        g = generator or self.generator
        probs = self._probs if generator is None and self._probs is not None else self.host_probs()
        if generator is None:
            self._probs = None
        self._settle()
        self.last_arch = {label: self._draw(label, probs[label], g) for label in self.space}
        return running(self.groups, arch=self.last_arch)

    def gates(self, generator: torch.Generator | None = None) -> tuple[dict[str, torch.Tensor], dict[str, list[bool]]]:
        """One architecture step's binary gates: ``(label -> weights over all ops, label -> which ops run)``.

        Two ops per label (one where the label has one) are drawn from ``softmax(alpha)`` without
        replacement; the weights are 1 for the active one, 0 for the other and elsewhere, and carry
        the gradient of the pair's renormalised probabilities. The host copy of the probabilities
        is kept for the next :meth:`context`.
        """
        g = generator or self.generator
        probs = self.host_probs()
        weights, keep = {}, {}
        for label, alpha in self.alphas.items():
            pair = torch.multinomial(probs[label], min(2, len(alpha)), replacement=False, generator=g).tolist()
            renormalised = probs[label][pair] / probs[label][pair].sum()
            active = int(torch.multinomial(renormalised, 1, generator=g))
            q = torch.stack([alpha[i] for i in pair]).softmax(0)  # int indices: no host-to-device copy
            straight = q - q.detach()  # exactly 0 forward, dq/dalpha backward
            zero = straight.new_zeros(())
            gate = {i: straight[k] + (1.0 if k == active else 0.0) for k, i in enumerate(pair)}
            weights[label] = torch.stack([gate.get(i, zero) for i in range(len(alpha))])
            keep[label] = [i in gate for i in range(len(alpha))]
            if self.rescale and len(pair) == 2:
                self._pending[label] = (pair, torch.stack([alpha[i] for i in pair]).detach().logsumexp(0))
        self._probs = probs
        return weights, keep

    def arch_pass(self, trainer, val, train):
        """The gate-gradient architecture step on the validation batch ``val`` (``train`` is not read)."""
        x, y = val
        trainer.arch_optimizer.zero_grad(set_to_none=True)
        weights, keep = self.gates()
        with running(self.groups, weights=weights, keep=keep), autocast(trainer.device, trainer.config.precision):
            loss = trainer.task.loss(trainer._forward(x, y).float(), y)
        if trainer.arch_penalty is not None:
            loss = loss + trainer._penalty()
        trainer._backward(loss, trainer.arch_optimizer)
        return loss.detach()

    def _settle(self) -> None:
        """Apply the pending rescale of the last architecture step (after its optimizer step), on the device."""
        if not self._pending:
            return
        with torch.no_grad():
            for label, (pair, before) in self._pending.items():
                alpha = self.alphas[label]
                shift = torch.stack([alpha[i] for i in pair]).logsumexp(0) - before
                for i in pair:
                    alpha[i] -= shift
        self._pending = {}

    def per_op_state(self):
        self._settle()
        return super().per_op_state()

    def _load_extra_state(self, state):
        self._probs, self._pending = None, {}
