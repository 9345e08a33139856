"""Samplers: how a supernet's Choices run in each training step (docs/algorithms.md §1, §5).

A sampler is bound to one graph. Each step it yields a context in which every
Choice runs: one sampled path (``uniform``, ``pada``), the softmax of
architecture parameters (``darts``) or a hard Gumbel sample of them (``gdas``)::

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    >>> sampler = UniformSampler(gm, seed=0)
    >>> with sampler.context():
    ...     sampler.last_arch["1<-0"] in nb201.OPS
    True

Every random draw goes through the sampler's own ``torch.Generator`` (or one
passed in, so that scoring can borrow a sampler without moving its stream).
A sampler by name: :func:`gmgraph.sampler_table.make_sampler`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn

from gmgraph import registry
from gmgraph.errors import ConfigError
from gmgraph.graph import choices, running, space
from gmgraph.label_sizes import op_sizes
from gmgraph.shrinking import ShrinkSchedule


class Sampler:
    """Base: a bound graph, a generator, and per-op state that children inherit."""

    name = "base"
    bilevel = False  # True: architecture parameters are trained on validation batches
    scores_data = False  # True: it keeps a score per training sample (give it dataset_size=)
    static_graph = False  # True: every step runs the same ops (a CUDA graph can replay it)
    multi_path = False  # True: a weight step trains several paths (step_archs), gradients added
    joint = False  # True: the weight step's loss also trains the architecture parameters (SNAS)
    single_process = False  # True: its own architecture step (arch_pass) is not data-parallel: --nproc refused

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

    def arch_pass(self, trainer, val: tuple[torch.Tensor, torch.Tensor],
                  train: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor | None:
        """An architecture step's forward and backward of this sampler's own, or None for the standard one.

        Bilevel samplers that need more than the validation loss's gradient
        (second-order DARTS reads the training batch too; ProxylessNAS samples
        two paths) compute the architecture gradients here into
        ``trainer.arch_optimizer``'s parameters and return the loss (a device
        tensor); the trainer then steps the optimizer. The default returns None:
        the trainer's standard pass (validation loss through ``context()``) runs.
        """
        return None

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
    """Single path, each label's op drawn uniformly each step (SPOS / RSPS).

    With ``shrink`` (progressive shrinking, :class:`gmgraph.shrinking.ShrinkSchedule`) each label
    draws only among the ops the schedule allows in the current epoch.
    """

    name = "uniform"

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, shrink: str | None = None):
        super().__init__(gm, seed=seed)
        self.shrink = None if shrink is None else ShrinkSchedule(shrink, self.groups)
        self.allowed = dict(self.space) if self.shrink is None else self.shrink.allowed(0)
        self._shrink_epoch = 0

    def _options(self):
        return {} if self.shrink is None else {"shrink": self.shrink.text}

    def start_epoch(self, epoch, total):
        if self.shrink is not None:
            self._shrink_epoch, self.allowed = epoch, self.shrink.allowed(epoch)

    def _extra_state(self):  # a fork or a resume draws from the epoch's sets before its next start_epoch
        return {} if self.shrink is None else {"shrink_epoch": self._shrink_epoch}

    def _load_extra_state(self, state):
        if self.shrink is not None and "shrink_epoch" in state:
            self.start_epoch(int(state["shrink_epoch"]), 0)

    def _draw_allowed(self, label: str, generator: torch.Generator) -> str:
        ops = self.allowed[label]
        return ops[int(torch.randint(len(ops), (1,), generator=generator))]

    def context(self, generator=None):
        g = generator or self.generator
        self.last_arch = {label: self._draw_allowed(label, g) for label in self.space}
        return running(self.groups, arch=self.last_arch)


class SandwichSampler(UniformSampler):
    """The sandwich rule (BigNAS, OFA): each weight step trains several subnets on the same batch.

    :meth:`step_archs` gives the step's paths: every label at its largest allowed op, every label
    at its smallest, then ``random`` uniform draws (sizes as :mod:`gmgraph.label_sizes` orders
    them; allowed ops as ``shrink`` says, else all). The trainer adds their gradients and takes
    one optimizer step (:func:`gmgraph.train.sandwich.sandwich_pass`); with ``distill`` > 0 every
    path after the first (the largest) learns ``(1 - distill) x`` cross-entropy ``+ distill x``
    KL divergence from the largest's detached outputs (in-place distillation; BigNAS uses 1).
    :meth:`context` is one uniform path, as for ``uniform`` (validation, scoring, search).

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> sampler = SandwichSampler(gmgraph.trace(nb201.supernet(C=4, N=1)), random=1)
    >>> largest, smallest, _ = sampler.step_archs()
    >>> largest["1<-0"], smallest["1<-0"]
    ('nor_conv_3x3', 'none')
    """

    name = "sandwich"
    multi_path = True

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, random: int = 2, distill: float = 1.0,
                 shrink: str | None = None):
        super().__init__(gm, seed=seed, shrink=shrink)
        if isinstance(random, bool) or not isinstance(random, int) or random < 0:
            raise ConfigError(f"sandwich random must be 0 or more, got {random!r}")
        if isinstance(distill, bool) or not isinstance(distill, int | float) or not 0 <= distill <= 1:
            raise ConfigError(f"sandwich distill must be from 0 to 1, got {distill!r}")
        self.random, self.distill = random, float(distill)
        self._sizes = {label: op_sizes(group) for label, group in self.groups.items()}

    def _options(self):
        return {**super()._options(), "random": self.random, "distill": self.distill}

    def step_archs(self, generator: torch.Generator | None = None) -> list[dict[str, str]]:
        """This step's paths: the largest, the smallest, then ``random`` uniform draws (allowed ops only)."""
        g = generator or self.generator
        largest, smallest = {}, {}
        for label, ops in self.allowed.items():
            size, position = self._sizes[label], self.space[label].index  # equal sizes: the earlier op
            largest[label] = min(ops, key=lambda op: (-size[op], position(op)))
            smallest[label] = min(ops, key=lambda op: (size[op], position(op)))
        return [largest, smallest] + [{label: self._draw_allowed(label, g) for label in self.space}
                                      for _ in range(self.random)]

    def running(self, arch: Mapping[str, str]) -> contextlib.AbstractContextManager:
        """A context in which the bound graph runs ``arch`` (one of :meth:`step_archs`)."""
        self.last_arch = dict(arch)
        return running(self.groups, arch=self.last_arch)


