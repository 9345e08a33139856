"""timm's blocks, as the rules of :mod:`gmgraph.spaces.from_model` need to see them.

timm is optional and is never imported here: a module is one of timm's classes only if timm
already loaded that class (``sys.modules``), so without timm every test below is ``False`` at
the cost of a dict lookup, and importing gmgraph stays as fast as before. What is covered
(timm 1.0):

- ``timm.models._efficientnet_blocks.InvertedResidual`` (MobileNetV3, EfficientNet, MNASNet
  and MixNet in timm): expansion ratios, shared or not (:func:`is_inverted_residual`,
  :func:`block_of_ratio`), when its convs are plain ``nn.Conv2d`` (not TF "same" padding,
  CondConv or space-to-depth) and its depthwise conv is depthwise;
- stages (``nn.Sequential``) of those blocks, ``DepthwiseSeparableConv``, ``EdgeResidual`` and
  ``UniversalInvertedResidual`` for elastic depth (:func:`is_stage_block`, :func:`keeps_shape`);
  their ``SqueezeExcite`` squeezes as the model does at another expansion (:func:`squeeze_width`).
  Not ViT's ``blocks``: timm's ViT iterates over them when torch.fx traces it (its ``attn_mask``
  argument becomes a proxy), so a Choice there cannot be traced;
- ``timm.layers.Mlp`` without a norm over its hidden units (:func:`mlp_linears`);
- ``BatchNormAct2d`` (a BatchNorm that also runs its dropout and activation):
  :func:`norm_of_width` and :class:`NormActView` keep its activation.

>>> norm_of_width(nn.BatchNorm2d(4), 6, keep=4).num_features
6
>>> is_inverted_residual(nn.Conv2d(2, 2, 1)), mlp_linears(nn.Linear(2, 2))
(False, None)
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn

from gmgraph.elastic import NormView

_EFFICIENTNET = "timm.models._efficientnet_blocks"
_STAGE_BLOCKS = ("DepthwiseSeparableConv", "InvertedResidual", "EdgeResidual", "UniversalInvertedResidual")


def _timm_class(module: str, name: str) -> type | None:
    """timm's class ``module.name`` if timm has loaded it, else None (never imports timm)."""
    return getattr(sys.modules.get(module), name, None)


def _is(module: nn.Module, where: str, name: str) -> bool:
    cls = _timm_class(where, name)
    return cls is not None and type(module) is cls


def is_inverted_residual(module: nn.Module) -> bool:
    """Whether ``module`` is a timm ``InvertedResidual`` whose hidden layer the rules can resize."""
    if not _is(module, _EFFICIENTNET, "InvertedResidual") or module.conv_s2d is not None:
        return False
    if not isinstance(module.aa, nn.Identity) or not isinstance(module.se, (nn.Identity, _se_type())):
        return False
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    dw = module.conv_dw
    return all(type(c) is nn.Conv2d for c in convs) and dw.groups == dw.in_channels == dw.out_channels


def _se_type() -> type:
    return _timm_class(_EFFICIENTNET, "SqueezeExcite") or nn.Identity


def is_stage_block(module: nn.Module) -> bool:
    """Whether ``module`` is a timm block :func:`~gmgraph.spaces.from_model.elastic_depth` may stack."""
    return any(_is(module, _EFFICIENTNET, name) for name in _STAGE_BLOCKS)


def keeps_shape(block: nn.Module) -> bool:
    """Whether a timm stage block adds to its own input (``has_skip``)."""
    return block.has_skip


def block_of_ratio(block: nn.Module, ratio: float) -> nn.Module:
    """A freshly initialised copy of a timm ``InvertedResidual`` with expansion ``ratio``.

    The hidden width is rounded as timm rounds it (``make_divisible``, multiples of 8); kernel,
    stride, dilation, padding, activations, squeeze-excitation and drop-path rate are the
    original's, the SE squeezing as the model would (:func:`squeeze_width`).
    """
    width = sys.modules["timm.layers"].make_divisible(block.conv_pw.in_channels * ratio)
    squeeze = squeeze_width(block, width)
    new = copy.deepcopy(block)
    new.conv_pw = _conv_of_width(new.conv_pw, out_channels=width)
    new.bn1, new.bn2 = norm_of_width(new.bn1, width), norm_of_width(new.bn2, width)
    new.conv_dw = _conv_of_width(new.conv_dw, in_channels=width, out_channels=width)
    if not isinstance(new.se, nn.Identity):
        new.se.conv_reduce = _conv_of_width(new.se.conv_reduce, in_channels=width, out_channels=squeeze)
        new.se.conv_expand = _conv_of_width(new.se.conv_expand, in_channels=squeeze, out_channels=width)
    new.conv_pwl = _conv_of_width(new.conv_pwl, in_channels=width)
    for module in new.modules():
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
    return new


