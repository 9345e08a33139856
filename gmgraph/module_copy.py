"""A deep copy of a module tree that gives what ``copy.deepcopy`` gives, two to three times sooner.

``copy.deepcopy`` copies an ``nn.Module`` through Python's generic pickle protocol:
every module's ``__reduce_ex__``, then every one of its fifteen hook and
bookkeeping dicts, one by one. A supernet holds thousands of small modules, and
``restrict`` (every split) and ``derive`` (every evaluated architecture) copy
them, so that generic walk was a large share of a split and of a search.

:func:`deepcopy` walks the tree itself for ordinary modules (no ``__deepcopy__``
or ``__reduce__`` of their own): it makes each module through its class's
``__new__``, hands its ``__getstate__()`` (a module's own state, with what it
leaves out) to ``__setstate__`` as ``copy`` does, copies tensors through their
own ``__deepcopy__`` and makes fresh empty dicts for empty hook tables. Anything
else (a module with its own copy protocol, a non-empty hook table, a list) goes
to ``copy.deepcopy`` with the same ``memo``, so shared objects stay shared
exactly as ``copy.deepcopy`` shares them, and a ``memo`` filled by the caller
(an op mapped to a placeholder, a view to its materialised module) is honoured::

    >>> import torch
    >>> from torch import nn
    >>> shared = nn.Linear(2, 2)
    >>> net = nn.Sequential(shared, nn.ReLU(), shared)
    >>> twin = deepcopy(net)
    >>> twin[0] is twin[2], twin[0] is shared, torch.equal(twin[0].weight, shared.weight)
    (True, False, True)
    >>> deepcopy(net, {id(shared): nn.Identity()})[2]
    Identity()
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")

_ATOMIC = (int, float, bool, str, bytes, type(None), torch.dtype, torch.device)
_TENSOR_TABLES = ("_parameters", "_buffers")
_direct_types: dict[type, bool] = {}


def deepcopy(obj: T, memo: dict[int, object] | None = None) -> T:
    """``copy.deepcopy(obj, memo)``, with every ordinary module inside ``obj`` copied directly.

    ``obj`` may be any object (a GraphModule, a module, a dict of modules); ``memo`` is
    ``copy.deepcopy``'s and may hold the caller's own entries.

    >>> from torch import nn
    >>> bn = nn.BatchNorm2d(3)
    >>> copied = deepcopy(nn.Sequential(bn))[0]
    >>> copied.running_var is bn.running_var, copied.num_features
    (False, 3)
    """
    memo = {} if memo is None else memo
    if isinstance(obj, nn.Module):
        return _module(obj, memo)
    return copy.deepcopy(obj, memo)


def _module(module: nn.Module, memo: dict[int, object]) -> nn.Module:
    """The copy of ``module`` (and, first, of every module under it), recorded in ``memo``."""
    if id(module) in memo:
        return memo[id(module)]
    if not _copied_directly(type(module)):
        for child in module._modules.values():
            if child is not None:
                _module(child, memo)
        return copy.deepcopy(module, memo)
    new = type(module).__new__(type(module))
    memo[id(module)] = new
    _keep_alive(module, memo)
    state = {}
    for key, value in module.__getstate__().items():
        if key == "_modules":
            state[key] = {name: None if child is None else _module(child, memo) for name, child in value.items()}
        elif key in _TENSOR_TABLES:
            state[key] = {name: None if t is None else copy.deepcopy(t, memo) for name, t in value.items()}
        else:
            state[key] = _value(value, memo)
    new.__setstate__(state)
    return new


def _value(value, memo: dict[int, object]):
    """A module attribute's copy: atoms and tuples of atoms as they are, a fresh empty table for an empty one."""
    kind = type(value)
    if kind in _ATOMIC or (kind is tuple and all(type(v) in _ATOMIC for v in value)):
        return value  # what copy.deepcopy returns for them too
    if kind in (dict, OrderedDict, set) and not value:
        if id(value) not in memo:
            memo[id(value)] = kind()
            _keep_alive(value, memo)
        return memo[id(value)]
    return copy.deepcopy(value, memo)


def _keep_alive(original, memo: dict[int, object]) -> None:
    """Hold ``original`` in ``memo`` as ``copy.deepcopy`` does, so no id in it is reused while it is in use."""
    memo.setdefault(id(memo), []).append(original)


def _copied_directly(kind: type) -> bool:
    """Whether ``copy.deepcopy`` would copy a ``kind`` module through the default pickle protocol."""
    direct = _direct_types.get(kind)
    if direct is None:
        direct = (
            not hasattr(kind, "__deepcopy__")
            and kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and not hasattr(kind, "__getnewargs_ex__") and not hasattr(kind, "__getnewargs__")
            and "__slots__" not in {k for c in kind.__mro__ for k in vars(c)}
        )
        _direct_types[kind] = direct
    return direct
