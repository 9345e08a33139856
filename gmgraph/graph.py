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
import threading
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import fx, nn

from gmgraph import live_run
from gmgraph.arch import Arch, Space, validate
from gmgraph.choice import Choice
from gmgraph.errors import SpaceError, TraceError
from gmgraph.nesting import network_count


class _ChoiceTracer(fx.Tracer):
    """Keeps Choices (and user-named module types) as leaves and remembers where it is."""

    def __init__(self, leaf_modules: Sequence[type[nn.Module]] = (), leaf_instances: Sequence[nn.Module] = ()):
        super().__init__()
        self.extra_leaves = tuple(leaf_modules)
        self.leaf_ids = {id(m) for m in leaf_instances}
        self.stack: list[tuple[str, nn.Module]] = []
        self.failed_in: str | None = None
        # id -> (path, module) of every module whose traced forward read a `training` flag.
        self.mode_readers: dict[int, tuple[str, nn.Module]] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (Choice, *self.extra_leaves)) or id(m) in self.leaf_ids:
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        # Remember the innermost module being traced when tracing failed.
        self.stack.append((self.path_of_module(m), m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.stack[-1][0]
            raise
        finally:
            self.stack.pop()

    def read_training(self) -> None:
        # Leaves never run while tracing, so the reader is the innermost module being traced through.
        path, module = self.stack[-1] if self.stack else ("", self.root)
        self.mode_readers[id(module)] = (path, module)


# thread id -> callbacks of the traces running in it (innermost last); see _watching_training.
_training_watchers: dict[int, list[Callable[[], None]]] = {}
_watch_lock = threading.Lock()


def _get_training(module: nn.Module) -> bool:
    try:
        value = module.__dict__["training"]
    except KeyError:
        raise AttributeError("training") from None
    watchers = _training_watchers.get(threading.get_ident())
    if watchers:
        watchers[-1]()
    return value


def _set_training(module: nn.Module, value: bool) -> None:
    module.__dict__["training"] = value


@contextlib.contextmanager
def _watching_training(on_read: Callable[[], None]) -> Iterator[None]:
    """Call ``on_read()`` whenever this thread reads any module's ``training`` flag.

    torch.fx runs the Python of every traced-through forward once, so a read of
    ``self.training`` there becomes a constant of the graph (torchvision's
    ``stochastic_depth(x, p, mode, self.training)`` is an fx-wrapped call whose
    ``training`` argument is frozen). ``training`` lives in each instance's
    ``__dict__``; a property on ``nn.Module`` (a data descriptor, so it wins over
    the instance dict) sees every read while tracing and is removed afterwards,
    as fx itself patches ``nn.Module.__call__`` and ``__getattr__`` while it traces.
    """
    thread = threading.get_ident()
    with _watch_lock:
        if not _training_watchers:
            nn.Module.training = property(_get_training, _set_training)
        _training_watchers.setdefault(thread, []).append(on_read)
    try:
        yield
    finally:
        with _watch_lock:
            watchers = _training_watchers[thread]
            watchers.pop()
            if not watchers:
                del _training_watchers[thread]
            if not _training_watchers:
                del nn.Module.training


def trace(
    model: nn.Module, leaf_modules: Sequence[type[nn.Module]] = (), *, freeze_mode: bool = False
) -> fx.GraphModule:
    """Trace ``model`` into a GraphModule with every Choice kept as a ``call_module`` leaf.

    Train/eval mode is not frozen into the graph: a module whose forward reads
    ``self.training`` (torchvision's ``StochasticDepth``, timm's ``DropPath``, a
    forward calling ``F.dropout(x, training=self.training)``) is kept as a leaf,
    so it reads its flag when the graph runs and ``gm.train()``/``gm.eval()``
    switch it as they switch the model's own modules::

        >>> from torchvision.ops import StochasticDepth
        >>> gm = trace(nn.Sequential(nn.Linear(2, 2), StochasticDepth(0.5, "row")))
        >>> [n.target for n in gm.graph.nodes if n.op == "call_module"]
        ['0', '1']

    Args:
        model: any ``nn.Module``; its Choices become leaves.
        leaf_modules: extra module types to keep as leaves (e.g. blocks with
            data-dependent control flow that fx cannot trace).
        freeze_mode: trace as plain torch.fx does: every read of ``self.training``
            becomes a constant, the mode each module is in now. For graphs that
            only ever run in one mode, or whose mode-reading module holds Choices
            or is the model itself.

    Raises:
        TraceError: naming the module that could not be traced, or, unless
            ``freeze_mode``, a module that reads ``self.training`` but cannot be
            a leaf (the model itself, or a module holding Choices).
    """
    mode_leaves: dict[int, nn.Module] = {}
    while True:
        tracer = _ChoiceTracer(leaf_modules, list(mode_leaves.values()))
        graph = _trace_with(tracer, model, freeze_mode)
        new = {key: found for key, found in tracer.mode_readers.items() if key not in mode_leaves}
        if not new:
            break
        # A leaf keeps the read in its own forward, which runs (and reads the flag) every call.
        for path, module in new.values():
            _check_can_be_mode_leaf(model, path, module)
            mode_leaves[id(module)] = module
    _resolve_string_annotations(graph, model)
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    gm.meta["lineage"] = []
    live_run.install(gm)
    return gm


def _resolve_string_annotations(graph: fx.Graph, model: nn.Module) -> None:
    """Give the graph's inputs and output the types their annotations name, where those are strings.

    A forward written under ``from __future__ import annotations`` annotates
    ``x: torch.Tensor`` as the string ``"torch.Tensor"``; fx copies it into the
    placeholder's type, and torch 2.11 then cannot pickle the graph. An
    annotation that does not resolve is dropped (it only decorates the code).
    This module's own ``from __future__ import annotations`` applies to its
    examples, so the forward below is annotated with strings::

        >>> class Net(nn.Module):
        ...     def forward(self, x: torch.Tensor, scale: NoSuchType = 2) -> torch.Tensor:
        ...         return x * scale
        >>> [n.type for n in trace(Net()).graph.nodes]
        [<class 'torch.Tensor'>, None, None, <class 'torch.Tensor'>]
    """
    namespace = getattr(type(model).forward, "__globals__", {})
    for node in graph.nodes:
        if isinstance(node.type, str):
            node.type = _evaluated(node.type, namespace)


def _evaluated(annotation: str, namespace: dict) -> typing.Any:
    """What ``annotation`` names in ``namespace`` (the forward's module), or None where it names nothing."""
    try:
        value = eval(annotation, dict(namespace))  # noqa: S307 -- the user's own annotation, as typing does
        return _evaluated(value, namespace) if isinstance(value, str) else value  # "'torch.Tensor'": quoted twice
    except Exception:  # an unknown name or a malformed annotation: it only decorated the code
        return None


def _trace_with(tracer: _ChoiceTracer, model: nn.Module, freeze_mode: bool) -> fx.Graph:
    watching = contextlib.nullcontext() if freeze_mode else _watching_training(tracer.read_training)
    try:
        with watching:
            return tracer.trace(model)
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


def _check_can_be_mode_leaf(model: nn.Module, path: str, module: nn.Module) -> None:
    mode = "train" if model.training else "eval"
    frozen = (f"torch.fx would freeze its {mode} mode into the graph, so the traced graph would ignore "
              f"train()/eval(). ")
    fix = (f"move the code that reads self.training into a submodule of its own (gmgraph.trace keeps "
           f"such modules as leaves), or pass freeze_mode=True to fix every such read at the mode "
           f"the model is in now ({mode})")
    if module is model:
        raise TraceError(f"the model's own forward ({type(model).__name__}) reads self.training: {frozen}"
                         f"The model itself cannot be a leaf: {fix}")
    held = [name for name, m in module.named_modules() if isinstance(m, Choice)]
    if held:
        raise TraceError(
            f"module {path!r} ({type(module).__name__}) reads self.training: {frozen}It holds Choices "
            f"({', '.join(repr(f'{path}.{name}') for name in held[:3])}{', ...' if len(held) > 3 else ''}), "
            f"so it cannot be kept as a leaf: {fix}"
        )


def choices(gm: nn.Module) -> dict[str, list[Choice]]:
    """label -> the Choice modules of that decision, in module order.

    A traced ``gm`` (its copies too) also gets its single-path runs pruned to the live graph here
    (:func:`gmgraph.live_run.install`): samplers and :func:`use` collect Choices through this.
    """
    live_run.install(gm)
    out: dict[str, list[Choice]] = {}
    for module in _modules(gm):
        if isinstance(module, Choice):
            out.setdefault(module.label, []).append(module)
    return out


def _modules(root: nn.Module) -> list[nn.Module]:
    """``root.modules()`` in the same order, without the dotted names it builds (samplers ask every step)."""
    seen: set[int] = set()
    found: list[nn.Module] = []
    stack = [root]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        found.append(module)
        stack.extend(child for child in reversed(module._modules.values()) if child is not None)
    return found


def active_choices(gm: nn.Module, arch: Mapping[str, str]) -> list[tuple[str, Choice]]:
    """The Choices that run under ``arch``, with their module paths, in module order.

    A Choice may hold Choices inside its candidates (nested decisions: an OFA stage's depth
    Choice holds blocks that choose their kernel). A nested Choice runs only where the op its
    enclosing Choice chose holds it; every top-level Choice runs. Each Choice is listed once,
    under the first path that reaches it.

    >>> from gmgraph.choice import Choice, Neg
    >>> inner = Choice({"id": nn.Identity(), "neg": Neg()}, "act")
    >>> outer = Choice({"deep": nn.Sequential(inner), "skip": nn.Identity()}, "depth")
    >>> [path for path, _ in active_choices(nn.Sequential(outer), {"depth": "deep", "act": "neg"})]
    ['0', '0.ops.deep.0']
    >>> [path for path, _ in active_choices(nn.Sequential(outer), {"depth": "skip", "act": "neg"})]
    ['0']
    """
    found: list[tuple[str, Choice]] = []
    seen: set[int] = set()

    def enter(module: nn.Module, path: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        if isinstance(module, Choice):
            found.append((path, module))
            op = arch[module.label]
            enter(module.ops[op], f"{path}.ops.{op}")
        else:
            for name, child in module.named_children():
                enter(child, f"{path}.{name}" if path else name)

    enter(gm, "")
    return found


def space(gm: nn.Module) -> Space:
    """label -> candidate op names, labels in the order they first appear.

    Raises:
        SpaceError: when Choices sharing a label disagree on their candidates.
    """
    return _space_of(choices(gm))


def _space_of(groups: Mapping[str, Sequence[Choice]]) -> Space:
    out: dict[str, tuple[str, ...]] = {}
    for label, group in groups.items():
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
    """Number of architectures in the graph's space: the distinct networks its decisions make.

    Without nested Choices, every assignment of ops to labels (NB201: 5^6); a label nested in another's
    candidate counts only on the paths that run it (:func:`gmgraph.nesting.network_count`: the OFA
    space's stages at depth 2 have no third block to choose a kernel for).
    """
    space(gm)  # labels whose Choices disagree are refused first
    return network_count(gm)


@contextlib.contextmanager
def use(gm: nn.Module, arch: Arch) -> Iterator[nn.Module]:
    """Run every Choice on the single op ``arch`` names for its label.

    The arch must name exactly the graph's labels with allowed ops (ArchError
    otherwise). The previous mode of each Choice is restored on exit.
    """
    groups = choices(gm)  # one walk of the modules: a training loop may call this every step
    validate(arch, _space_of(groups))
    with running(groups, arch=arch):
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
    return sample_from(space(gm), generator)


def sample_from(labels: Mapping[str, Sequence[str]], generator: torch.Generator | None = None) -> Arch:
    """:func:`sample` from a space already read (``space(gm)``): the same draws, without walking the graph.

    >>> sample_from({"x": ["a", "b"]}, torch.Generator().manual_seed(0))
    {'x': 'a'}

    Raises:
        SpaceError: ``generator`` is neither a ``torch.Generator`` nor None (a seed, say).
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise SpaceError(f"sample takes a torch.Generator (or None), got {type(generator).__name__}: "
                         "use torch.Generator().manual_seed(seed)")
    return {label: ops[int(torch.randint(len(ops), (1,), generator=generator))] for label, ops in labels.items()}
