"""Gradient matching (GM-NAS, ICLR 2022): how alike are a decision's ops, seen from the shared weights?

For one label with K candidates, each round draws a fresh batch and one way
of running the other decisions (the supernet's own sampler: a single path,
softmax weights or a Gumbel draw), forces the label to each op in turn, and
takes the gradient of the loss w.r.t. the *shared* parameters. Ops whose
gradients point the same way can share weights; ops whose gradients disagree
should be split apart::

    >>> import torch, gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
    >>> batches = [(torch.randn(8, 1, 8, 8), torch.randint(10, (8,))) for _ in range(2)]
    >>> gradient_matching(gm, "1<-0", batches, rounds=2).shape
    torch.Size([5, 5])

Scoring is an analysis, not a training step: weights, BN statistics, ``.grad``
fields, Choice modes and the global RNG streams (CPU and, on a GPU, that
device's) are all left as they were. It runs where the graph's parameters
live: move the supernet first (``gm.to("cuda")``) to score on a GPU; batches
follow it, and the distances are read back once, at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import fx

from gmgraph import registry
from gmgraph.choice import Choice
from gmgraph.config import check_positive_int
from gmgraph.device import scoring_device, to_device
from gmgraph.errors import ConfigError, DataError, SpaceError
from gmgraph.graph import active_choices, choices, running, space
from gmgraph.sampler_table import make_sampler
from gmgraph.samplers import Sampler, borrowed
from gmgraph.task import Task, get_task, split_batch

DISTANCES = registry.DISTANCES
SharedRule = Callable[[fx.GraphModule, str], Sequence[str]]


def gradient_matching(
    gm: fx.GraphModule,
    label: str,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    rounds: int = 10,
    sampler: Sampler | str = "uniform",
    shared: SharedRule | Sequence[str] | None = None,
    distance: str = "cos",
    seed: int = 0,
    device: str | torch.device | None = None,
    task: Task | str = "classification",
) -> torch.Tensor:
    """The K x K gradient distance matrix of ``label``'s ops (``space(gm)[label]`` order).

    Args:
        gm: a (sub-)supernet.
        label: the decision to score; it needs at least two candidates.
        batches: training batches ``(x, y)``; one fresh batch per round.
        rounds: R, the number of batches the distances are averaged over
            (the reference uses 100).
        sampler: how the other decisions run: a sampler bound to ``gm`` (borrowed
            with a private generator, so its stream does not move) or a name.
        shared: which parameters' gradients are compared. ``None``: every
            parameter outside ``label``'s Choices that gets a gradient in every
            child of the round. A callable ``(gm, label) -> names`` or a list of
            names selects a fixed set (missing gradients count as zeros), e.g.
            :func:`gmgraph.spaces.nb201.shared_parameters`.
        distance: ``cos`` (1 - cosine, eps 1e-6), ``per-filter-cos`` (mean over
            output filters of 1 - cosine) or ``mse``.
        seed: seeds the draws of the other decisions.
        device: where to score: ``None`` (default) is where ``gm``'s parameters
            live (the CPU for a graph without any); a name (``cpu``, ``cuda``,
            ``cuda:N``, ``auto``) must be that same device, since scoring never
            moves the caller's graph. Batches are moved there.
        task: whose loss the gradients are of (:mod:`gmgraph.task`; batches split by its rule too).

    Returns:
        A float32 CPU tensor, whatever the device: the distances are summed
        there in float64 and read back once.

    Raises:
        SpaceError: unknown label or one with a single op. ConfigError: bad
        distance or rounds; a device torch cannot use or other than the
        graph's. DataError: fewer batches than rounds.

    Example:
        >>> import torch, gmgraph
        >>> from gmgraph.spaces import nb201
        >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
        >>> batches = [(torch.randn(8, 1, 8, 8), torch.randint(10, (8,))) for _ in range(2)]
        >>> gradient_matching(gm, "1<-0", batches, rounds=2, device="cpu").device
        device(type='cpu')
    """
    ops = _check(gm, label, rounds, distance)
    task = get_task(task)
    device = _unmoved_device(gm, device)
    if isinstance(sampler, str):  # a sampler of our own keeps its state (DARTS alphas) with the graph
        sampler = make_sampler(sampler, gm, seed=seed).to(device)
    # A CPU generator on every device: the same draws of the other decisions on a GPU as on the CPU.
    generator = torch.Generator().manual_seed(seed)
    params = dict(gm.named_parameters())
    fixed = _fixed_names(gm, label, shared)
    total = torch.zeros(len(ops), len(ops), dtype=torch.float64, device=device)
    done = 0
    with _untouched(gm, device):
        for x, y in _take(batches, rounds, device):
            grads = _child_gradients(gm, label, ops, sampler, generator, params, x, y, task.loss)
            if fixed is None:
                names = _shared_in_all(grads, _outside(gm, label, params))
            else:  # a parameter no child touched adds zeros to every vector: it cannot change a distance
                names = [n for n in fixed if any(n in g for g in grads)]
            total += _distances([_flatten(g, names, params) for g in grads], distance)
            done += 1
    return (total / done).float().cpu()  # the one read-back of this label


def _unmoved_device(gm: fx.GraphModule, device: str | torch.device | None = None) -> torch.device:
    """The device ``gm`` is scored on by the rule of every score (:func:`gmgraph.device.scoring_device`),
    which must be where its parameters live: gradient matching scores the caller's graph itself, not a copy.

    Raises:
        ConfigError: ``device`` is not a device torch can use here, or not the
            one holding ``gm``'s parameters (scoring never moves them).

    Example:
        >>> from torch import nn
        >>> _unmoved_device(nn.Linear(2, 2), "cpu")
        device(type='cpu')
    """
    home, wanted = scoring_device(gm), scoring_device(gm, device)
    if wanted != home:
        raise ConfigError(f"device {str(device)!r} is not where the graph's parameters are ({home}); "
                          f"move the graph first (gm.to({str(wanted)!r})) or leave device unset")
    return home


def _check(gm: fx.GraphModule, label: str, rounds: int, distance: str) -> tuple[str, ...]:
    current = space(gm)
    if label not in current:
        raise SpaceError(f"no decision named {label!r}; labels are {list(current)}")
    if len(current[label]) < 2:
        raise SpaceError(f"{label!r} has a single op {current[label]}; there is nothing to split")
    if distance not in DISTANCES:
        raise ConfigError(f"unknown distance {distance!r}; choose one of {', '.join(DISTANCES)}")
    check_positive_int("rounds", rounds)
    return current[label]


def _take(batches: Iterable, rounds: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    it = iter(batches)
    for i in range(rounds):
        try:
            batch = next(it)
        except StopIteration:
            raise DataError(f"gradient matching needs {rounds} batches but the data gave only {i}") from None
        x, y = split_batch(batch)
        yield to_device(x, device), to_device(y, device)


def _child_gradients(gm, label, ops, sampler, generator, params, x, y, loss_fn) -> list[dict[str, torch.Tensor]]:
    """One round: the other decisions fixed by one sampler draw, ``label`` forced to each op."""
    groups = choices(gm)
    names = list(params)
    out = []
    # The forcing weights live with the activations; `keep` tells the Choices on the host which
    # op runs, so the others are skipped without reading the weights back from a GPU.
    one_hots = torch.eye(len(ops), device=x.device)
    randomness = _rng_state(x.device)
    with borrowed(sampler, generator) as drawn:
        reach = _reaching(gm, label, drawn)
        for k in range(len(ops)):
            keep = [i == k for i in range(len(ops))]
            _set_rng_state(x.device, randomness)  # every candidate sees the same dropout masks (and the like)
            with running(groups, arch=reach, weights={label: one_hots[k]}, keep={label: keep}):
                loss = loss_fn(gm(x), y)
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
            out.append({n: g for n, g in zip(names, grads) if g is not None})
    return out


def _reaching(gm: fx.GraphModule, label: str, drawn: dict[str, str] | None) -> dict[str, str]:
    """The enclosing decisions to change so that ``label`` runs under the drawn path (nested Choices).

    A Choice inside another Choice's candidate (an OFA block's kernel inside its stage's depth) runs
    only where the enclosing op holds it; forcing it on a path that leaves it off would score K equal
    gradients. Each enclosing Choice that runs and whose drawn op does not hold ``label`` takes its
    first op that does. Empty for a top-level label, or a sampler without a single path (weights).
    """
    if drawn is None:
        return {}
    arch, changed = dict(drawn), {}
    while True:
        running_now = active_choices(gm, arch)
        if any(choice.label == label for _, choice in running_now):
            return changed
        for _, choice in running_now:
            if not _holds(choice.ops[arch[choice.label]], label):
                op = next((name for name, candidate in choice.ops.items() if _holds(candidate, label)), None)
                if op is not None:
                    arch[choice.label] = changed[choice.label] = op
                    break
        else:
            return changed


def _holds(module: torch.nn.Module, label: str) -> bool:
    return any(isinstance(m, Choice) and m.label == label for m in module.modules())


def _rng_state(device: torch.device) -> tuple:
    """The global random state that random layers draw from on ``device`` (the CPU's, and the GPU's)."""
    return (torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _outside(gm: fx.GraphModule, label: str, params: dict) -> list[str]:
    inside = {id(p) for module in choices(gm)[label] for p in module.parameters()}
    return [n for n, p in params.items() if id(p) not in inside]


def _shared_in_all(grads: list[dict], candidates: list[str]) -> list[str]:
    return [n for n in candidates if all(n in g for g in grads)]


def _fixed_names(gm: fx.GraphModule, label: str, shared) -> list[str] | None:
    if shared is None:
        return None
    names = list(shared(gm, label)) if callable(shared) else list(shared)
    known = dict(gm.named_parameters())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SpaceError(f"shared parameter(s) {unknown[:3]} are not parameters of the graph")
    inside = {id(p) for module in choices(gm)[label] for p in module.parameters()}
    return [n for n in names if id(known[n]) not in inside]


def _flatten(grads: dict, names: list[str], params: dict) -> list[torch.Tensor]:
    return [grads[n] if n in grads else torch.zeros_like(params[n]) for n in names]


def _distances(per_child: list[list[torch.Tensor]], distance: str) -> torch.Tensor:
    """The K x K distances of one round, float64, on the gradients' device (no read-back)."""
    k = len(per_child)
    if not per_child[0]:
        raise SpaceError("no parameter is shared by every child of this label; give `shared=` explicitly")
    flat = [torch.cat([g.reshape(-1) for g in grads]).double() for grads in per_child]
    out = torch.zeros(k, k, dtype=torch.float64, device=flat[0].device)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = _distance(per_child[i], per_child[j], flat[i], flat[j], distance)
    return out


