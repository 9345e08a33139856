"""Turn an existing model (yours or torchvision's) into a supernet, by rules.

A *rule* looks at each module ``(name, module)`` and returns either ``None``
(leave it alone) or the candidate ops of a new Choice, one of which must be
the module itself. :func:`supernetify` swaps every matched module for that
Choice in a copy of the model; the original module keeps its weights, so
:func:`original_arch` names the architecture that *is* the original model::

    >>> import torch, gmgraph
    >>> from torch import nn
    >>> cnn = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    >>> _ = cnn(torch.randn(1, 3, 8, 8))                       # materialise the lazy layer
    >>> gm = gmgraph.trace(supernetify(cnn, conv_kernels()))
    >>> gmgraph.space(gm)
    {'0': ('3x3', '5x5', '7x7')}
    >>> x = torch.randn(2, 3, 8, 8)
    >>> with gmgraph.use(gm, original_arch(gm)):
    ...     torch.equal(gm(x), cnn(x))
    True

Labels are module names with ``.`` replaced by ``/`` (``features.3`` becomes
``features/3``). Rules are tried in order and the first that matches wins.
The inside of a replaced module is not visited, except the blocks of an
``elastic_depth`` stage (shared by all its depths): their convs may get
elastic kernels, or the blocks elastic expansions, nested in the depth
decision as in Once-for-All; and the views an elastic expansion's candidates
run: their depthwise convs may get elastic kernels too.
"""

from __future__ import annotations

import copy
import functools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torchvision.models import mnasnet, mobilenetv3
from torchvision.models.efficientnet import FusedMBConv, FusedMBConvConfig, MBConv, MBConvConfig
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import MLP, SqueezeExcitation

from gmgraph.arch import Arch
from gmgraph.choice import Choice
from gmgraph.config import check_positive_int
from gmgraph.elastic import ConvView, KernelTransform, LinearView, is_view
from gmgraph.errors import SpaceError
from gmgraph.graph import choices
from gmgraph.passes.derive import in_parent
from gmgraph.spaces import resnet_stages, timm_blocks

Rule = Callable[[str, nn.Module], Mapping[str, nn.Module] | None]


def supernetify(model: nn.Module, rules: Rule | Sequence[Rule]) -> nn.Module:
    """A copy of ``model`` in which every module a rule matches becomes a Choice.

    Args:
        model: any ``nn.Module``; it is deep-copied, never changed.
        rules: one rule or a list, tried in order on every module (parents
            before children). A rule returns ``None`` or ``{op name: module}``
            holding the module it was given (the *original* op, which keeps its
            weights and becomes the Choice's first candidate), or
            :class:`SharedCandidates` or :class:`SequentialChoices`.

    The inside of a matched module is not visited, except where the rule's candidates run its own
    modules, shared (a rule with ``nests = True``): the blocks of an ``elastic_depth`` stage belong
    to all its depths, so ``[elastic_depth(), elastic_kernels()]`` also gives every conv in them
    elastic kernels (labels under the blocks' own names, ``layer1/1/conv1``), nested in the depth
    decision as in Once-for-All. An elastic rule's candidates are views of one shared module, and
    a rule that takes views (``views = True``: ``elastic_kernels``) visits them: with
    ``[elastic_expansions(), elastic_kernels()]`` each MBConv chooses its expansion and its depthwise
    kernel, the kernel decision (labelled by the conv's own name, ``features/2/conv/1/0``) sitting
    in every expansion candidate, all of them views of one enlarged, widened conv, as in Once-for-All.
    A rule that needs the whole model (``elastic_stage_widths``: which module reads which stage) has
    ``prepare(model)`` called with the copy before the walk and ``finish()`` after it (it raises there
    when another rule took a module it had to take).

    Raises:
        SpaceError: a rule returned candidates without the original module, two
            modules map to one label, or no module matched any rule (with what a
            rule that says so covers, ``rule.unmatched(model)``).
    """
    rules = [rules] if callable(rules) else list(rules)
    net = copy.deepcopy(model)
    gone: set[int] = set()  # modules no rule may visit any more (replaced, or inside a leaf Choice)
    nested: set[int] = set()  # modules a Choice's candidates hold: their decisions nest in it
    labels: dict[str, str] = {}
    for rule in rules:
        if callable(getattr(rule, "prepare", None)):
            rule.prepare(net)  # a rule that needs the whole model (elastic_stage_widths) reads it first
    for name, module in list(net.named_modules()):
        if not name or id(module) in gone:
            continue
        for rule in rules:
            ops = rule(name, module)
            if ops is not None:
                nests = getattr(rule, "nests", False)
                new = _matched(name, module, ops, rule, labels, nested=id(module) in nested)
                _replace_everywhere(net, module, new)
                gone.update(_not_visited(new, module, nests))
                if nests:
                    nested.update(id(m) for m in module.modules() if id(m) not in gone)
                if isinstance(ops, SharedCandidates):
                    _visit_views(name, new, rules, labels)
                break
    for rule in rules:
        if callable(getattr(rule, "finish", None)):
            rule.finish()  # raises where another rule took a module it had to take
    if not labels:
        hints = "".join(f"; {hint}" for rule in rules if (hint := _why_unmatched(rule, model)))
        raise SpaceError(f"no module of {type(model).__name__} matched the rules; nothing to search{hints}")
    return net


def original_arch(supernet: nn.Module) -> Arch:
    """The architecture that reproduces the model :func:`supernetify` started from.

    Raises:
        SpaceError: a Choice was not made by ``supernetify``, or a split removed its original op.
    """
    arch: Arch = {}
    for label, group in choices(supernet).items():
        names = {getattr(choice, "original", None) for choice in group}
        if len(names) != 1 or None in names:
            raise SpaceError(f"Choice {label!r} was not made by supernetify: it has no original op")
        name = names.pop()
        if any(name not in choice.ops for choice in group):
            raise SpaceError(f"{label!r} no longer holds its original op {name!r} (a split removed it)")
        arch[label] = name
    return arch


def _label(name: str, taken: dict[str, str], nested_rule: str | None = None) -> str:
    """``name`` with ``/`` for ``.``; a decision nested in one that took that label (the first block of a
    flat stage, ``features/2``, whose depth is ``features/2``) adds its rule's name: ``features/2/elastic_expansions``."""
    label = name.replace(".", "/")
    if label in taken and nested_rule is not None:
        label = f"{label}/{nested_rule}"
    if label in taken:
        raise SpaceError(f"modules {taken[label]!r} and {name!r} would both get the label {label!r}")
    taken[label] = name
    return label


class SharedCandidates(dict):
    """What an elastic rule returns: candidates that are views of one new shared module.

    No candidate is the matched module itself, so the rule names the one that computes what the
    original did (``original``); it becomes the Choice's first candidate, as usual. ``hidden``: the
    shared hidden width of an elastic-expansion block, kept on the Choice (``hidden_width``) so that
    channel re-sorting (:mod:`gmgraph.spaces.channel_sort`) finds the block. ``label``: a label the rule
    gives several Choices (a stage's width on every conv it reaches) instead of the module's name.
    """

    def __init__(self, ops: Mapping[str, nn.Module], original: str, hidden: int | None = None,
                 label: str | None = None):
        super().__init__(ops)
        self.original = original
        self.hidden = hidden
        self.label = label