class DartsSampler(Sampler):
    """Weighted: every op runs, weighted by softmax(alpha) (DARTS).

    ``order=1`` trains the alphas on the validation loss's gradient (first-order
    DARTS); ``order=2`` (``--darts-order 2``) on the gradient through one unrolled
    weight step, which the trainer computes (:mod:`gmgraph.train.unrolled`).
    """

    name = "darts"
    bilevel = True
    static_graph = True

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, order: int = 1):
        super().__init__(gm, seed=seed)
        if order not in (1, 2) or isinstance(order, bool):
            raise ConfigError(f"darts order must be 1 or 2, got {order!r}")
        self.order = order
        self.single_process = order == 2  # the unrolled step is not data-parallel
        init = torch.Generator().manual_seed(seed)
        self.alphas = {
            label: nn.Parameter(1e-3 * torch.randn(len(ops), generator=init)) for label, ops in self.space.items()
        }

    def _options(self):
        return {} if self.order == 1 else {"order": self.order}

    def arch_pass(self, trainer, val, train):
        return trainer.second_order_pass(val, train) if self.order == 2 else None

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

    Follows the authors' code (ShunLu91/PA-DA, ``nasbench201/train_panda_201.py``;
    docs/algorithms.md §5 lists the differences that remain):

    * **Paths.** After each step, for every op ``o`` of the sampled path,
      ``x = Σ_Choices Σ_params ‖∇w‖₂`` over the Choices running it, divided by
      the number of labels that chose ``o``; a nonzero ``x`` updates
      ``g ← momentum·g + (1 − momentum)·x``. ``g`` starts at 0 every epoch;
      at the epoch's end each label gets ``p = τ·g/Σg + (1 − τ)/K``.
      ``pool="op"`` keeps one ``g`` per op name, shared by every label that
      offers it (the reference: one distribution for all edges); ``"label"``
      one per label. Parameter-free ops keep ``g = 0`` (``free_ops="zero"``,
      the reference) or get the mean ``g`` of their label's parametric ops
      (``"mean"``).
    * **Data.** Each observed sample scores ``s = ‖softmax(logits) − onehot(y)‖₂``;
      scores start at 0 every epoch, so unseen samples keep 0. A sample seen
      again keeps the last score (``repeats="last"``) or the running mean
      ``(s_old + s_new)/2`` (``"mean"``, the reference; exact in one process only).
      The next epoch draws ``N`` indices with replacement from
      ``q = τ·s/Σs + (1 − τ)/N``; the first epoch is a plain shuffle. The
      loss stays the plain batch mean (the reference does not reweight by ``1/(N·q)``).
    * ``τ = epoch/epochs`` at the end of epoch ``epoch`` (0-based): uniform for the
      first two epochs, ``(E − 2)/E`` for the last.

    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> sampler = PadaSampler(gmgraph.trace(nb201.supernet(C=4, N=1)), dataset_size=3)
    >>> sampler.observe(torch.tensor([[9.0, 0.0], [0.0, 0.0]]), torch.tensor([1, 0]), torch.tensor([0, 1]))
    >>> sampler.end_epoch(1, 2)  # tau = 1/2; sample 2 was not seen
    >>> [round(q, 3) for q in sampler.data_weights().tolist()]
    [0.5, 0.333, 0.167]
    """

    name = "pada"
    scores_data = True
    POOLS = ("op", "label")
    FREE_OPS = ("zero", "mean")
    REPEATS = ("last", "mean")

    def __init__(self, gm: fx.GraphModule, *, seed: int = 0, momentum: float = 0.5, dataset_size: int = 0,
                 pool: str = "op", free_ops: str = "zero", repeats: str = "last"):
        super().__init__(gm, seed=seed)
        _check_choice("pool", pool, self.POOLS)
        _check_choice("free_ops", free_ops, self.FREE_OPS)
        _check_choice("repeats", repeats, self.REPEATS)
        if not 0 <= momentum < 1:
            raise ConfigError(f"pada momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.pool, self.free_ops, self.repeats = momentum, pool, free_ops, repeats
        self.tau = 0.0
        # Host side (paths are drawn on the CPU): the last epoch's smoothed norms and the path probabilities.
        self.grad_norm = {label: torch.zeros(len(ops)) for label, ops in self.space.items()}
        self.probs = {label: torch.full((len(ops),), 1 / len(ops)) for label, ops in self.space.items()}
        self._slots = _slots(self.space, pool)  # label -> op -> index into the running norms
        # Device side, written every step without a read back and read once per epoch.
        self._running = torch.zeros(len({s for ops in self._slots.values() for s in ops.values()}))
        self.sample_scores = torch.zeros(dataset_size)  # this epoch's scores (data-parallel ranks merge them)
        # Host side: the scores of the last finished epoch, which the next epoch's data weights use.
        self.last_scores = torch.zeros(dataset_size, dtype=torch.float64)
        self.scored = False  # whether an epoch has ended (before that: a plain shuffle)
        self._parametric = {
            label: torch.tensor([any(True for _ in group[0].ops[op].parameters()) for op in self.space[label]])
            for label, group in self.groups.items()
        }

    def _options(self):
        return {"momentum": self.momentum, "dataset_size": len(self.sample_scores), "pool": self.pool,
                "free_ops": self.free_ops, "repeats": self.repeats}

    def _move(self, device):
        self._running = self._running.to(device)
        self.sample_scores = self.sample_scores.to(device)

    def per_op_state(self):
        return {"grad_norm": self.grad_norm, "probs": self.probs}

    def context(self, generator=None):
        g = generator or self.generator
        self.last_arch = {label: self._draw(label, self.probs[label], g) for label in self.space}
        return running(self.groups, arch=self.last_arch)

    def after_backward(self):
        chose: dict[int, int] = {}  # slot -> how many labels chose it this step
        for label, op in self.last_arch.items():
            slot = self._slots[label][op]
            chose[slot] = chose.get(slot, 0) + 1
        slots, values = [], []
        for label, op in self.last_arch.items():
            norms = [n for n in (_grad_norm(module.ops[op]) for module in self.groups[label]) if n is not None]
            if norms:
                slot = self._slots[label][op]
                slots.append(slot)
                values.append(torch.stack(norms).sum() / chose[slot])
        if not values:
            return
        fresh = torch.zeros_like(self._running)
        for slot, value in zip(slots, values):  # int indices: no host-to-device copy (it would sync on CUDA)
            fresh[slot] += value
        moved = self.momentum * self._running + (1 - self.momentum) * fresh
        self._running = torch.where(fresh != 0, moved, self._running)  # on the device: no read back

    def observe(self, logits, targets, indices):
        if len(self.sample_scores) == 0:
            return
        with torch.no_grad():
            error = logits.float().softmax(1) - F.one_hot(targets, logits.shape[1]).float()
            score = error.norm(dim=1).to(self.sample_scores.device)
            where = indices.to(self.sample_scores.device, non_blocking=True)  # pinned by the loader on CUDA
            if self.repeats == "last":
                self.sample_scores[where] = score
            else:
                _running_means(self.sample_scores, where, score)

    def end_epoch(self, epoch, total):
        self.tau = epoch / total
        norms = self._running.cpu()  # one read per epoch
        for label, slots in self._slots.items():
            self.grad_norm[label].copy_(norms[list(slots.values())])
        self._running = torch.zeros_like(self._running)
        self._renormalise()
        self.last_scores = self.sample_scores.cpu().double()  # one read per epoch
        self.sample_scores = torch.zeros_like(self.sample_scores)
        self.scored = True

    def _renormalise(self):
        for label, g in self.grad_norm.items():
            self.probs[label].copy_(self._path_probs(label, g))

    def _path_probs(self, label: str, g: torch.Tensor) -> torch.Tensor:
        parametric = self._parametric[label]
        g = g.clone()
        if self.free_ops == "mean" and parametric.any():
            g[~parametric] = g[parametric].mean()
        uniform = torch.full_like(g, 1 / len(g))
        if g.sum() <= 0:
            return uniform
        return self.tau * g / g.sum() + (1 - self.tau) * uniform

    def data_weights(self):
        if len(self.last_scores) == 0 or not self.scored:
            return None
        s, n = self.last_scores, len(self.last_scores)
        if s.sum() <= 0:
            return torch.full_like(s, 1 / n)
        return self.tau * s / s.sum() + (1 - self.tau) / n

    def _extra_state(self):
        return {"tau": self.tau, "sample_scores": self.last_scores.clone(), "scored": self.scored}

    def _load_extra_state(self, state):
        self.tau = float(state["tau"])
        self.scored = bool(state.get("scored", self.tau > 0))
        if len(state["sample_scores"]) == len(self.last_scores):
            self.last_scores = state["sample_scores"].clone().double().cpu()


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"pada {name} must be one of {', '.join(allowed)}, got {value!r}")


def _slots(space: Mapping[str, tuple[str, ...]], pool: str) -> dict[str, dict[str, int]]:
    """label -> op -> slot of the running norms: one slot per op name (``pool="op"``) or per (label, op)."""
    index: dict[object, int] = {}
    return {label: {op: index.setdefault(op if pool == "op" else (label, op), len(index)) for op in ops}
            for label, ops in space.items()}


def _running_means(scores: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
    """In place, for each ``i, v`` in order: ``scores[i] = (scores[i] + v) / 2``, or ``v`` where it was 0.

    One batch may hold an index several times; the sequential rule is applied
    in closed form on the device (no read back): the j-th of k occurrences
    weighs ``2^-(k-j+1)``, the first ``2^-(k-1)`` where the old score is 0,
    and an old nonzero score weighs ``2^-k``.
    """
    same = index[:, None] == index[None, :]
    later = torch.triu(same, 1).sum(1)  # occurrences of the same index after this one
    first = ~torch.tril(same, -1).any(1)
    old = scores[index]
    empty = old == 0
    weight = torch.pow(0.5, (later + 1).to(values.dtype))
    weight = torch.where(first & empty, 2 * weight, weight)
    kept = torch.where(first & ~empty, old * torch.pow(0.5, same.sum(1).to(values.dtype)), torch.zeros_like(old))
    scores.index_fill_(0, index, 0).index_add_(0, index, (weight * values + kept).to(scores.dtype))


def _grad_norm(module: nn.Module) -> torch.Tensor | None:
    """Σ over ``module``'s parameters of ``‖∇w‖₂``, as a tensor on their device (None: no gradient).

    A sum of per-tensor norms, as the PA&DA reference adds a conv's weight and bias gradient norms.
    """
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return None
    return torch.stack([g.float().norm() for g in grads]).sum()


def _exponential(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Exponential(1) noise shaped like ``like``, on its device, drawn from ``generator`` (on any device)."""
    if generator.device == like.device:
        return torch.empty_like(like).exponential_(generator=generator)
    return torch.empty(like.shape, dtype=like.dtype).exponential_(generator=generator).to(like.device)


SAMPLERS = registry.SAMPLERS
"""The sampler table (:data:`gmgraph.registry.SAMPLERS`): name -> class. A new sampler is a
:class:`Sampler` subclass and one entry; ``gmgraph search --sampler`` and every check read their names from it."""


@contextlib.contextmanager
def borrowed(sampler: Sampler, generator: torch.Generator) -> Iterator[dict[str, str] | None]:
    """Run one step of ``sampler`` drawing from ``generator``, leaving its own stream alone."""
    saved = sampler.last_arch
    try:
        with sampler.context(generator):
            yield sampler.last_arch
    finally:
        sampler.last_arch = saved
