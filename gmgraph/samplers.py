"""Samplers: how a supernet's Choices run in each training step (docs/algorithms.md §1, §5).

A sampler is bound to one graph. Each step it yields a context in which every
Choice runs: one sampled path (``uniform``, ``pada``), the softmax of
architecture parameters (``darts``) or a hard Gumbel sample of them (``gdas``)::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    >>> sampler = make_sampler("uniform", gm, seed=0)
    >>> with sampler.context():
    ...     sampler.last_arch["1<-0"] in nb201.OPS
    True

Every random draw goes through the sampler's own ``torch.Generator`` (or one
passed in, so that scoring can borrow a sampler without moving its stream).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from gmgraph.errors import ConfigError
from gmgraph.graph import choices, running, space


class Sampler:
    """Base: a bound graph, a generator, and per-op state that children inherit."""

    name = "base"
    bilevel = False  # True: architecture parameters are trained on validation batches
    scores_data = False  # True: it keeps a score per training sample (give it dataset_size=)
    static_graph = False  # True: every step runs the same ops (a CUDA graph can replay it)

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0):
        self.space = space(gm)
        self.groups = choices(gm)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)  # host draws (paths, partitions)
        self.device = torch.device("cpu")
        self.device_generator = self.generator  # draws of tensors that live on `device`
        self.last_arch: dict[str, str] | None = None

    def to(self, device: torch.device) -> Sampler:
        """Keep the state that steps read on ``device`` (alphas, per-sample scores); host draws stay on the CPU.

        On a GPU, tensors the sampler draws there (Gumbel noise) come from a
        generator of that device, seeded from the sampler's seed.
        """
        device = torch.device(device)
        if device != self.device:
            self.device = device
            self.device_generator = (self.generator if device.type == "cpu"
                                     else torch.Generator(device).manual_seed(self.seed))
            self._move(device)
        return self

    def _move(self, device: torch.device) -> None:
        """Move device-side state (subclasses)."""

    def context(self, generator: torch.Generator | None = None) -> contextlib.AbstractContextManager:
        """A context in which the bound graph's Choices run as this sampler says."""
        raise NotImplementedError

    def arch_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable architecture parameters, keyed ``alpha/<label>``."""
        return {}

    def start_epoch(self, epoch: int, total: int) -> None:
        """Called before epoch ``epoch`` (0-based) of ``total``."""

    def after_backward(self) -> None:
        """Called after the weight step's backward, before the optimizer step."""

    def observe(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        """Called with each training batch's logits and dataset indices."""

    def end_epoch(self, epoch: int, total: int) -> None:
        """Called after epoch ``epoch`` (0-based) of ``total``."""

    def data_weights(self) -> torch.Tensor | None:
        """Sampling weights over the training set for the next epoch (None: a plain shuffle)."""
        return None

    def per_op_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """State with one entry per candidate op: restricted when the space is split."""
        return {}

    def state_dict(self) -> dict:
        state = {name: {label: t.detach().clone() for label, t in per.items()} for name, per in self.per_op_state().items()}
        out = {"name": self.name, "generator": self.generator.get_state(), "per_op": state, **self._extra_state()}
        if self.device_generator is not self.generator:
            out["device_generator"] = {"device": self.device.type, "state": self.device_generator.get_state()}
        return out

    def load_state_dict(self, state: Mapping) -> None:
        if state["name"] != self.name:
            raise ConfigError(f"sampler state is for {state['name']!r}, not {self.name!r}")
        self.generator.set_state(state["generator"])
        saved = state.get("device_generator")
        if saved is not None and self.device_generator is not self.generator and saved["device"] == self.device.type:
            self.device_generator.set_state(saved["state"])  # on another kind of device its stream starts afresh
        for name, per in self.per_op_state().items():
            for label, tensor in per.items():
                with torch.no_grad():
                    tensor.copy_(state["per_op"][name][label])
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: Mapping) -> None:
        pass

    def fork(self, child: fx.GraphModule, *, seed: int) -> Sampler:
        """The same sampler bound to a restricted child graph, inheriting per-op state."""
        new = type(self)(child, seed=seed, **self._options())
        for name, per in new.per_op_state().items():
            for label, tensor in per.items():
                keep = [self.space[label].index(op) for op in new.space[label]]
                with torch.no_grad():
                    tensor.copy_(self.per_op_state()[name][label][keep])
        new._load_extra_state(self._extra_state())
        new._renormalise()
        return new

    def _options(self) -> dict:
        return {}

    def _renormalise(self) -> None:
        pass

    def _draw(self, label: str, probs: torch.Tensor | None, generator: torch.Generator) -> str:
        ops = self.space[label]
        if probs is None:
            return ops[int(torch.randint(len(ops), (1,), generator=generator))]
        return ops[int(torch.multinomial(probs, 1, generator=generator))]


