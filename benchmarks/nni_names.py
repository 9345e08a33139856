"""gmgraph's NB201 supernet and NNI 3.0's ``NasBench201`` name the same tensors differently: the mapping.

Both build the same network (stem, 3 x N cells of six edges with two residual blocks between the
stages, BN-ReLU, pooling, classifier), so every parameter and buffer has one counterpart:

==============================================  ===================================================
gmgraph (``nb201.supernet(affine=True)``)        NNI 3.0 (``nni.nas.hub.pytorch.NasBench201``)
==============================================  ===================================================
``cells.K.edges.E.ops.nor_conv_3x3.1.weight``   ``cells.K.layers.T-1.S.conv_3x3.op.1.weight``
``cells.K.conv_a.2.running_mean``               ``cells.K.conv_a.op.2.running_mean``
``cells.K.shortcut.1.weight``                   ``cells.K.downsample.1.weight``
anything else (stem, lastact, classifier)       the same name
==============================================  ===================================================

where edge ``E`` is the ``E``-th of :data:`gmgraph.spaces.nb201.LABELS` (``"T<-S"``: node T reads
node S). Decisions map the same way: gmgraph's label ``"T<-S"`` is NNI's ``"cell/S_T"`` (all cells
share it in both), with the candidates in the same order. Nothing here imports NNI.

    >>> nni_name("cells.0.edges.2.ops.nor_conv_1x1.2.bias")
    'cells.0.layers.1.1.conv_1x1.op.2.bias'
    >>> nni_label("3<-1"), nni_op("nor_conv_3x3")
    ('cell/1_3', 'conv_3x3')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from gmgraph.errors import ConfigError
from gmgraph.spaces.nb201 import LABELS

_EDGE = re.compile(r"cells\.(\d+)\.edges\.(\d+)\.ops\.(\w+)\.(.+)")
_RESIDUAL = re.compile(r"cells\.(\d+)\.(conv_a|conv_b|shortcut)\.(.+)")
_OPS = {"nor_conv_1x1": "conv_1x1", "nor_conv_3x3": "conv_3x3"}  # the other candidates keep their names
ALPHA = "_arch_alpha"  # NNI's DARTS layers hold the shared alphas under this name: not weights


def nni_op(op: str) -> str:
    """NNI's name of a gmgraph NB201 candidate."""
    return _OPS.get(op, op)


def nni_label(label: str) -> str:
    """NNI's label of a gmgraph NB201 decision ``"T<-S"``."""
    target, source = label.split("<-")
    return f"cell/{source}_{target}"


def nni_name(name: str) -> str:
    """NNI's name of one gmgraph NB201 parameter or buffer."""
    edge = _EDGE.fullmatch(name)
    if edge:
        cell, index, op, rest = edge.groups()
        target, source = LABELS[int(index)].split("<-")
        return f"cells.{cell}.layers.{int(target) - 1}.{source}.{nni_op(op)}.op.{rest}"
    residual = _RESIDUAL.fullmatch(name)
    if residual:
        cell, part, rest = residual.groups()
        return f"cells.{cell}.downsample.{rest}" if part == "shortcut" else f"cells.{cell}.{part}.op.{rest}"
    return name


def name_map(ours: Iterable[str], theirs: Iterable[str]) -> dict[str, str]:
    """gmgraph name -> NNI name for every tensor, checked one to one (NNI's alphas left out).

    Raises ConfigError naming what has no counterpart on either side.

    >>> name_map(["stem.0.weight", "cells.1.shortcut.1.weight"], ["cells.1.downsample.1.weight", "stem.0.weight"])
    {'stem.0.weight': 'stem.0.weight', 'cells.1.shortcut.1.weight': 'cells.1.downsample.1.weight'}
    """
    mapping = {name: nni_name(name) for name in ours}
    theirs = {name for name in theirs if name.rsplit(".", 1)[-1] != ALPHA}
    unmatched = sorted(set(mapping.values()) - theirs)
    left = sorted(theirs - set(mapping.values()))
    if unmatched or left or len(set(mapping.values())) != len(mapping):
        raise ConfigError(f"the name mapping is not one to one: gmgraph names mapped to no NNI tensor "
                          f"{unmatched[:5]}, NNI tensors nothing maps to {left[:5]}")
    return mapping


def load_by_name(source: nn.Module, target: nn.Module) -> int:
    """Copy every parameter and buffer of gmgraph's ``source`` into NNI's ``target``; the number copied.

    Shapes must agree (ConfigError otherwise); ``target``'s alphas are left alone.
    """
    ours, theirs = source.state_dict(), target.state_dict()
    mapping = name_map(ours, theirs)
    bad = [f"{a} {tuple(ours[a].shape)} vs {b} {tuple(theirs[b].shape)}"
           for a, b in mapping.items() if ours[a].shape != theirs[b].shape]
    if bad:
        raise ConfigError(f"{len(bad)} tensors differ in shape, e.g. {bad[0]}")
    with torch.no_grad():
        for a, b in mapping.items():
            theirs[b].copy_(ours[a])
    return len(mapping)


def copy_alphas(alphas: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor]) -> None:
    """Set NNI's alphas (label -> parameter) to gmgraph's (label -> parameter), candidates in the same order."""
    with torch.no_grad():
        for label, alpha in alphas.items():
            theirs[nni_label(label)].copy_(alpha)
