"""A user's own network as a search space: ``--model module:function`` (and ``--rules``).

The reference names a function that returns an ``nn.Module``: with Choices in it
(a space the user built), or a plain model that rules from
:mod:`gmgraph.spaces.from_model` turn into a supernet (``--rules conv_kernels``).
The function is called with whichever of ``num_classes``, ``in_channels``,
``width`` and ``cells`` its signature names (``**kwargs``: ``num_classes``), so one
written for the data adapts to it. ``module`` is imported as Python would (the current folder first); a
``path/to/file.py:function`` reference loads that file.

>>> build = model_builder("torch.nn:Identity")
>>> build(width=16, cells=5, num_classes=10, in_channels=3)
Traceback (most recent call last):
...
gmgraph.errors.SpaceError: --model torch.nn:Identity returned Identity, which has no Choice to search; add --rules with one or more of conv_kernels, depthwise_kernels, elastic_depth, elastic_expansions, elastic_kernels, elastic_stage_widths, elastic_widths, inverted_residual_expansions, mlp_ratios, or build Choices into it
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from gmgraph.config import check_model_kernel_transform, parse_rules
from gmgraph.errors import SpaceError
from gmgraph.references import call_with, load_function
from gmgraph.registry import RULES


def model_builder(reference: str, rules: str | Sequence[str] | None = None) -> Callable[..., nn.Module]:
    """``build(width, cells, num_classes, in_channels)`` of the model ``reference`` names, with ``rules``
    applied (the ``build`` of a :class:`~gmgraph.spaces.SpaceSpec`).

    Nothing is imported until it builds (so a checked setting costs nothing). ``kernel_transform``
    (``--kernel-transform``) gives ``elastic_kernels`` OFA's kernel transform matrices.
    """
    rules = parse_rules(rules)

    def build(width: int, cells: int, num_classes: int, in_channels: int, kernel_transform: bool = False) -> nn.Module:
        model = _call(load_function(reference, "--model"), reference, width=width, cells=cells, num_classes=num_classes,
                      in_channels=in_channels)
        return _with_rules(model, reference, rules, kernel_transform)

    return build


def _call(function: Callable[..., object], reference: str, **offered: int) -> nn.Module:
    """``function`` called with the ``offered`` values its signature names (``**kwargs`` gets ``num_classes``
    alone, as torchvision's model functions pass it on to the model's class)."""
    model = call_with(function, offered, rest=("num_classes",))
    if not isinstance(model, nn.Module):
        raise SpaceError(f"--model {reference} returned {type(model).__name__}, not a torch nn.Module")
    return model


def _with_rules(model: nn.Module, reference: str, rules: tuple[str, ...], kernel_transform: bool = False) -> nn.Module:
    from gmgraph.choice import Choice

    if kernel_transform:
        check_model_kernel_transform(reference, rules)
    if rules:
        import gmgraph.spaces.from_model as from_model

        options = {"elastic_kernels": {"transform": True}} if kernel_transform else {}
        return from_model.supernetify(model, [getattr(from_model, rule)(**options.get(rule, {})) for rule in rules])
    if not any(isinstance(m, Choice) for m in model.modules()):
        raise SpaceError(f"--model {reference} returned {type(model).__name__}, which has no Choice to search; "
                         f"add --rules with one or more of {', '.join(RULES)}, or build Choices into it")
    return model
