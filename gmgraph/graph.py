"""The supernet as an ``fx.GraphModule``: tracing, reading the space, running it.

The search space is read off the graph's Choice modules; there is no second
copy of it anywhere::

    >>> import torch
    >>> from torch import nn
    >>> from gmgraph.choice import Choice, Neg
    >>> net = nn.Sequential(nn.Linear(2, 2), Choice({"id": nn.Identity(), "neg": Neg()}, "act"))
    >>> gm = trace(net)
    >>> space(gm)
    {'act': ('id', 'neg')}
    >>> with use(gm, {"act": "neg"}):
    ...     y = gm(torch.ones(1, 2))
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import fx, nn

from gmgraph.arch import Arch, Space, validate
from gmgraph.choice import Choice
from gmgraph.errors import SpaceError, TraceError


class _ChoiceTracer(fx.Tracer):
    """Keeps Choices (and user-named module types) as leaves and remembers where it is."""

    def __init__(self, leaf_modules: Sequence[type[nn.Module]] = ()):
        super().__init__()
        self.extra_leaves = tuple(leaf_modules)
        self.stack: list[str] = []
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (Choice, *self.extra_leaves)):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # Remember the innermost module being traced when tracing failed.
        self.stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.stack[-1]
            raise
        finally:
            self.stack.pop()


def trace(model: nn.Module, leaf_modules: Sequence[type[nn.Module]] = ()) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule with every Choice kept as a ``call_module`` leaf.

    Args:
        model: any ``nn.Module``; its Choices become leaves.
        leaf_modules: extra module types to keep as leaves (e.g. blocks with
            data-dependent control flow that fx cannot trace).

    Raises:
        TraceError: naming the module that could not be traced.
    """
    tracer = _ChoiceTracer(leaf_modules)
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types; all mean "not traceable"
        where = tracer.failed_in or ""
        culprit = model.get_submodule(where)
        if where:
            hint = (f"If it has data-dependent control flow, declare it a leaf: "
                    f"gmgraph.trace(model, leaf_modules=({type(culprit).__name__},))")
        else:  # the root itself cannot be a leaf: that would leave no graph
            hint = ("The control flow is in the model's own forward: move it into a submodule and declare "
                    "that submodule a leaf (leaf_modules=...), or make the forward traceable")
        raise TraceError(
            f"torch.fx could not trace module {where or '<root>'!r} ({type(culprit).__name__}): {exc}. {hint}"
        ) from exc
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    gm.meta["lineage"] = []
    return gm


def choices(gm: nn.Module) -> dict[str, list[Choice]]:
    """label -> the Choice modules of that decision, in module order."""
    out: dict[str, list[Choice]] = {}
    for module in gm.modules():
        if isinstance(module, Choice):
            out.setdefault(module.label, []).append(module)
    return out


def space(gm: nn.Module) -> Space:
    """label -> candidate op names, labels in the order they first appear.

    Raises:
        SpaceError: when Choices sharing a label disagree on their candidates.
    """
    out: dict[str, tuple[str, ...]] = {}
    for label, group in choices(gm).items():
        names = group[0].names
        for other in group[1:]:
            if other.names != names:
                raise SpaceError(
                    f"Choices labelled {label!r} disagree on their candidates: "
                    f"{names} vs {other.names}; Choices sharing a label must hold the same ops"
                )
        out[label] = names
    return out


def space_size(gm: nn.Module) -> int:
    """Number of architectures in the graph's space."""
    return math.prod(len(ops) for ops in space(gm).values())


@contextlib.contextmanager
def use(gm: nn.Module, arch: Arch) -> Iterator[nn.Module]:
    """Run every Choice on the single op ``arch`` names for its label.

    The arch must name exactly the graph's labels with allowed ops (ArchError
    otherwise). The previous mode of each Choice is restored on exit.
    """
    validate(arch, space(gm))
    with running(choices(gm), arch=arch):
        yield gm


@contextlib.contextmanager
def use_weights(gm: nn.Module, weights: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Run every Choice as the weighted sum of its candidates (DARTS, Gumbel).

    ``weights[label]`` holds one weight per candidate, in ``space(gm)[label]``
    order. Labels left out keep the mode they had (so a caller may fix some
    decisions with :func:`use` and weight the others).
    """
    groups = choices(gm)
    unknown = set(weights) - set(groups)
    if unknown:
        raise SpaceError(f"no decision named {sorted(unknown)}; labels are {list(groups)}")
    with running(groups, weights=weights):
        yield gm


@contextlib.contextmanager
def running(
    groups: Mapping[str, Sequence[Choice]],
    *,
    arch: Mapping[str, str] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
    keep: Mapping[str, list[bool]] | None = None,
) -> Iterator[None]:
    """Set the mode of already-collected Choices; restore their old modes on exit.

    The unchecked core of :func:`use` and :func:`use_weights` for hot loops
    (a training step) that collected ``groups = choices(gm)`` once. ``keep``
    (label -> which ops to run) lets weighted Choices skip ops known on the
    host to have weight zero.
    """
    # Plain attributes set through __dict__: nn.Module.__setattr__ costs ~3 us a call, and a
    # training step sets and restores every Choice of the supernet.
    saved = [(m.__dict__, m.active, m.weights, m.keep) for group in groups.values() for m in group]
    keep = keep or {}
    try:
        for label, op in (arch or {}).items():
            for module in groups[label]:
                module.__dict__.update(active=op, weights=None, keep=None)
        for label, w in (weights or {}).items():
            for module in groups[label]:
                module.set_weights(w, keep.get(label))
        yield
    finally:
        for state, active, w, k in saved:
            state.update(active=active, weights=w, keep=k)


def sample(gm: nn.Module, generator: torch.Generator | None = None) -> Arch:
    """A uniformly random architecture of the graph's current space.

    >>> from torch import nn
    >>> from gmgraph.choice import Choice, Neg
    >>> gm = trace(nn.Sequential(Choice({"a": nn.Identity(), "b": Neg()}, "x")))
    >>> sample(gm, torch.Generator().manual_seed(0))
    {'x': 'a'}
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SpaceError(f"sample takes a torch.Generator (or None), got {type(generator).__name__}: "
                         "use torch.Generator().manual_seed(seed)")
    arch = {}
    for label, ops in space(gm).items():
        index = int(torch.randint(len(ops), (1,), generator=generator))
        arch[label] = ops[index]
    return arch