def squeeze_convs(module: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d] | None:
    """A timm ``SqueezeExcite``'s ``conv_reduce`` and ``conv_expand`` (None for any other module)."""
    return (module.conv_reduce, module.conv_expand) if _is(module, _EFFICIENTNET, "SqueezeExcite") else None


def squeeze_width(block: nn.Module, hidden: int) -> int | None:
    """The squeeze width timm's model gives the SE of ``block`` built with ``hidden`` channels (None: no SE).

    timm's MobileNetV3 squeezes from the hidden width (``se_from_exp``: a quarter of it, rounded to 8
    by ``make_divisible``), so the squeeze follows the expansion; its EfficientNet squeezes from the
    block's input width (``se_ratio / exp_ratio`` of the hidden), the same at every expansion. A block
    whose squeeze is a quarter of its hidden width, so rounded, is taken for the first; any other keeps
    its squeeze.
    """
    if isinstance(block.se, nn.Identity):
        return None
    squeeze = block.se.conv_reduce.out_channels
    make_divisible = sys.modules["timm.layers"].make_divisible
    if squeeze == make_divisible(block.conv_pw.out_channels * 0.25):
        return make_divisible(hidden * 0.25)
    return squeeze


def _conv_of_width(conv: nn.Conv2d, in_channels: int | None = None, out_channels: int | None = None) -> nn.Conv2d:
    c_in, c_out = in_channels or conv.in_channels, out_channels or conv.out_channels
    depthwise = conv.groups == conv.in_channels == conv.out_channels > 1
    return nn.Conv2d(c_in, c_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     c_in if depthwise else conv.groups, bias=conv.bias is not None,
                     padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)


def norm_of_width(bn: nn.modules.batchnorm._BatchNorm, width: int, keep: int = 0,
                  start: int = 0) -> nn.modules.batchnorm._BatchNorm:
    """A copy of any BatchNorm (its type, settings, activation) with ``width`` channels.

    Channels ``:keep`` hold ``bn``'s channels ``start:start + keep``; the others start as a new
    BatchNorm does (weight 1, bias 0, mean 0, variance 1). ``num_batches_tracked`` is kept.

    >>> bn = norm_of_width(nn.BatchNorm2d(4, eps=1e-3), 2, keep=2)
    >>> bn.eps, bn.weight.shape
    (0.001, torch.Size([2]))
    """
    tensors = [name for name, _ in [*bn.named_parameters(recurse=False), *bn.named_buffers(recurse=False)]]
    new = copy.deepcopy(bn, memo={id(getattr(bn, name)): None for name in tensors})
    new.num_features = width
    with torch.no_grad():
        for name in tensors:
            old = getattr(bn, name)
            if name == "num_batches_tracked":
                tensor = old.clone()
            else:
                tensor = torch.ones(width, dtype=old.dtype, device=old.device) if name in ("weight", "running_var") \
                    else torch.zeros(width, dtype=old.dtype, device=old.device)
                tensor[:keep] = old[start:start + keep]
            if isinstance(old, nn.Parameter):
                setattr(new, name, nn.Parameter(tensor, requires_grad=old.requires_grad))
            else:
                new.register_buffer(name, tensor)
    return new


def norm_view(bn: nn.modules.batchnorm._BatchNorm, channels: int) -> NormView:
    """A view of ``bn``'s first channels that runs what ``bn`` runs after normalising (timm's act)."""
    return NormActView(bn, channels) if _is(bn, "timm.layers.norm_act", "BatchNormAct2d") else NormView(bn, channels)


class NormActView(NormView):
    """A :class:`~gmgraph.elastic.NormView` of a timm ``BatchNormAct2d``: normalise, drop, activate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn.act(self.bn.drop(super().forward(x)))

    def materialize(self) -> nn.modules.batchnorm._BatchNorm:
        """A ``BatchNormAct2d`` of ``channels`` features holding copies of this view's slices."""
        plain = norm_of_width(self.bn, self.channels, keep=self.channels)
        plain.train(self.bn.training)
        return plain


def mlp_linears(module: nn.Module) -> tuple[nn.Linear, nn.Linear] | None:
    """A timm ``Mlp``'s ``fc1`` and ``fc2`` when both are Linears and no norm sits between them."""
    if not _is(module, "timm.layers.mlp", "Mlp") or not isinstance(module.norm, nn.Identity):
        return None
    first, second = module.fc1, module.fc2
    if type(first) is not nn.Linear or type(second) is not nn.Linear:
        return None
    return first, second