class SequentialChoices(dict):
    """What a rule returns to rebuild a matched ``nn.Sequential`` with Choices among its children.

    child key -> a module (kept as it is) or candidate ops ``{op name: module}`` whose FIRST op is the
    original (it becomes a Choice labelled ``<name>/<key>``). :func:`supernetify` puts an
    ``nn.Sequential`` of these children, under these keys and in this order, where the matched one
    was; ``elastic_depth`` uses it for a flat list of blocks (MobileNetV2's ``features``). The children
    it keeps are then visited by the rules as any module is (a stem conv may still get elastic kernels),
    and, for a rule that nests (``elastic_depth``), so are the modules its Choices' candidates hold.

    Example:
        >>> def rule(name, module):
        ...     if isinstance(module, nn.Sequential):
        ...         return SequentialChoices({"0": {"relu": module[0], "id": nn.Identity()}, "1": module[1]})
        >>> net = supernetify(nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Tanh())), rule)
        >>> net[1][0].label, net[1][0].original, list(net[1][0].ops), type(net[1][1]).__name__
        ('1/0', 'relu', ['relu', 'id'], 'Tanh')
    """


def _matched(name: str, module: nn.Module, ops, rule, labels: dict[str, str], nested: bool = False) -> nn.Module:
    """The module that replaces ``module``: one Choice, or a Sequential holding several (SequentialChoices)."""
    if not isinstance(ops, SequentialChoices):
        label = _shared_label(ops, labels) or _label(name, labels, getattr(rule, "__name__", "rule") if nested else None)
        return _choice(name, module, ops, label, rule)
    if type(module).forward is not nn.Sequential.forward:
        raise SpaceError(f"rule {getattr(rule, '__name__', rule)!r} rebuilt {name!r} as a Sequential, but it is a "
                         f"{type(module).__name__} with a forward of its own")
    children: dict[str, nn.Module] = {}
    for key, child in ops.items():
        if isinstance(child, nn.Module):
            children[key] = child
        else:
            full = f"{name}.{key}"
            children[key] = _choice(full, next(iter(child.values())), child, _label(full, labels), rule)
    return nn.Sequential(OrderedDict(children))


def _visit_views(name: str, choice: nn.Module, rules: Sequence[Rule], labels: dict[str, str]) -> None:
    """Let the rules that take views (``rule.views``) replace the views inside ``choice``'s candidates.

    A view at the same place in every candidate (``conv.1.0``) gets one label, ``<name>/conv/1/0``, and
    a Choice of its own in each candidate; the rule hands all of them views of one shared module. A rule
    with ``views = "modules"`` (``elastic_stage_widths``) is also shown the modules with weights the
    candidates share as they are (an ``elastic_widths`` block's last BN and shortcut).
    """
    takers = [rule for rule in rules if getattr(rule, "views", False)]
    if not takers or not isinstance(choice, Choice):
        return
    placed: dict[str, str] = {}  # place in a candidate -> its label
    for candidate in choice.ops.values():
        for place, module in list(candidate.named_modules()):
            plain = not is_view(module)
            if not place or (plain and not (module._parameters or module._buffers)):
                continue
            full = f"{name}.{place}"
            for rule in takers:
                if plain and getattr(rule, "views", False) != "modules":
                    continue
                ops = rule(full, module)
                if ops is not None:
                    label = _shared_label(ops, labels) or placed.get(place) or _label(full, labels)
                    placed[place] = label
                    _replace(candidate, place, _choice(full, module, ops, label, rule))
                    break


_SHARED = "(a label several Choices of one rule share)"


def _shared_label(ops, labels: dict[str, str]) -> str | None:
    """The label a rule gave its candidates (:class:`SharedCandidates` ``label``), taken for it; None: none given."""
    label = getattr(ops, "label", None) if isinstance(ops, SharedCandidates) else None
    if label is not None:
        if labels.setdefault(label, _SHARED) != _SHARED:
            raise SpaceError(f"module {labels[label]!r} and a rule's shared decision would both get the label {label!r}")
    return label


def _not_visited(new: nn.Module, matched: nn.Module, nests: bool) -> set[int]:
    """The modules inside ``matched`` (itself included) that no rule may visit once ``new`` replaced it.

    A rule whose candidates run ``matched``'s own modules, shared (``rule.nests``: ``elastic_depth``'s
    stages), leaves what they hold to the other rules. Any other rule's Choice is a leaf of the space:
    its candidates (the original among independent copies) are not visited, so a decision never
    lives in one candidate only; the children a Sequential of Choices keeps as they were still are.
    """
    if nests:
        held = {id(m) for m in new.modules()}
    else:
        kept = [child for child in new.children() if not isinstance(child, Choice)] if isinstance(new, nn.Sequential) else []
        held = {id(m) for child in kept for m in child.modules()}
    return {id(m) for m in matched.modules() if id(m) not in held} | {id(matched)}


def _why_unmatched(rule, model: nn.Module) -> str | None:
    """What ``rule`` says about a model it matched nothing in (its ``unmatched`` attribute), if anything."""
    explain = getattr(rule, "unmatched", None)
    return explain(model) if callable(explain) else None


