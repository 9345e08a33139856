"""Zero-cost proxies: score one architecture of a supernet from one batch, without training.

Every metric runs on ``derive(gm, arch)``, a private copy of the architecture's
network, so scoring never touches the supernet's weights, BatchNorm statistics,
gradients or Choice modes, and the caller's global RNG streams are left as they were::

    >>> import torch
    >>> import gmgraph
    >>> from gmgraph.spaces import nb201
    >>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
    >>> arch = nb201.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|nor_conv_1x1~2|")
    >>> batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    >>> zero_cost(gm, arch, "params", batch)
    8366.0
    >>> zero_cost(gm, arch, "synflow", batch) > 0
    True
    >>> zero_cost(gm, arch, "params", batch, device="cpu")   # where the copy runs
    8366.0

Sign convention: every proxy is returned so that *higher = predicted better*
(``synflow``, ``grad_norm``, ``snip``, ``naswot``; ``grasp`` as defined in
docs/algorithms.md §6, ``-Σ θ ⊙ Hg``). ``params`` and ``flops`` are sizes: higher
means more capacity (and cost); they are returned as is, not negated.

Which BatchNorm mode each metric uses (the copy's, never the supernet's):

* ``synflow``: eval mode with running statistics reset to mean 0 / var 1, so BN
  is the affine map ``|γ| x / sqrt(1 + eps) + |β|`` and cannot normalise the
  all-ones signal away (the reference code removes BN instead; for the
  identity-initialised BN of a fresh network both are the same up to ``eps``).
* ``grad_norm``, ``snip``, ``grasp``, ``naswot``: train mode (batch statistics),
  as the reference code runs freshly built networks.
* ``params``, ``flops``: structure only.

The copy and the batch go to ``device`` (default: where the supernet's
parameters are), so a CPU supernet can be scored on a GPU and back; every
metric is read back once, as a Python float.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from gmgraph import registry
from gmgraph.device import scoring_device, to_device
from gmgraph.errors import ConfigError, DataError
from gmgraph.passes.derive import derive

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DATA_FREE = registry.DATA_FREE
"""Metrics that use only the shape of ``x`` (never its values, never ``y``)."""


def zero_cost(
    gm: fx.GraphModule,
    arch: Mapping[str, str],
    metric: str,
    batch: Batch | None,
    *,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    prune: bool = True,
    device: str | torch.device | None = None,
) -> float:
    """Score architecture ``arch`` of the supernet ``gm`` with a zero-cost proxy.

    Args:
        gm: a traced (sub-)supernet; it is never modified.
        arch: label -> op name for every label of ``gm``'s space.
        metric: one of :data:`METRICS`.
        batch: ``(x, y)`` with images ``x`` (N x C x H x W) and integer labels
            ``y``. ``synflow`` and ``flops`` use only ``x.shape[1:]``; ``params``
            ignores the batch (it may be ``None``).
        loss_fn: ``loss_fn(logits, y) -> scalar`` for the gradient metrics;
            default mean cross-entropy.
        seed: seeds torch's RNG while scoring (dropout, ...) inside a forked RNG
            state, so equal seeds give equal scores and the caller's stream is
            unchanged.
        prune: passed to :func:`~gmgraph.passes.derive.derive`. ``prune=False``
            keeps ops that never reach the output, which is how NAS-Bench-201
            counts parameters and FLOPs.
        device: where the derived copy and the batch run (``cpu``, ``cuda``,
            ``cuda:N``, ``auto`` or a ``torch.device``); default where ``gm``'s
            parameters are (the batch's device for a graph without any).
            ``synflow`` runs in float64 there too.

    Returns:
        The score as a Python float (``naswot`` is ``-inf`` when its kernel is
        singular, e.g. two samples with identical ReLU codes).

    Raises:
        ConfigError: unknown ``metric``, or a device torch cannot use here
            (``cuda`` without a GPU).
        DataError: ``batch`` is not ``(x, y)`` with ``x`` of at least 2 dimensions.
        ArchError: ``arch`` does not fit ``gm``'s space.

    Example:
        >>> import torch, gmgraph
        >>> from gmgraph.spaces import nb201
        >>> from gmgraph.nasbench import nb201 as table
        >>> big = gmgraph.trace(nb201.supernet(C=16, N=5))
        >>> x = torch.zeros(1, 3, 32, 32)
        >>> zero_cost(big, table.arch_of(1), "flops", (x, None), prune=False) / 1e6
        113.95137
        >>> table.flops(1)
        113.951
    """
    score = METRICS.get(metric)
    if score is None:
        raise ConfigError(f"unknown zero-cost metric {metric!r}; accepted: {', '.join(METRICS)}")
    x, y = _unpack(batch, metric)
    device = scoring_device(gm, device, x)  # a copy is scored: it goes where it is asked to
    x, y = to_device(x, device), to_device(y, device)
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        # Seed only the streams forked here: torch.manual_seed would also (lazily) reseed
        # every other GPU, which the fork does not restore.
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.default_generators[device.index].manual_seed(seed)
        net = derive(gm, arch, prune=prune).to(device)
        for p in net.parameters():
            p.requires_grad_(True)  # every parameter is scored, even ones frozen in gm
        with torch.enable_grad():  # the caller may be inside torch.no_grad()
            value = score(net, x, y, loss_fn or F.cross_entropy)
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


# ------------------------------------------------------------------ metrics


def _synflow(net: nn.Module, x: torch.Tensor, y, loss_fn) -> torch.Tensor:
    """Σ |θ ⊙ ∂R/∂θ| with |θ|, an all-ones input and R = Σ output, in float64."""
    net.double()  # a deep net of |θ| overflows float32 quickly
    _reset_batchnorm(net)
    net.eval()
    params = list(net.parameters())
    with torch.no_grad():
        for p in params:
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    grads = _grads(net(ones).sum(), params)
    return _sum(lambda p, g: (p * g).abs().sum(), params, grads)


def _grad_norm(net: nn.Module, x, y, loss_fn: LossFn) -> torch.Tensor:
    """Σ over parameter tensors of ‖∂L/∂θ‖₂."""
    params, grads = _loss_grads(net, x, y, loss_fn)
    return _sum(lambda p, g: g.norm(), params, grads)


def _snip(net: nn.Module, x, y, loss_fn: LossFn) -> torch.Tensor:
    """Σ |θ ⊙ ∂L/∂θ|."""
    params, grads = _loss_grads(net, x, y, loss_fn)
    return _sum(lambda p, g: (p * g).abs().sum(), params, grads)


def _grasp(net: nn.Module, x, y, loss_fn: LossFn) -> torch.Tensor:
    """-Σ θ ⊙ (H g), the Hessian-gradient product taken by double backward."""
    params, grads = _loss_grads(net, x, y, loss_fn, create_graph=True)
    # ∂(g · stop_grad(g))/∂θ = H g, because H is symmetric.
    z = _sum(lambda p, g: (g * g.detach()).sum(), params, grads)
    hg = _grads(z, params)
    return -_sum(lambda p, h: (p.detach() * h).sum(), params, hg)


def _naswot(net: fx.GraphModule, x: torch.Tensor, y, loss_fn) -> torch.Tensor:
    """log|det K| with K[i, j] = N_A - Hamming(c_i, c_j) over binary ReLU codes."""
    net.train()
    codes: list[torch.Tensor] = []
    with torch.no_grad():
        _ReluRecorder(net, codes).run(_like_params(net, x))
    n = x.shape[0]
    c = torch.cat([code.reshape(n, -1) for code in codes], dim=1) if codes else torch.zeros(n, 0, device=x.device)
    c = c.to(torch.float64)
    # Agreements = ones in both + zeros in both = N_A - Hamming; exact in float64.
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return torch.linalg.slogdet(kernel).logabsdet


def _params(net: nn.Module, x, y, loss_fn) -> float:
    """Number of parameters (each shared tensor once)."""
    return float(sum(p.numel() for p in net.parameters()))


def _flops(net: nn.Module, x: torch.Tensor, y, loss_fn) -> float:
    """Multiply-accumulates of Conv and Linear layers (+1 per output for a bias), one sample.

    This is NAS-Bench-201's ``flops`` convention: BatchNorm, activations,
    pooling and additions are not counted.
    """
    total = [0]

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        total[0] += _layer_macs(module, inputs[0], output)

    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
    handles = [m.register_forward_hook(count) for m in layers]
    try:
        net.eval()
        with torch.no_grad():
            net(_like_params(net, torch.zeros((1, *x.shape[1:]), device=x.device)))
    finally:
        for handle in handles:
            handle.remove()
    return float(total[0])


METRICS = registry.METRICS
"""The metric table (:data:`gmgraph.registry.METRICS`): name -> scoring function. Its keys are the
accepted values of ``metric`` (and of ``gmgraph search --method metric:<name>``); a new proxy is one
function and one entry."""


# ------------------------------------------------------------------ helpers


def _unpack(batch, metric: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if metric == "params" and batch is None:
        return None, None
    if not isinstance(batch, Sequence) or isinstance(batch, str) or len(batch) != 2:
        raise DataError(f"batch must be a pair (x, y) of tensors, got {type(batch).__name__}")
    x, y = batch
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise DataError(
            f"batch x must be a tensor of images N x C x H x W (at least 2 dimensions), got {_describe(x)}"
        )
    if metric not in DATA_FREE and not isinstance(y, torch.Tensor):
        raise DataError(f"metric {metric!r} needs integer labels y as a tensor, got {_describe(y)}")
    return x, y


def _describe(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


def _like_params(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` on the network's device and in its floating dtype."""
    p = next(net.parameters(), None)
    return x if p is None else x.to(device=p.device, dtype=p.dtype)


def _loss_grads(net: nn.Module, x, y, loss_fn: LossFn, create_graph: bool = False):
    net.train()
    params = list(net.parameters())
    out = net(_like_params(net, x))
    loss = loss_fn(out, y.to(out.device))
    return params, _grads(loss, params, create_graph=create_graph)


def _grads(out: torch.Tensor, params: list[nn.Parameter], create_graph: bool = False) -> list:
    """``∂out/∂θ`` for each θ, ``None`` where out does not depend on θ."""
    if not params or not out.requires_grad:
        return [None] * len(params)  # e.g. an architecture whose output ignores every weight
    return list(torch.autograd.grad(out, params, create_graph=create_graph, allow_unused=True))


def _sum(term: Callable, params: list, grads: list) -> torch.Tensor:
    """Σ term(θ, g) over parameters with a gradient; parameters without one add 0.

    Summed on the parameters' device in float64, in order: one read-back per score, not one per tensor.
    """
    total = torch.zeros((), dtype=torch.float64, device=params[0].device if params else None)
    for p, g in zip(params, grads):
        if g is not None:
            total = total + term(p, g).to(torch.float64)
    return total


def _reset_batchnorm(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            module.reset_running_stats()


def _layer_macs(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    bias = out.numel() if getattr(module, "bias", None) is not None else 0
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features + bias
    # weight[0] is in_channels/groups x kernel for a conv, out_channels/groups x kernel when
    # transposed: the MACs per output element (conv) or per input element (transposed).
    per_element = module.weight[0].numel()
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return x.numel() * per_element + bias
    return out.numel() * per_element + bias


_RELU_FUNCTIONS = (torch.relu, torch.relu_, F.relu, F.relu_)
_RELU_METHODS = ("relu", "relu_")


class _ReluRecorder(fx.Interpreter):
    """Runs a graph and keeps ``output > 0`` of every ReLU (module or functional)."""

    def __init__(self, module: fx.GraphModule, codes: list[torch.Tensor]):
        super().__init__(module)
        self.codes = codes

    def call_module(self, target, args, kwargs):
        # A forward hook sees ReLU modules nested inside leaf modules too.
        handles = [m.register_forward_hook(self._hook) for m in self.fetch_attr(target).modules()
                   if isinstance(m, nn.ReLU)]
        try:
            return super().call_module(target, args, kwargs)
        finally:
            for handle in handles:
                handle.remove()

    def call_function(self, target, args, kwargs):
        out = super().call_function(target, args, kwargs)
        if target in _RELU_FUNCTIONS:
            self.codes.append(out > 0)
        return out

    def call_method(self, target, args, kwargs):
        out = super().call_method(target, args, kwargs)
        if target in _RELU_METHODS:
            self.codes.append(out > 0)
        return out

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.codes.append(output > 0)