class UniformSampler(Sampler):
    """Single path, each label's op drawn uniformly each step (SPOS / RSPS)."""

    name = "uniform"

    def context(self, generator=None):
        g = generator or self.generator
        self.last_arch = {label: self._draw(label, None, g) for label in self.space}
        return running(self.groups, arch=self.last_arch)


class DartsSampler(Sampler):
    """Weighted: every op runs, weighted by softmax(alpha) (first-order DARTS)."""

    name = "darts"
    bilevel = True
    static_graph = True

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0):
        super().__init__(gm, seed=seed)
        init = torch.Generator().manual_seed(seed)
        self.alphas = {
            label: nn.Parameter(1e-3 * torch.randn(len(ops), generator=init)) for label, ops in self.space.items()
        }

    def _move(self, device):
        for alpha in self.alphas.values():
            alpha.data = alpha.data.to(device)  # the same Parameter objects: optimizers keep them

    def arch_parameters(self):
        return {f"alpha/{label}": a for label, a in self.alphas.items()}

    def per_op_state(self):
        return {"alpha": self.alphas}

    def weights(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """label -> the weights the Choices run with this step."""
        return {label: a.softmax(0) for label, a in self.alphas.items()}

    def context(self, generator=None):
        return running(self.groups, weights=self.weights(generator or self.device_generator))


class GdasSampler(DartsSampler):
    """Hard Gumbel-softmax of alpha: one op runs, every alpha gets gradient (GDAS).

    The temperature falls linearly from ``tau_max`` to ``tau_min`` over training.
    """

    name = "gdas"
    static_graph = False  # the op that runs changes every step

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, tau_max: float = 10.0, tau_min: float = 0.1):
        super().__init__(gm, seed=seed)
        self.tau_max, self.tau_min, self.tau = tau_max, tau_min, tau_max
        self._drawn: dict[str, torch.Tensor] = {}  # the last step's one-hot weights

    @property
    def last_arch(self) -> dict[str, str] | None:
        """The ops of the last draw; on a GPU reading it waits for the GPU (only diagnostics read it)."""
        if not self._drawn:
            return None
        return {label: self.space[label][int(w.argmax())] for label, w in self._drawn.items()}

    @last_arch.setter
    def last_arch(self, value) -> None:
        if value is None:
            self._drawn = {}

    def _options(self):
        return {"tau_max": self.tau_max, "tau_min": self.tau_min}

    def start_epoch(self, epoch, total):
        self.tau = self.tau_max - (self.tau_max - self.tau_min) * epoch / max(total - 1, 1)

    def weights(self, generator=None):
        g = generator or self.device_generator
        out = {}
        for label, alpha in self.alphas.items():
            gumbel = -_exponential(alpha, g).log()
            soft = ((alpha.log_softmax(0) + gumbel) / self.tau).softmax(0)
            hard = F.one_hot(soft.argmax(), len(alpha)).to(soft.dtype)
            out[label] = hard - soft.detach() + soft  # straight-through: exact one-hot forward
        return out

    def context(self, generator=None):
        weights = self.weights(generator)
        self._drawn = {label: w.detach() for label, w in weights.items()}
        return running(self.groups, weights=weights)  # CPU weights: zero ops are skipped; GPU: all run

    def _extra_state(self):
        return {"tau": self.tau}

    def _load_extra_state(self, state):
        self.tau = float(state["tau"])


