"""Re-initialise a (sub-)supernet's weights as freshly built modules would be (``--leaf-restart weights``).

GM-NAS's ``--restart final`` trains the final leaves of the split tree from
scratch. :func:`reinitialise` gives a graph the weights its modules would have
if they had just been built: every module's ``reset_parameters`` runs, in
module order, drawing from a generator seeded by ``seed``, and BatchNorm's
running statistics start again. The caller's random streams are left where they
were::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    >>> _ = net[1].running_mean.fill_(5.0)
    >>> reinitialise(net, seed=7)
    >>> _ = torch.manual_seed(7)
    >>> fresh = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    >>> all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))
    True

A module that holds parameters of its own but has no ``reset_parameters``
cannot be re-initialised this way; it is named in a :class:`~gmgraph.errors.SpaceError`.
"""

from __future__ import annotations

import torch
from torch import nn

from gmgraph.errors import SpaceError


def reinitialise(model: nn.Module, *, seed: int) -> None:
    """Reset every module's parameters and buffers in place, seeded by ``seed``.

    Modules are reset in ``model.modules()`` order with the global random
    streams seeded by ``seed`` (every CUDA device's too, so parameters on a GPU
    draw from its generator); the streams are restored afterwards. Parameters
    shared by several modules are reset by each in turn (the last one wins),
    as when the modules were built.

    Args:
        model: the network (a traced supernet, a sub-supernet, any module).
        seed: the seed of the draws.

    Raises:
        SpaceError: a module owns parameters but has no ``reset_parameters``, naming it.

    Example:
        >>> from torch import nn
        >>> conv = nn.Conv2d(1, 2, 3)
        >>> before = conv.weight.detach().clone()
        >>> reinitialise(conv, seed=0)
        >>> torch.equal(before, conv.weight)
        False
    """
    resets = [_reset_of(name, module) for name, module in model.named_modules()]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for reset in resets:
            if reset is not None:
                reset()


def _reset_of(name: str, module: nn.Module):
    """``module``'s reset (``reset_parameters``, or ``_reset_parameters`` as ``nn.MultiheadAttention`` spells it).

    None for a module with nothing of its own to reset.

    Raises:
        SpaceError: own parameters and no reset.
    """
    for attribute in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, attribute, None)
        if callable(reset):
            return reset
    if isinstance(module, nn.ParameterDict | nn.ParameterList):
        return None  # a container: the module holding it resets its parameters (or is named below)
    containers = [(f"{n}.", m) for n, m in module.named_children() if isinstance(m, nn.ParameterDict | nn.ParameterList)]
    own = [n for n, _ in module.named_parameters(recurse=False)]
    own += [prefix + n for prefix, m in containers for n, _ in m.named_parameters()]
    if own:
        raise SpaceError(f"cannot re-initialise {name or 'the model'} ({type(module).__name__}): it holds "
                         f"parameters {own} but has no reset_parameters(); give it one or do not restart its weights")
    return None