def _distance(
    a: list[torch.Tensor], b: list[torch.Tensor], fa: torch.Tensor, fb: torch.Tensor, kind: str
) -> torch.Tensor:
    """A float64 scalar tensor, left on the device; cosine distances lie in [0, 2]."""
    if kind == "cos":
        return 1 - _cosine(fa, fb, dim=0)
    if kind == "mse":
        return ((fa - fb) ** 2).mean()
    cosines = [
        _cosine(ga.reshape(len(ga), -1).double(), gb.reshape(len(gb), -1).double(), dim=1)
        for ga, gb in zip(a, b)
        if ga.dim() > 0
    ]
    return (1 - torch.cat(cosines).mean()).clamp(0.0, 2.0)


def _cosine(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Cosine similarity clamped into [-1, 1]: the rounded quotient can land a few ulps outside, and a
    distance of -7e-17 between identical gradients (seen on an AVX-512 CPU) is no distance."""
    return F.cosine_similarity(a, b, dim=dim, eps=1e-6).clamp(-1.0, 1.0)


@contextlib.contextmanager
def _untouched(gm: fx.GraphModule, device: torch.device) -> Iterator[None]:
    """Keep buffers (BN statistics), train/eval flags and the global RNGs exactly as they were.

    The CPU stream always, and the scoring GPU's stream on CUDA (dropout there draws from it).
    """
    buffers = {n: b.clone() for n, b in gm.named_buffers()}
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        try:
            yield
        finally:
            with torch.no_grad():
                for n, b in gm.named_buffers():
                    b.copy_(buffers[n])