class PadaSampler(Sampler):
    """PA&DA: importance sampling of paths and of training data (Lu et al., CVPR 2023).

    Path: ``p = tau * g / sum(g) + (1 - tau) / K`` per label, ``g`` a moving
    average (factor ``momentum``) of the gradient norm of each op's weights,
    averaged over the Choices that share the label. Parameter-free ops have no
    weights; they get the mean ``g`` of their label's parametric ops, so they
    keep a fair share instead of vanishing. Data: per-sample
    ``s = |softmax(logits) - onehot(y)|_2``, ``q = tau * s / sum(s) + (1 - tau) / N``,
    the next epoch drawn from ``q`` with replacement. ``tau`` ramps from 0 to 1.
    """

    name = "pada"
    scores_data = True

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, momentum: float = 0.5, dataset_size: int = 0):
        super().__init__(gm, seed=seed)
        self.momentum, self.tau = momentum, 0.0
        # Host side (paths are drawn on the CPU): the moving averages and the path probabilities.
        self.grad_norm = {label: torch.zeros(len(ops)) for label, ops in self.space.items()}
        self.probs = {label: torch.full((len(ops),), 1 / len(ops)) for label, ops in self.space.items()}
        self._counts = {label: torch.zeros(len(ops)) for label, ops in self.space.items()}
        # Device side (written every step without a read back; read once per epoch).
        self._sums = {label: torch.zeros(len(ops)) for label, ops in self.space.items()}
        self.sample_scores = torch.ones(dataset_size)
        self._parametric = {
            label: torch.tensor([any(True for _ in group[0].ops[op].parameters()) for op in self.space[label]])
            for label, group in self.groups.items()
        }

    def _options(self):
        return {"momentum": self.momentum, "dataset_size": len(self.sample_scores)}

    def _move(self, device):
        self._sums = {label: t.to(device) for label, t in self._sums.items()}
        self.sample_scores = self.sample_scores.to(device)

    def per_op_state(self):
        return {"grad_norm": self.grad_norm, "probs": self.probs}

    def context(self, generator=None):
        g = generator or self.generator
        self.last_arch = {label: self._draw(label, self.probs[label], g) for label in self.space}
        return running(self.groups, arch=self.last_arch)

    def after_backward(self):
        for label, op in self.last_arch.items():
            norms = [_grad_norm(module.ops[op]) for module in self.groups[label]]
            norms = [n for n in norms if n is not None]
            if norms:
                i = self.space[label].index(op)
                self._sums[label][i] += torch.stack(norms).mean()  # on the device: no read back
                self._counts[label][i] += 1

    def observe(self, logits, targets, indices):
        if len(self.sample_scores) == 0:
            return
        with torch.no_grad():
            error = logits.float().softmax(1) - F.one_hot(targets, logits.shape[1]).float()
            where = indices.to(self.sample_scores.device, non_blocking=True)  # pinned by the loader on CUDA
            self.sample_scores[where] = error.norm(dim=1).to(self.sample_scores.device)

    def end_epoch(self, epoch, total):
        self.tau = min(1.0, (epoch + 1) / max(total - 1, 1))
        for label in self.space:
            seen = self._counts[label] > 0
            fresh = self._sums[label].cpu()[seen] / self._counts[label][seen]  # one read per label and epoch
            self.grad_norm[label][seen] = self.momentum * self.grad_norm[label][seen] + (1 - self.momentum) * fresh
            self._sums[label].zero_()
            self._counts[label].zero_()
        self._renormalise()

    def _renormalise(self):
        for label, g in self.grad_norm.items():
            self.probs[label].copy_(self._path_probs(label, g))

    def _path_probs(self, label: str, g: torch.Tensor) -> torch.Tensor:
        parametric = self._parametric[label]
        g = g.clone()
        if parametric.any():
            g[~parametric] = g[parametric].mean()
        uniform = torch.full_like(g, 1 / len(g))
        if g.sum() <= 0:
            return uniform
        return self.tau * g / g.sum() + (1 - self.tau) * uniform

    def data_weights(self):
        if len(self.sample_scores) == 0 or self.tau == 0:
            return None
        s = self.sample_scores.cpu()  # once per epoch
        return self.tau * s / s.sum() + (1 - self.tau) / len(s)

    def _extra_state(self):
        return {"tau": self.tau, "sample_scores": self.sample_scores.clone()}

    def _load_extra_state(self, state):
        self.tau = float(state["tau"])
        if len(state["sample_scores"]) == len(self.sample_scores):
            self.sample_scores = state["sample_scores"].clone().to(self.sample_scores.device)


def _grad_norm(module: nn.Module) -> torch.Tensor | None:
    """The gradient norm of ``module``'s weights, as a tensor on their device (None: no gradient)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    return torch.sqrt(sum((g.float() ** 2).sum() for g in grads))


def _exponential(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exponential(1) noise shaped like ``like``, on its device, drawn from ``generator`` (on any device)."""
    if generator.device == like.device:
        return torch.empty_like(like).exponential_(generator=generator)
    return torch.empty(like.shape, dtype=like.dtype).exponential_(generator=generator).to(like.device)


SAMPLERS: dict[str, type[Sampler]] = {
    "uniform": UniformSampler,
    "darts": DartsSampler,
    "gdas": GdasSampler,
    "pada": PadaSampler,
}
"""The sampler table: name -> class. A new sampler is a :class:`Sampler` subclass and one entry here;
``gmgraph search --sampler`` and every check read their names from it."""


def make_sampler(name: str, gm: fx.GraphModule, *, seed: int = 0, **options) -> Sampler:
    """Build sampler ``name`` (a key of :data:`SAMPLERS`) bound to ``gm``.

    Raises:
        ConfigError: for an unknown name or option.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    try:
        return SAMPLERS[name](gm, seed=seed, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for sampler {name!r}: {exc}") from exc


@contextlib.contextmanager
def borrowed(sampler: Sampler, generator: torch.Generator) -> Iterator[dict[str, str] | None]:
    """Run one step of ``sampler`` drawing from ``generator``, leaving its own stream alone."""
    saved = sampler.last_arch
    try:
        with sampler.context(generator):
            yield sampler.last_arch
    finally:
        sampler.last_arch = saved