def _choice(name: str, module: nn.Module, ops: Mapping[str, nn.Module], label: str, rule) -> Choice:
    if isinstance(ops, SharedCandidates):
        choice = Choice({ops.original: ops[ops.original], **ops}, label)
        choice.original = ops.original
        if ops.hidden is not None:
            choice.hidden_width = ops.hidden  # plain attribute, as ``original``
        return choice
    originals = [op_name for op_name, op in ops.items() if op is module]
    if len(originals) != 1:
        raise SpaceError(
            f"rule {getattr(rule, '__name__', rule)!r} on {name!r} must return the module itself as exactly "
            f"one candidate (it keeps the original weights); got ops {list(ops)}"
        )
    original = originals[0]
    reference = next(iter(module.parameters()), None)
    ordered = {original: module}
    for op_name, op in ops.items():
        if op is not module:
            # New candidates live where the original does (device, dtype).
            ordered[op_name] = op.to(reference.device, reference.dtype) if reference is not None else op
    choice = Choice(ordered, label)
    choice.original = original  # plain attribute: survives deepcopy, restrict and pickling
    return choice


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _replace_everywhere(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``root`` holds ``old``: a block shared by the depths of a stage sits in every
    depth's Sequential. The holders are found before ``new`` (which may hold ``old``) goes in."""
    holders = [(parent, key) for parent in root.modules() for key, child in parent._modules.items() if child is old]
    for parent, key in holders:
        parent._modules[key] = new


def conv_kernels(sizes: Sequence[int] = (3, 5, 7)) -> Rule:
    """Rule: every 3x3 ``nn.Conv2d`` chooses among kernel sizes ``sizes``.

    The original conv is ``3x3``; a ``kxk`` candidate has the same stride,
    dilation, groups and bias, padding grown to keep the output shape, and the
    original kernel at its centre (zeros around it) and the original bias, so
    it starts out computing the same function.

    Raises:
        SpaceError: sizes that are not odd integers >= 3, or no size besides 3.

    Example:
        >>> ops = conv_kernels((3, 5))("conv", nn.Conv2d(2, 4, 3, padding=1))
        >>> ops["5x5"].padding, ops["5x5"].weight[0, 0, 2, 2] == ops["3x3"].weight[0, 0, 1, 1]
        ((2, 2), tensor(True))
    """
    bad = [k for k in sizes if not isinstance(k, int) or k < 3 or k % 2 == 0]
    if bad or not [k for k in sizes if k != 3]:
        raise SpaceError(f"conv_kernels needs odd kernel sizes >= 3, at least one besides 3; got {list(sizes)}")

    def rule(name: str, module: nn.Module) -> dict[str, nn.Module] | None:
        if not isinstance(module, nn.Conv2d) or module.kernel_size != (3, 3):
            return None
        ops: dict[str, nn.Module] = {"3x3": module}
        ops.update({f"{k}x{k}": _resized(module, k) for k in dict.fromkeys(sizes) if k != 3})
        return ops

    rule.__name__ = "conv_kernels"
    return rule


def elastic_kernels(sizes: Sequence[int] = (3, 5, 7), transform: bool = False) -> Rule:
    """Rule: every square odd ``nn.Conv2d`` (3x3 or larger) chooses its kernel among ``sizes``,
    all sizes sharing ONE weight (Once-for-All's elastic kernel).

    The shared conv has the largest of ``sizes`` and the original kernel (zeros around it) at its
    centre; candidate ``kxk`` is a :class:`~gmgraph.elastic.ConvView` running its centre ``k x k``
    with padding that keeps the output shape. The original size is always a candidate and
    computes exactly what the original conv did; a size the padding cannot give is not offered.
    Unlike :func:`conv_kernels` (one independent conv per size), the parameters are those of
    the largest subnet.

    A :class:`~gmgraph.elastic.ConvView` at its conv's own kernel (the hidden-width depthwise conv of
    an :func:`elastic_expansions` block, which :func:`supernetify` shows this rule) gets the same
    sizes: every view of one conv, whatever its width, then runs the centre of ONE enlarged copy of it.

    With ``transform``, each shared conv also gets ONE :class:`~gmgraph.elastic.KernelTransform` that
    all its views use (Once-for-All's learned matrices, as ``ofa.supernet(kernel_transform=True)``):
    a smaller kernel is the next larger one's transformed centre. The matrices start as the identity,
    so the original size still computes exactly the original conv; ``derive`` folds them into the
    plain kernel. They add ``k^2 x k^2`` parameters per smaller size ``k`` of each conv.

    Raises:
        SpaceError: sizes that are not odd integers >= 3, or none at all; a ``transform`` that is not a bool.

    Example:
        >>> ops = elastic_kernels((3, 5))("conv", nn.Conv2d(2, 4, 3, padding=1))
        >>> list(ops), ops["3x3"].conv is ops["5x5"].conv, ops["3x3"].conv.kernel_size
        (['3x3', '5x5'], True, (5, 5))
        >>> ops = elastic_kernels((3, 5), transform=True)("conv", nn.Conv2d(2, 4, 3, padding=1))
        >>> ops["3x3"].transform is ops["5x5"].transform, list(ops["3x3"].transform.matrices)
        (True, ['3'])
    """
    bad = [k for k in sizes if not isinstance(k, int) or k < 3 or k % 2 == 0]
    if bad or not sizes:
        raise SpaceError(f"elastic_kernels needs odd kernel sizes >= 3; got {list(sizes)}")
    if not isinstance(transform, bool):
        raise SpaceError(f"elastic_kernels' transform must be True or False, got {transform!r}")

    enlarged: dict[int, tuple[nn.Conv2d, nn.Conv2d, KernelTransform | None]] = {}  # conv -> (it, its one copy, ...)

    def shared_of(conv: nn.Conv2d, offered: list[int]) -> tuple[nn.Conv2d, KernelTransform | None]:
        """The conv at the largest size (and its transform) that ``conv`` and every view of it run."""
        if id(conv) not in enlarged:  # the entry holds ``conv`` itself: its id cannot be reused meanwhile
            largest = max(offered)
            shared = _resized(conv, largest)
            matrices = KernelTransform(largest, offered[:-1]).to(shared.weight.device, shared.weight.dtype) \
                if transform else None
            enlarged[id(conv)] = (conv, shared, matrices)
        return enlarged[id(conv)][1:]

    def rule(name: str, module: nn.Module) -> SharedCandidates | None:
        viewed = isinstance(module, ConvView)
        conv = module.conv if viewed else module
        if viewed and (module.kernel != conv.kernel_size[0] or module.transform is not None):
            return None  # already a kernel decision
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros" or conv.padding == "valid":
            return None
        k, k2 = conv.kernel_size
        if k != k2 or k < 3 or k % 2 == 0:
            return None
        offered = sorted({k, *(size for size in sizes if _padding(conv, size) is not None)})
        if len(offered) == 1:
            return None
        shared, matrices = shared_of(conv, offered)
        widths = ({"out_channels": module.out_channels, "in_channels": None if module.depthwise else module.in_channels}
                  if viewed else {})
        ops = {f"{size}x{size}": ConvView(shared, kernel=size, transform=matrices, **widths) for size in offered}
        return SharedCandidates(ops, original=f"{k}x{k}")

    rule.__name__ = "elastic_kernels"
    rule.views = True  # also the convs an elastic expansion's candidates run through views (supernetify)
    return rule


def depthwise_kernels(sizes: Sequence[int] = (3, 5, 7)) -> Rule:
    """Rule: every depthwise ``nn.Conv2d`` (``groups == in_channels > 1``) with a square odd
    kernel chooses its kernel size among ``sizes`` (ConvNeXt's 7x7, MobileNet's 3x3/5x5).

    The original conv keeps its own size's name (``7x7``). A candidate has the
    same stride, dilation, groups and bias, and padding changed with the kernel
    so that the output keeps its shape. A larger one holds the original kernel
    at its centre (zeros around), so it starts out computing the same function;
    a smaller one starts from the centre of the original kernel (as
    Once-for-All's elastic kernels do). A size whose padding would have to be
    negative (an unpadded conv shrinking) is not offered.

    Raises:
        SpaceError: sizes that are not odd integers >= 3, or none at all.

    Example:
        >>> ops = depthwise_kernels()("dw", nn.Conv2d(4, 4, 7, padding=3, groups=4))
        >>> list(ops), ops["3x3"].padding, ops["5x5"].padding
        (['7x7', '3x3', '5x5'], (1, 1), (2, 2))
        >>> depthwise_kernels()("full", nn.Conv2d(4, 4, 3, padding=1)) is None   # not depthwise
        True
    """
    bad = [k for k in sizes if not isinstance(k, int) or k < 3 or k % 2 == 0]
    if bad or not sizes:
        raise SpaceError(f"depthwise_kernels needs odd kernel sizes >= 3; got {list(sizes)}")

    def rule(name: str, module: nn.Module) -> dict[str, nn.Module] | None:
        if not isinstance(module, nn.Conv2d) or not 1 < module.groups == module.in_channels:
            return None
        k, k2 = module.kernel_size
        if k != k2 or k % 2 == 0:
            return None
        ops: dict[str, nn.Module] = {f"{k}x{k}": module}
        for size in dict.fromkeys(sizes):
            if f"{size}x{size}" not in ops and _padding(module, size) is not None:
                ops[f"{size}x{size}"] = _resized(module, size)
        return ops if len(ops) > 1 else None

    rule.__name__ = "depthwise_kernels"
    return rule


def _padding(conv: nn.Conv2d, k: int) -> str | tuple[int, ...] | None:
    """The padding that keeps ``conv``'s output shape with a k x k kernel (None: it would be negative)."""
    if conv.padding == "same":
        return "same"
    base = (0, 0) if conv.padding == "valid" else conv.padding
    padding = tuple(p + (k - conv.kernel_size[0]) // 2 * d for p, d in zip(base, conv.dilation))
    return padding if min(padding) >= 0 else None


def _resized(conv: nn.Conv2d, k: int) -> nn.Conv2d:
    """A k x k copy of a square odd conv: the original kernel at its centre, or its centre cropped."""
    new = nn.Conv2d(
        conv.in_channels, conv.out_channels, k, conv.stride, _padding(conv, k), conv.dilation, conv.groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )
    old = conv.kernel_size[0]
    with torch.no_grad():
        if k >= old:
            start = (k - old) // 2
            new.weight.zero_()
            new.weight[:, :, start:start + old, start:start + old] = conv.weight
        else:
            start = (old - k) // 2
            new.weight.copy_(conv.weight[:, :, start:start + k, start:start + k])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def inverted_residual_expansions(ratios: Sequence[float] = (3, 6), allow_skip: bool = True) -> Rule:
    """Rule: every torchvision (or timm) inverted-residual block chooses its expansion ratio, or to be skipped.

    Blocks: MobileNetV2's and MobileNetV3's ``InvertedResidual``, MNASNet's
    ``_InvertedResidual``, EfficientNet's ``MBConv`` and EfficientNetV2's
    ``FusedMBConv``; and timm's ``InvertedResidual`` (its MobileNetV3, EfficientNet, MNASNet; see
    :mod:`gmgraph.spaces.timm_blocks`). Ops are named ``e<ratio>`` (the original block keeps its
    own ratio's name, ``expanded / input`` channels to 3 digits: ``e3p67`` is
    88/24); new blocks are of the original's type and copy its kernel, stride,
    dilation, widths, BN settings, activation, squeeze-excitation and
    stochastic-depth rate, and are freshly initialised. Like the models
    themselves, MobileNetV3 and EfficientNet round expanded widths to a
    multiple of 8, MobileNetV2 to an integer; MNASNet blocks take whole ratios
    only. ``skip`` (the identity) is offered when ``allow_skip`` and the block
    keeps its shape (stride 1, equal widths).

    Raises:
        SpaceError: a fractional ratio for an MNASNet block.

    Example:
        >>> from torchvision.models.mobilenetv2 import InvertedResidual
        >>> list(inverted_residual_expansions()("features.2", InvertedResidual(8, 8, 1, 6)))
        ['e6', 'e3', 'skip']
    """

    def rule(name: str, module: nn.Module) -> dict[str, nn.Module] | None:
        if not _is_block(module):
            return None
        shape = _Shape(module)
        ops: dict[str, nn.Module] = {_ratio_name(shape.expanded / shape.c_in): module}
        for ratio in ratios:
            if _ratio_name(ratio) not in ops:
                ops[_ratio_name(ratio)] = _like(name, module, shape, ratio)
        if allow_skip and shape.stride == 1 and shape.c_in == shape.c_out:
            ops["skip"] = nn.Identity()
        return ops

    rule.__name__ = "inverted_residual_expansions"
    return rule


_BLOCKS = (InvertedResidual, mobilenetv3.InvertedResidual, mnasnet._InvertedResidual, MBConv, FusedMBConv)


def _is_block(module: nn.Module) -> bool:
    return isinstance(module, _BLOCKS) or timm_blocks.is_inverted_residual(module)


def elastic_expansions(ratios: Sequence[float] = (3, 4, 6)) -> Rule:
    """Rule: every torchvision inverted-residual block chooses its expansion ratio, all ratios
    sharing ONE block at the widest (Once-for-All's elastic width of the hidden layer).

    Blocks are those of :func:`inverted_residual_expansions`, with a hidden layer of their own
    (expanded width other than the input's and output's). The shared block is a copy of the
    original whose hidden layer is widened to the largest width: the original weights in its
    first channels, fresh ones after them, and zero input weights for the new channels in the
    convs that read the hidden layer (the projection, SE's first conv), so every width starts
    from the original. A candidate is the block's own structure with every hidden-width conv
    and BN replaced by a :class:`~gmgraph.elastic.ConvView`/:class:`~gmgraph.elastic.NormView`
    of its first channels; the original's width computes exactly the original block. Widths are
    rounded as the model does (see :func:`inverted_residual_expansions`), and names follow it.

    Squeeze-and-excitation squeezes as the model's own block of that ratio does: where the
    model derives the squeeze from the hidden width (torchvision's MobileNetV3,
    ``_make_divisible(expanded // 4, 8)``; timm's MobileNetV3, a quarter of the hidden width
    rounded to 8), the SE's two convs are widened to the largest squeeze too (fresh squeeze
    channels, zero weights reading them) and each candidate runs its own squeeze width, so
    ``derive`` gives exactly the shapes of the model's block of that ratio; where the squeeze
    depends on the block's input only (EfficientNet's ``input_channels // 4``, timm's
    EfficientNet) it stays as it is. Channel re-sorting before the width phase is
    :func:`gmgraph.spaces.channel_sort.before_phase`.

    Example:
        >>> from torchvision.models.mobilenetv2 import InvertedResidual
        >>> ops = elastic_expansions((3, 4))("features.2", InvertedResidual(8, 8, 1, 6))
        >>> list(ops), ops.original, ops["e3"].conv[0][0].out_channels
        (['e6', 'e3', 'e4'], 'e6', 24)
    """
    bad = [r for r in ratios if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0]
    if bad or not ratios:
        raise SpaceError(f"elastic_expansions needs positive ratios; got {list(ratios)}")

    def rule(name: str, module: nn.Module) -> SharedCandidates | None:
        if not _is_block(module):
            return None
        shape = _Shape(module)
        if shape.expanded in (shape.c_in, shape.c_out):
            return None  # no hidden layer of its own to slice
        # op -> (hidden width, squeeze width): both as the model's own block of that ratio has them
        widths = {_ratio_name(shape.expanded / shape.c_in): (shape.expanded, _squeeze_width(module))}
        for ratio in ratios:
            like = _like(name, module, shape, ratio)
            width = _Shape(like).expanded
            if width not in (w for w, _ in widths.values()) and _ratio_name(ratio) not in widths:
                widths[_ratio_name(ratio)] = (width, _squeeze_width(like))
        if len(widths) == 1:
            return None
        wide = max(w for w, _ in widths.values())
        squeezes = {s for _, s in widths.values()}
        squeeze = max(squeezes) if len(squeezes) > 1 else None  # elastic only where the model's rule varies it
        shared = _widened(module, shape.expanded, wide, squeeze)
        ops = {op: _hidden_view(shared, wide, w, s if squeeze else None) for op, (w, s) in widths.items()}
        return SharedCandidates(ops, original=next(iter(widths)), hidden=wide)

    rule.__name__ = "elastic_expansions"
    return rule


def elastic_widths(fractions: Sequence[float] = (0.5, 0.75)) -> Rule:
    """Rule: every torchvision ResNet block chooses the width of its inner layers, all widths running the
    first channels of the block's own convs and BNs (Once-for-All's ResNet: elastic middle width).

    A ``BasicBlock``'s inner layer is ``conv1``'s output (``bn1``, ``conv2``'s input); a ``Bottleneck``'s
    are ``conv1``'s and ``conv2``'s outputs (``bn1``, ``bn2``, ``conv2``'s and ``conv3``'s inputs), one width
    for both as in OFA. The block's input, output and shortcut keep their width, so every block may change
    its own. Candidate ``w<f>`` runs ``fractions`` of the original width, rounded to a multiple of 8 (of 1
    below 32 channels), and ``w1`` is the original block, computing exactly what it did; the supernet holds
    exactly the model's parameters. Grouped convs (ResNeXt) cannot be sliced and are left alone. Given with
    :func:`elastic_kernels` (which takes views), the blocks' 3x3 convs also choose their kernel. Before a
    shrinking schedule's width phase the inner channels are re-sorted by importance
    (:func:`gmgraph.spaces.channel_sort.sort_inner_widths`).

    Raises:
        SpaceError: fractions outside (0, 1), or none.

    Example:
        >>> from torchvision.models.resnet import BasicBlock
        >>> ops = elastic_widths((0.5,))("layer1.0", BasicBlock(16, 16))
        >>> list(ops), ops.original, ops["w0p5"].conv1.out_channels, ops["w0p5"].conv1.conv is ops["w1"].conv1.conv
        (['w1', 'w0p5'], 'w1', 8, True)
    """
    bad = [f for f in fractions if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1]
    if bad or not fractions:
        raise SpaceError(f"elastic_widths needs fractions between 0 and 1 (the original width is always offered); "
                         f"got {list(fractions)}")

    def rule(name: str, module: nn.Module) -> SharedCandidates | None:
        inner = _inner_layers(module)
        if inner is None:
            return None
        full = inner[0].out_channels
        widths = {"w1": full}
        for fraction in sorted(fractions, reverse=True):
            width = _rounded_width(full, fraction)
            if width not in widths.values():
                widths[_ratio_name(fraction, "w")] = width
        if len(widths) == 1:
            return None
        return SharedCandidates({op: _inner_view(module, inner, width) for op, width in widths.items()}, original="w1")

    rule.__name__ = "elastic_widths"
    return rule


def _inner_layers(block: nn.Module) -> tuple[nn.Conv2d, ...] | None:
    """The convs around a ResNet block's inner layers, in order (``conv1, conv2`` or ``conv1, conv2, conv3``)."""
    if isinstance(block, Bottleneck):
        convs = (block.conv1, block.conv2, block.conv3)
    elif isinstance(block, BasicBlock):
        convs = (block.conv1, block.conv2)
    else:
        return None
    return convs if all(conv.groups == 1 for conv in convs) else None


def _rounded_width(full: int, fraction: float) -> int:
    """``fraction`` of ``full`` channels, as a multiple of 8 from 32 channels on (OFA's divisor), at least one."""
    divisor = 8 if full >= 32 else 1
    return max(divisor, int(round(full * fraction / divisor)) * divisor)


def _inner_view(block: nn.Module, convs: tuple[nn.Conv2d, ...], width: int) -> nn.Module:
    """``block``'s structure running the first ``width`` channels of its inner layers, on its own modules."""
    memo: dict[int, nn.Module] = {id(convs[0]): ConvView(convs[0], out_channels=width)}
    for conv in convs[1:-1]:
        memo[id(conv)] = ConvView(conv, out_channels=width, in_channels=width)
    memo[id(convs[-1])] = ConvView(convs[-1], in_channels=width)
    inner_norms = (block.bn1, block.bn2) if len(convs) == 3 else (block.bn1,)
    for bn in inner_norms:
        memo[id(bn)] = timm_blocks.norm_view(bn, width)
    for module in block.modules():
        if id(module) not in memo and (module._parameters or module._buffers):
            memo[id(module)] = module  # shared as it is (the shortcut, the last BN): deepcopy must not copy it
    return copy.deepcopy(block, memo)


def elastic_stage_widths(fractions: Sequence[float] = (0.5, 0.75)) -> Rule:
    """Rule: every stage of a torchvision ResNet chooses its output width, all widths running the first
    channels of the model's own convs, BNs and classifier (Once-for-All ResNet's width multiplier).

    A stage's blocks add their outputs to their inputs, so one width serves the whole stage: candidate
    ``w<f>`` (one label per stage, ``layer2/width``) makes every block output the first ``fractions`` of
    the stage's channels (rounded as :func:`elastic_widths` rounds) through its last conv and BN and the
    first block's shortcut, and every reader of them take only those: the other blocks' ``conv1``, the
    next stage's first ``conv1`` and ``downsample`` conv, or the classifier ``fc`` after the last stage.
    Each such module becomes a Choice of views under the stage's label (a ``downsample`` conv between two
    elastic stages: a Choice of the previous stage's width holding one of its own stage's), so the
    coupling across a stage boundary is static: the label sets both sides at once, and ``derive`` gives
    plain modules of exactly those widths. ``w1`` is the original stage; the supernet holds exactly the
    model's parameters.

    A stage whose first block adds its input to its output (ResNet-18's and -34's ``layer1``: the stem's
    64 channels) cannot change its width alone and keeps it (coupling it to the stem is not built); nor
    does a stage read by anything but such convs or a Linear classifier. With :func:`elastic_widths`
    (either order) each block also chooses its inner width: this rule then slices the views inside its
    candidates and the modules they share (it takes views: ``views = "modules"``). With
    :func:`elastic_depth` the depths nest as usual. A rule that takes one of these modules first
    (``elastic_kernels`` or ``conv_kernels`` before this one, on a BasicBlock's 3x3 convs) would leave
    the widths inconsistent: :func:`supernetify` then raises. Given after this rule, ``elastic_kernels``
    does not reach the convs it took (a BasicBlock's; a Bottleneck's 3x3 keeps its kernel decision).

    Raises:
        SpaceError: fractions outside (0, 1), or none; (from ``supernetify``) a module of a stage's width
            taken by an earlier rule, or one this rule cannot slice.

    Example:
        >>> from torchvision.models import resnet18
        >>> net = supernetify(resnet18(num_classes=10), elastic_stage_widths((0.5,)))
        >>> net.fc.label, list(net.fc.ops), net.fc.ops["w0p5"].in_features
        ('layer4/width', ['w1', 'w0p5'], 256)
        >>> shortcut = net.layer3[0].downsample[0]      # reads layer2, writes layer3
        >>> shortcut.label, shortcut.ops["w0p5"].label, shortcut.ops["w0p5"].ops["w1"].in_channels
        ('layer2/width', 'layer3/width', 64)
    """
    bad = [f for f in fractions if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1]
    if bad or not fractions:
        raise SpaceError(f"elastic_stage_widths needs fractions between 0 and 1 (the original width is always "
                         f"offered); got {list(fractions)}")
    slots: dict[str, resnet_stages.Slot] = {}
    taken: set[str] = set()

    def widths_of(full: int) -> dict[str, int]:
        widths = {"w1": full}
        for fraction in sorted(fractions, reverse=True):
            width = _rounded_width(full, fraction)
            if width not in widths.values():
                widths[_ratio_name(fraction, "w")] = width
        return widths

    def prepare(model: nn.Module) -> None:
        slots.clear()
        taken.clear()
        slots.update(resnet_stages.stage_slots(model, widths_of))

    def rule(name: str, module: nn.Module) -> SharedCandidates | None:
        slot = slots.get(name)
        if slot is None:
            return None
        taken.add(name)
        return _stage_candidates(name, module, slot)

    def finish() -> None:
        missed = sorted(set(slots) - taken)
        if missed:
            raise SpaceError(f"elastic_stage_widths must slice {', '.join(missed[:4])}"
                             f"{f' and {len(missed) - 4} more' if len(missed) > 4 else ''} but another rule took "
                             "them first (give elastic_stage_widths before conv_kernels/elastic_kernels)")

    rule.__name__ = "elastic_stage_widths"
    rule.prepare, rule.finish = prepare, finish
    rule.views = "modules"  # also the views (and shared modules) of an elastic_widths block's candidates
    rule.unmatched = lambda model: ("elastic_stage_widths covers torchvision ResNets (layer1..layer4 of "
                                    "BasicBlock/Bottleneck, fc), stages whose first block has a projection shortcut")
    return rule


def _stage_candidates(name: str, module: nn.Module, slot: resnet_stages.Slot) -> SharedCandidates:
    """``module``'s views at every width of its slot's stage; where both sides follow one (a shortcut conv
    between two elastic stages), a Choice of the input's stage whose every op is a Choice of the output's.

    The input's stage is the outer decision so that every op of a nested Choice reads the same input (the
    one its enclosing op was given), as the cost bounds and latency tables assume of nested Choices.
    """
    outer = slot.inp or slot.out
    ops: dict[str, nn.Module] = {}
    for op, width in outer.widths.items():
        if slot.out is not None and slot.inp is not None:
            inner = Choice({o: _width_view(name, module, c, width) for o, c in slot.out.widths.items()},
                           slot.out.label)
            inner.original = "w1"  # as every Choice supernetify makes: original_arch reads it
            ops[op] = inner
        else:
            ops[op] = _width_view(name, module, width if slot.out else None, width if slot.inp else None)
    return SharedCandidates(ops, original="w1", label=outer.label)


def _width_view(name: str, module: nn.Module, out: int | None, inp: int | None) -> nn.Module:
    """A view of ``module`` (a conv, BN or Linear, or a conv view of an inner width) at these channel counts
    (None: as it is)."""
    if isinstance(module, ConvView):
        return ConvView(module.conv, kernel=module.kernel, transform=module.transform,
                        out_channels=out or module.out_channels, in_channels=inp or module.in_channels)
    if isinstance(module, nn.Conv2d):
        return ConvView(module, out_channels=out, in_channels=inp)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return timm_blocks.norm_view(module, out)
    if isinstance(module, nn.Linear):
        return LinearView(module, in_features=inp)
    raise SpaceError(f"elastic_stage_widths cannot slice {name!r}: a {type(module).__name__} "
                     "(another rule made it a decision first?)")


def elastic_depth(min_depth: int = 1) -> Rule:
    """Rule: every stage of residual blocks chooses how many of its first blocks run, all depths
    sharing the same block objects (Once-for-All's elastic depth).

    A stage is either an ``nn.Sequential`` of blocks (ResNet's ``layerN`` of ``BasicBlock``/``Bottleneck``,
    EfficientNet's and MNASNet's stages of ``MBConv``/``FusedMBConv``/inverted-residual blocks, timm's
    MobileNetV3/EfficientNet stages ``model.blocks[i]``, see :mod:`gmgraph.spaces.timm_blocks`), or, in
    a *flat* ``nn.Sequential`` that mixes blocks with other layers (torchvision MobileNetV2's and
    MobileNetV3's ``features``: stem, the blocks of every stage, last conv), each maximal run of
    consecutive blocks that starts a run or changes the shape and is followed only by blocks that keep
    it (``use_res_connect``). Op ``d<k>`` runs the first ``k`` blocks; the original (all blocks) comes
    first. Only blocks that keep their input's shape (a residual block without a projection) may be
    left off the end, and at least ``min_depth`` blocks always run. A block held by several depths is
    one module: parameters count it once, ``derive`` copies the blocks the chosen depth runs,
    ``split`` gives each child its own copy.

    A flat list is rebuilt as an ``nn.Sequential`` under the original keys: layers outside a stage
    (and stages with no block to leave off) stay where they were, and each stage becomes one Choice
    at its first block's key (label ``features/2`` for blocks 2 and 3), whose candidates keep the
    blocks' own keys (``features.2`` runs ``features.2.2`` and ``features.2.3``). ``derive`` puts the
    chosen blocks back under their keys (:func:`~gmgraph.passes.derive.in_parent`), so the derived
    original has exactly the model's state_dict keys (a shallower one, those of the blocks it runs).

    Example:
        >>> from torchvision.models import mobilenet_v2, resnet18
        >>> ops = elastic_depth()("layer1", resnet18().layer1)
        >>> list(ops), ops["d1"][0] is ops["d2"][0]
        (['d2', 'd1'], True)
        >>> features = elastic_depth()("features", mobilenet_v2().features)
        >>> list(features), list(features["4"]), list(features["4"]["d2"]._modules)
        (['0', '1', '2', '4', '7', '11', '14', '17', '18'], ['d3', 'd2', 'd1'], ['4', '5'])
    """
    check_positive_int("elastic_depth's min_depth", min_depth, error=SpaceError)

    def rule(name: str, module: nn.Module) -> Mapping[str, nn.Module] | SequentialChoices | None:
        if not isinstance(module, nn.Sequential) or len(module) < 2:
            return None
        if all(_is_stage_block(block) for block in module):
            return _depth_ops(module, min_depth)
        return _flat_stages(module, min_depth)

    rule.__name__ = "elastic_depth"
    rule.unmatched = functools.partial(_no_stage, min_depth=min_depth)
    rule.nests = True  # every depth runs the stage's own blocks: the other rules may visit them (supernetify)
    return rule


def _is_stage_block(module: nn.Module) -> bool:
    return isinstance(module, _STAGE_BLOCKS) or timm_blocks.is_stage_block(module)


def _depth_ops(stage: nn.Sequential, min_depth: int) -> dict[str, nn.Module] | None:
    """``d<k>``: the first ``k`` blocks of ``stage`` (slices sharing its blocks), all blocks first; None when
    no block can be left off."""
    blocks = list(stage)
    shallowest = next((d for d in range(min_depth, len(blocks) + 1)
                       if all(_keeps_shape(block) for block in blocks[d:])), len(blocks))
    if shallowest == len(blocks):
        return None
    ops: dict[str, nn.Module] = {f"d{len(blocks)}": stage}
    ops.update({f"d{d}": stage[:d] for d in range(len(blocks) - 1, shallowest - 1, -1)})
    return ops


def _flat_stages(module: nn.Sequential, min_depth: int) -> SequentialChoices | None:
    """A flat list's children, each stage with a block to leave off as depth candidates (None: no such stage)."""
    if type(module).forward is not nn.Sequential.forward:
        return None  # rebuilt as a plain Sequential, it would lose its own forward
    children = SequentialChoices()
    for run in _runs(module):
        ops = _depth_ops(nn.Sequential(OrderedDict(run)), min_depth) if _is_stage_block(run[0][1]) else None
        if ops is None:
            children.update(run)
        else:  # derive puts the blocks back under their own keys: the derived network has the model's keys
            children[run[0][0]] = {op: in_parent(blocks) for op, blocks in ops.items()}
    return children if any(not isinstance(child, nn.Module) for child in children.values()) else None


def _runs(module: nn.Sequential) -> list[list[tuple[str, nn.Module]]]:
    """``module``'s children in order, grouped: a stage (a block, then the blocks after it that keep their
    shape) or a single other layer."""
    runs: list[list[tuple[str, nn.Module]]] = []
    for key, child in module._modules.items():
        if runs and _is_stage_block(runs[-1][-1][1]) and _is_stage_block(child) and _keeps_shape(child):
            runs[-1].append((key, child))
        else:
            runs.append([(key, child)])
    return runs


def _no_stage(model: nn.Module, min_depth: int) -> str:
    """Why ``elastic_depth`` found nothing in ``model``: what it covers, and what the model has."""
    blocks = sum(1 for module in model.modules() if _is_stage_block(module))
    name = type(model).__name__
    found = (f"{name} has none of these blocks (other block types are not covered)" if not blocks else
             f"{name} has {blocks} such block(s), but no stage has a block after its first {min_depth} that keeps "
             "its input's shape (only those can be left off)")
    return ("elastic_depth covers stages of residual blocks (torchvision ResNet BasicBlock/Bottleneck, "
            "MobileNetV2/V3 InvertedResidual, MNASNet, EfficientNet MBConv/FusedMBConv, timm MobileNetV3/"
            "EfficientNet), in an nn.Sequential of their own or in a flat one such as MobileNetV2's features; "
            f"{found}")


_STAGE_BLOCKS = (BasicBlock, Bottleneck, *_BLOCKS)


def _keeps_shape(block: nn.Module) -> bool:
    """Whether leaving ``block`` out changes nothing but the function: it adds to its own input."""
    if isinstance(block, (BasicBlock, Bottleneck)):
        return block.downsample is None
    if isinstance(block, mnasnet._InvertedResidual):
        return block.apply_residual
    if timm_blocks.is_stage_block(block):
        return timm_blocks.keeps_shape(block)
    return block.use_res_connect


def _squeeze_convs(block: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d] | None:
    """The squeeze and excite convs of ``block``'s squeeze-and-excitation (torchvision's or timm's), if any."""
    for module in block.modules():
        if isinstance(module, SqueezeExcitation):
            return module.fc1, module.fc2
        pair = timm_blocks.squeeze_convs(module)
        if pair is not None:
            return pair
    return None


def _squeeze_width(block: nn.Module) -> int | None:
    pair = _squeeze_convs(block)
    return None if pair is None else pair[0].out_channels


def _widened(block: nn.Module, hidden: int, wide: int, squeeze: int | None = None) -> nn.Module:
    """A copy of ``block`` whose hidden-width convs and BNs hold ``wide`` channels, the original first
    (and its SE ``squeeze`` channels, when given)."""
    new = copy.deepcopy(block)
    pair = _squeeze_convs(new) if squeeze is not None else None
    for name, module in list(new.named_modules()):
        if pair is not None and module is pair[0]:  # reads the hidden layer, writes the squeeze
            grown = _conv_grown(module, wide, squeeze, zero_from=hidden)
        elif pair is not None and module is pair[1]:  # reads the squeeze, writes the hidden layer
            grown = _conv_grown(module, squeeze, wide, zero_from=module.in_channels)
        else:
            grown = _grown(module, hidden, wide) if wide != hidden else None
        if grown is not None:
            _replace(new, name, grown)
    return new


def _grown(module: nn.Module, hidden: int, wide: int) -> nn.Module | None:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.num_features == hidden:
        return timm_blocks.norm_of_width(module, wide, keep=hidden)  # any BN type (timm's BatchNormAct2d too)
    if not isinstance(module, nn.Conv2d) or hidden not in (module.in_channels, module.out_channels):
        return None
    depthwise = module.groups == module.in_channels == module.out_channels > 1
    c_out = wide if module.out_channels == hidden else module.out_channels
    c_in = wide if module.in_channels == hidden else module.in_channels
    return _conv_grown(module, c_in, c_out, zero_from=hidden if module.in_channels == hidden and not depthwise
                       else None)


def _conv_grown(module: nn.Conv2d, c_in: int, c_out: int, zero_from: int | None) -> nn.Conv2d:
    """A ``c_in -> c_out`` copy of ``module``: its weights first, fresh ones after, inputs ``zero_from:`` unread."""
    depthwise = module.groups == module.in_channels == module.out_channels > 1
    conv = nn.Conv2d(c_in, c_out, module.kernel_size, module.stride, module.padding, module.dilation,
                     c_in if depthwise else module.groups, bias=module.bias is not None,
                     padding_mode=module.padding_mode, device=module.weight.device, dtype=module.weight.dtype)
    with torch.no_grad():
        if zero_from is not None:
            conv.weight[:, zero_from:] = 0  # new input channels start unread: the block computes the original
        conv.weight[:module.out_channels, :module.weight.shape[1]] = module.weight
        if module.bias is not None:
            conv.bias[:module.out_channels] = module.bias
    return conv


def _hidden_view(shared: nn.Module, wide: int, width: int, squeeze: int | None = None) -> nn.Module:
    """``shared``'s own structure running the first ``width`` hidden channels of its modules (and the first
    ``squeeze`` channels of its SE, when given)."""
    memo: dict[int, nn.Module] = {}
    pair = _squeeze_convs(shared) if squeeze is not None else None
    if pair is not None:
        memo[id(pair[0])] = ConvView(pair[0], out_channels=squeeze, in_channels=width)
        memo[id(pair[1])] = ConvView(pair[1], out_channels=width, in_channels=squeeze)
    for module in shared.modules():
        if id(module) in memo:
            continue
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.num_features == wide:
            memo[id(module)] = timm_blocks.norm_view(module, width)
        elif isinstance(module, nn.Conv2d) and wide in (module.in_channels, module.out_channels):
            depthwise = module.groups == module.in_channels == module.out_channels > 1
            memo[id(module)] = ConvView(
                module, out_channels=width if module.out_channels == wide else None,
                in_channels=width if module.in_channels == wide and not depthwise else None)
        elif module._parameters or module._buffers:
            memo[id(module)] = module  # shared as it is: deepcopy must not copy it
    return copy.deepcopy(shared, memo)


class _Shape:
    """What a block's replacement must copy, read off its convs and first BN."""

    def __init__(self, block: nn.Module):
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        # The kxk conv: the depthwise one, or FusedMBConv's first (a full conv that also expands).
        spatial = convs[0] if isinstance(block, FusedMBConv) else next(
            c for c in convs if c.groups > 1 and c.groups == c.in_channels)
        self.c_in, self.c_out = convs[0].in_channels, convs[-1].out_channels
        # FusedMBConv of ratio 1 is one kxk conv c_in -> c_out.
        fused_one = isinstance(block, FusedMBConv) and len(convs) == 1
        self.expanded = self.c_in if fused_one else spatial.out_channels
        self.kernel, self.stride, self.dilation = spatial.kernel_size[0], spatial.stride[0], spatial.dilation[0]
        self.bn = next(m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        self.norm = functools.partial(type(self.bn), eps=self.bn.eps, momentum=self.bn.momentum)


def _ratio_name(ratio: float, prefix: str = "e") -> str:
    return f"{prefix}{ratio:.3g}".replace(".", "p")  # op names are ModuleDict keys: no dots


def _like(name: str, block: nn.Module, shape: _Shape, ratio: float) -> nn.Module:
    """A fresh block of ``block``'s type and shape with expansion ``ratio``."""
    c_in, c_out = shape.c_in, shape.c_out
    if timm_blocks.is_inverted_residual(block):
        return timm_blocks.block_of_ratio(block, ratio)
    if isinstance(block, InvertedResidual):
        return InvertedResidual(c_in, c_out, shape.stride, ratio, norm_layer=shape.norm)
    if isinstance(block, mobilenetv3.InvertedResidual):
        se = any(isinstance(m, SqueezeExcitation) for m in block.modules())
        activation = "HS" if any(isinstance(m, nn.Hardswish) for m in block.modules()) else "RE"
        # A dilated block runs its depthwise conv at stride 1 but is still configured with stride 2.
        stride = 2 if block._is_cn else 1
        config = mobilenetv3.InvertedResidualConfig(c_in, shape.kernel, c_in * ratio, c_out, se, activation,
                                                    stride, shape.dilation, 1.0)
        config.input_channels, config.out_channels = c_in, c_out
        return mobilenetv3.InvertedResidual(config, shape.norm)
    if isinstance(block, mnasnet._InvertedResidual):
        if ratio != int(ratio):
            raise SpaceError(f"MNASNet block {name!r} takes whole expansion ratios; got {ratio} "
                             "(give inverted_residual_expansions whole ratios for MNASNet)")
        return mnasnet._InvertedResidual(c_in, c_out, shape.kernel, shape.stride, int(ratio),
                                         bn_momentum=shape.bn.momentum)
    config_type, block_type = (FusedMBConvConfig, FusedMBConv) if isinstance(block, FusedMBConv) else (
        MBConvConfig, MBConv)
    config = config_type(ratio, shape.kernel, shape.stride, c_in, c_out, 1)
    # The config rounds widths to multiples of 8; the block must keep the original's exactly.
    config.input_channels, config.out_channels = c_in, c_out
    return block_type(config, block.stochastic_depth.p, shape.norm)


def mlp_ratios(ratios: Sequence[float] = (2, 3, 4)) -> Rule:
    """Rule: every transformer MLP chooses its hidden width, ``ratio * input width``.

    Matches torchvision's two-layer ``torchvision.ops.MLP``: ViT's ``MLPBlock``,
    Swin's MLP and any ``MLP(d, [h, out])`` without a norm layer
    (``Linear(d, h)``, activation, dropout, ``Linear(h, out)``, dropout), and timm's
    ``timm.layers.Mlp`` (its ViTs' MLPs) without a norm layer. Ops are
    named ``e<ratio>`` as :func:`inverted_residual_expansions` names them (the
    original keeps its own ratio's name, ``h / d``: ``e4`` for ViT-B's 3072/768);
    a candidate is a copy of the original (type, activation, dropout) with the
    hidden width ``round(ratio * d)``. A wider one holds the original weights in
    its first ``h`` hidden units, fresh rows for the others in the first Linear
    and zero columns for them in the second, so it starts out computing exactly
    the original function (and, unlike zeroing both sides, its new units get
    gradients and train). A narrower one keeps the first hidden units' rows and
    columns: a warm start, not the same function. Ratios that round to the
    original width are not offered.

    Raises:
        SpaceError: no ratio, or one that is not a positive number.

    Example:
        >>> from torchvision.models.vision_transformer import MLPBlock
        >>> ops = mlp_ratios((2, 4))("mlp", MLPBlock(8, 24, 0.0))
        >>> list(ops), ops["e4"][0].out_features, ops["e4"][3].in_features
        (['e3', 'e2', 'e4'], 32, 32)
    """
    bad = [r for r in ratios if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0]
    if bad or not ratios:
        raise SpaceError(f"mlp_ratios needs positive ratios; got {list(ratios)}")

    def rule(name: str, module: nn.Module) -> dict[str, nn.Module] | None:
        linears = _mlp_linears(module)
        if linears is None:
            return None
        first, _ = linears
        d, h = first.in_features, first.out_features
        ops: dict[str, nn.Module] = {_ratio_name(h / d): module}
        widths = {h}
        for ratio in ratios:
            width = max(1, round(ratio * d))
            if width not in widths and _ratio_name(ratio) not in ops:
                widths.add(width)
                ops[_ratio_name(ratio)] = _mlp_of_width(module, width)
        return ops if len(ops) > 1 else None

    rule.__name__ = "mlp_ratios"
    return rule


def _mlp_linears(module: nn.Module) -> tuple[nn.Linear, nn.Linear] | None:
    """A two-layer torchvision MLP's (or timm ``Mlp``'s) two Linears, when nothing else in it has parameters."""
    if not isinstance(module, MLP):
        return timm_blocks.mlp_linears(module)
    with_params = [i for i, child in enumerate(module) if any(True for _ in child.parameters())]
    if len(with_params) != 2 or not all(isinstance(module[i], nn.Linear) for i in with_params):
        return None  # a norm layer between, or more than one hidden layer
    first, second = (module[i] for i in with_params)
    return (first, second) if first.out_features == second.in_features else None


def _mlp_of_width(mlp: nn.Module, width: int) -> nn.Module:
    """A copy of a two-layer MLP with ``width`` hidden units, warm-started from its weights."""
    first, second = _mlp_linears(mlp)
    i, j = (k for k, child in mlp.named_children() if child is first or child is second)
    h = min(width, first.out_features)
    # The copy shares nothing; its Linears are replaced (the memo keeps the old ones from being copied).
    new = copy.deepcopy(mlp, memo={id(first): first, id(second): second})
    kwargs = {"device": first.weight.device, "dtype": first.weight.dtype}
    wide_in = nn.Linear(first.in_features, width, bias=first.bias is not None, **kwargs)
    wide_out = nn.Linear(width, second.out_features, bias=second.bias is not None, **kwargs)
    with torch.no_grad():
        wide_in.weight[:h] = first.weight[:h]
        wide_out.weight.zero_()
        wide_out.weight[:, :h] = second.weight[:, :h]
        if first.bias is not None:
            wide_in.bias[:h] = first.bias[:h]
        if second.bias is not None:
            wide_out.bias.copy_(second.bias)
    setattr(new, i, wide_in)
    setattr(new, j, wide_out)
    return new
