"""Ready search spaces, and the registry the CLI builds them from.

>>> from gmgraph.spaces import get
>>> spec = get("nb201")
>>> net = spec.build(width=4, cells=1, num_classes=10, in_channels=1)
>>> spec.to_str({label: "none" for label in nb201.LABELS})
'|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
>>> sorted(REGISTRY)
['darts', 'encdec', 'mobilenet', 'nb201', 'ofa']
>>> arch_to_str(None, {"a": "x"})      # no named space: label=op pairs
'a=x'
>>> parse_arch(None, "a=x;b=y")
{'a': 'x', 'b': 'y'}

Your own model becomes a space through :func:`supernetify` and rules such as
:func:`conv_kernels`, :func:`depthwise_kernels`, :func:`inverted_residual_expansions`,
:func:`mlp_ratios` and the elastic ones (shared weights: :func:`elastic_kernels`, :func:`elastic_expansions`,
:func:`elastic_widths`, :func:`elastic_stage_widths`, :func:`elastic_depth`);
:func:`original_arch` names the architecture that is the original model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from gmgraph import registry
from gmgraph.arch import Arch, format_pairs, parse_pairs
from gmgraph.config import is_reference, rules_make_elastic_kernels
from gmgraph.errors import ConfigError
from gmgraph.spaces import channel_sort, darts, encdec, mobilenet, nb201, ofa, user_model


@dataclass(frozen=True)
class SpaceSpec:
    """How the CLI builds a named space and talks about its architectures.

    Attributes:
        build: ``build(width, cells, num_classes, in_channels) -> nn.Module`` (untraced supernet).
        shared: the gradient-matching shared-parameter preset ``(gm, label) -> names`` (None: automatic).
        to_str / parse: the space's architecture text codec (default ``label=op;...``).
        oracle: ``arch -> dict`` looking the arch up in a benchmark table (reported as a reference only).
        before_phase: ``(gm, phase, optimizer) -> note | None``, run by the trainer on each (sub-)supernet when
            a ``--shrink`` schedule starts a phase, before its first epoch (OFA re-sorts channels before
            ``width``); the note goes into the epoch's history. The default,
            :func:`gmgraph.spaces.channel_sort.before_phase`, re-sorts the hidden channels of the blocks
            ``elastic_expansions`` made and the inner channels of the ResNet blocks ``elastic_widths`` made before
            ``width`` (any space built with those rules, ``--model ... --rules`` included) and is a no-op (None)
            on a graph without them. None: nothing to do.
        kernel_transform: ``build`` takes ``kernel_transform=True`` (OFA's kernel transform matrices on its
            elastic kernels, ``--kernel-transform``); spaces without elastic kernels refuse the setting. A
            user's model takes it when its rules include ``elastic_kernels``.
    """

    name: str
    build: Callable[..., nn.Module]
    shared: Callable | None = None
    to_str: Callable[[Mapping[str, str]], str] = format_pairs
    parse: Callable[[str], Arch] = parse_pairs
    oracle: Callable[[Mapping[str, str]], dict] | None = None
    before_phase: Callable[..., str | None] | None = channel_sort.before_phase
    kernel_transform: bool = False

    def make(self, width: int, cells: int, num_classes: int, in_channels: int, *,
             kernel_transform: bool = False) -> nn.Module:
        """``build`` with the space's options set (an option left at its default is not passed).

        Raises:
            ConfigError: ``kernel_transform`` for a space without elastic kernels.
        """
        if kernel_transform and not self.kernel_transform and not is_reference(self.name):  # a model's build checks its rules
            raise ConfigError(f"--kernel-transform acts on elastic kernels; the {self.name} space has none "
                              f"(spaces with them: {', '.join(n for n, s in BUILTIN.items() if s.kernel_transform)})")
        options = {"kernel_transform": True} if kernel_transform else {}
        return self.build(width=width, cells=cells, num_classes=num_classes, in_channels=in_channels, **options)


def _nb201(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    return nb201.supernet(C=width, N=cells, num_classes=num_classes, in_channels=in_channels)


def _darts(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    # `cells` is normal cells per stage, as NB201's N: cells=2 gives DARTS's 8-layer search net.
    return darts.supernet(C=width, layers=3 * cells + 2, num_classes=num_classes, in_channels=in_channels)


def _mobilenet(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    # `width` is the first MBConv's channels (16 at width_mult 1.0); the 21 blocks are fixed, so `cells` is unused.
    return mobilenet.supernet(num_classes=num_classes, width_mult=width / 16, in_channels=in_channels)


def _ofa(width: int, cells: int, num_classes: int, in_channels: int, kernel_transform: bool = False) -> nn.Module:
    # `width` is the stem's channels (16 at OFA's width 1.0, which sets the multiplier); `cells` is how many of
    # OFA's five stride-2 layers keep their stride (5: OFA's own; small images keep fewer). Below width 16 the
    # widths round to multiples of 4 instead of 8, so a CPU-sized supernet stays small.
    return ofa.supernet(num_classes=num_classes, width_mult=width / 16, in_channels=in_channels,
                        strides=ofa.strides_for(cells), divisor=8 if width >= 16 else 4,
                        kernel_transform=kernel_transform)


def _encdec(width: int, cells: int, num_classes: int, in_channels: int) -> nn.Module:
    # `width` is the full-resolution blocks' channels (the half-resolution ones have twice); `cells` is unused.
    return encdec.supernet(num_classes=num_classes, in_channels=in_channels, width=width)


def _nb201_oracle(arch: Mapping[str, str]) -> dict:
    from gmgraph.nasbench import nb201 as table

    return {"note": "NAS-Bench-201 lookup of the chosen arch (CIFAR-10 test, 200 epochs); "
                    "a reference only, not what the search optimised",
            "nb201_cifar10_test": table.query(arch)}


BUILTIN: dict[str, SpaceSpec] = {
    "nb201": SpaceSpec("nb201", _nb201, nb201.shared_parameters, nb201.to_str, nb201.parse, _nb201_oracle),
    "darts": SpaceSpec("darts", _darts, darts.shared_parameters, darts.to_str, darts.parse),
    "mobilenet": SpaceSpec("mobilenet", _mobilenet, mobilenet.shared_parameters, mobilenet.to_str, mobilenet.parse),
    "ofa": SpaceSpec("ofa", _ofa, ofa.shared_parameters, ofa.to_str, ofa.parse, before_phase=ofa.before_phase,
                     kernel_transform=True),
    "encdec": SpaceSpec("encdec", _encdec, encdec.shared_parameters),
}
"""The ready spaces (what :data:`REGISTRY` resolves its built-in names to)."""

REGISTRY = registry.SPACES
"""The space table (:data:`gmgraph.registry.SPACES`): name -> :class:`SpaceSpec` (``--space``)."""


def get(name: str, rules: str | tuple[str, ...] | None = None) -> SpaceSpec:
    """The registered space ``name``, or the user's model a ``module:function`` name refers to (``--model``),
    made a supernet by ``rules`` (``--rules``; see :mod:`gmgraph.spaces.user_model`).

    Raises:
        ConfigError: naming the registered spaces; rules given for a registered space.
    """
    if is_reference(name):
        return SpaceSpec(name, user_model.model_builder(name, rules),
                         kernel_transform=rules_make_elastic_kernels(rules))
    if name not in REGISTRY:
        raise ConfigError(f"unknown space {name!r}; choose one of {', '.join(REGISTRY)}, "
                          "or give your own model as --model module:function")
    if rules:
        raise ConfigError(f"--rules turn your own model into a supernet (--model); the {name} space is one already")
    return REGISTRY[name]


def arch_to_str(space: str | None, arch: Mapping[str, str]) -> str:
    """The one text of ``arch``: the named space's own codec, ``label=op;...`` for None or an unknown name.

    Every place that shows an architecture (report, HTML, export, predict, show) goes through it.
    """
    spec = REGISTRY.get(space) if space is not None else None
    return (spec.to_str if spec is not None else format_pairs)(arch)


def parse_arch(space: str | None, text: str) -> Arch:
    """Read an architecture text of the named space (``label=op;...`` for None).

    Raises:
        ArchError: saying what the text should look like. ConfigError: an unknown space name.
    """
    return (get(space).parse if space is not None else parse_pairs)(text)


# supernetify and its rules live in from_model, which imports torchvision's models (about a second): loaded on
# first use, so a process that only builds a ready space never pays for it.
_FROM_MODEL = ("conv_kernels", "depthwise_kernels", "elastic_depth", "elastic_expansions", "elastic_kernels",
               "elastic_stage_widths", "elastic_widths", "inverted_residual_expansions", "mlp_ratios", "original_arch",
               "supernetify")


def __getattr__(name: str):
    if name in _FROM_MODEL:
        from gmgraph.spaces import from_model

        return getattr(from_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "SpaceSpec",
    "arch_to_str",
    "channel_sort",
    "conv_kernels",
    "darts",
    "depthwise_kernels",
    "elastic_depth",
    "elastic_expansions",
    "elastic_kernels",
    "elastic_stage_widths",
    "elastic_widths",
    "encdec",
    "get",
    "inverted_residual_expansions",
    "mlp_ratios",
    "mobilenet",
    "nb201",
    "ofa",
    "original_arch",
    "parse_arch",
    "supernetify",
]
