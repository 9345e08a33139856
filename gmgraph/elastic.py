"""Elastic candidates: ops that run part of ONE shared weight tensor (Once-for-All style).

A weight-entangled decision is an ordinary :class:`~gmgraph.choice.Choice`
whose candidates are *views* of shared modules: every candidate of an elastic
kernel runs the centre ``k x k`` of one ``K x K`` conv, every candidate of an
elastic width runs the first ``c`` channels. Because a view holds the shared
module as a submodule, ``nn.Module.parameters()`` lists the shared tensor once,
``deepcopy`` (and so ``restrict``/``split``) copies it once per copy, and
``space``/``use``/``sample``/``gradient_matching`` need nothing new::

    >>> import torch
    >>> from torch import nn
    >>> from gmgraph.choice import Choice
    >>> shared = nn.Conv2d(2, 4, 7, padding=3)
    >>> kernel = Choice({f"{k}x{k}": ConvView(shared, kernel=k) for k in (3, 5, 7)}, "kernel")
    >>> sum(p.numel() for p in kernel.parameters()) == sum(p.numel() for p in shared.parameters())
    True
    >>> kernel.activate("3x3")
    >>> kernel(torch.randn(1, 2, 8, 8)).shape
    torch.Size([1, 4, 8, 8])
    >>> kernel.ops["5x5"].materialize()           # what derive puts in the plain network
    Conv2d(2, 4, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))

A view implements ``materialize()``: a plain module holding a sliced *copy* of
the weights, computing what the view computes (see :func:`gmgraph.passes.derive`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmgraph.errors import SpaceError


def is_view(module: nn.Module) -> bool:
    """Whether ``module`` runs part of a shared module and can be materialised."""
    return callable(getattr(module, "materialize", None))


def plain_parameters(module: nn.Module) -> int:
    """Parameters ``module`` has once :func:`~gmgraph.passes.derive` made it a plain module.

    Views count only their slices (never the shared tensor); every other tensor counts once; a
    BatchNorm without affine parameters counts the weight and bias derive gives it.

    >>> shared = nn.Conv2d(2, 4, 7, padding=3)
    >>> plain_parameters(ConvView(shared, kernel=3)), plain_parameters(shared)
    (76, 396)
    """
    views = [m for m in module.modules() if is_view(m)]
    inside = {id(m) for view in views for m in view.modules()}
    total = sum(view.plain_parameters() for view in views)
    seen_in_views = {id(p) for view in views for p in view.parameters()}
    total += sum(p.numel() for p in module.parameters() if id(p) not in seen_in_views)
    return total + sum(2 * m.num_features for m in module.modules()
                       if id(m) not in inside and isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine)


class ConvView(nn.Module):
    """Runs part of a shared ``nn.Conv2d``: the centre ``kernel x kernel`` of its square kernel,
    its first ``out_channels`` filters and first ``in_channels`` inputs.

    Padding shrinks with the kernel (``padding - (K - k) // 2 * dilation``), so every kernel size
    keeps the output shape. A depthwise conv (``groups == in_channels == out_channels``) slices its
    channels together: give ``out_channels`` only.

    Args:
        conv: the shared conv (square odd kernel, zero padding); it stays a submodule of every view.
        kernel: odd size <= the conv's (default: the conv's own).
        out_channels, in_channels: how many leading channels run (default: all).
        transform: OFA's learned kernel transform (:class:`KernelTransform`), shared by every view of the
            conv: a smaller kernel is the transformed centre instead of the plain centre.

    Raises:
        SpaceError: a kernel, channel count or padding the shared conv cannot give.
    """

    def __init__(self, conv: nn.Conv2d, kernel: int | None = None,
                 out_channels: int | None = None, in_channels: int | None = None,
                 transform: KernelTransform | None = None):
        super().__init__()
        if not isinstance(conv, nn.Conv2d):
            raise SpaceError(f"ConvView needs an nn.Conv2d to share, got {type(conv).__name__}")
        size, other = conv.kernel_size
        if size != other or size % 2 == 0 or conv.padding_mode != "zeros" or conv.padding == "valid":
            raise SpaceError(f"ConvView needs a square odd kernel with zero padding; got {conv}")
        self.conv = conv
        self.kernel = size if kernel is None else kernel
        if not isinstance(self.kernel, int) or self.kernel % 2 == 0 or not 1 <= self.kernel <= size:
            raise SpaceError(f"kernel {kernel!r} must be odd and at most the shared conv's {size}")
        self.depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if conv.groups > 1 and not self.depthwise and (out_channels or in_channels):
            raise SpaceError(f"a grouped conv ({conv.groups} groups) can only change its kernel, not its widths")
        if self.depthwise and in_channels not in (None, out_channels):
            raise SpaceError("a depthwise view slices its channels together: give out_channels only")
        self.out_channels = _count(out_channels, conv.out_channels, "out_channels")
        self.in_channels = self.out_channels if self.depthwise else _count(in_channels, conv.in_channels,
                                                                           "in_channels")
        self.padding = self._padding()
        if transform is not None:
            transform.check(size, self.kernel)
        self.transform = transform

    def _padding(self) -> str | tuple[int, int]:
        if self.conv.padding == "same":
            return "same"
        trim = (self.conv.kernel_size[0] - self.kernel) // 2
        padding = tuple(p - trim * d for p, d in zip(self.conv.padding, self.conv.dilation))
        if min(padding) < 0:
            raise SpaceError(f"a {self.kernel}x{self.kernel} view of {self.conv} would need negative padding")
        return padding

    @property
    def groups(self) -> int:
        return self.out_channels if self.depthwise else self.conv.groups

    def weight(self) -> torch.Tensor:
        """The slice of the shared weight this view runs (a view of it, not a copy; with a transform,
        computed from it)."""
        start = (self.conv.kernel_size[0] - self.kernel) // 2
        inputs = 1 if self.depthwise else self.in_channels // self.conv.groups if self.conv.groups > 1 \
            else self.in_channels
        if self.transform is not None and self.kernel < self.conv.kernel_size[0]:
            return self.transform(self.conv.weight[:self.out_channels, :inputs], self.kernel)
        return self.conv.weight[:self.out_channels, :inputs, start:start + self.kernel, start:start + self.kernel]

    def bias(self) -> torch.Tensor | None:
        return None if self.conv.bias is None else self.conv.bias[:self.out_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias(), self.conv.stride, self.padding, self.conv.dilation,
                        self.groups)

    def plain_parameters(self) -> int:
        """Parameters of :meth:`materialize`'s conv, without making it."""
        return self.weight().numel() + (0 if self.conv.bias is None else self.out_channels)

    def materialize(self) -> nn.Conv2d:
        """A plain conv holding a copy of this view's slice of the weights."""
        w = self.conv.weight
        return _holding_slice(self, nn.Conv2d(self.in_channels, self.out_channels, self.kernel, self.conv.stride,
                                              self.padding, self.conv.dilation, self.groups,
                                              bias=self.conv.bias is not None, device=w.device, dtype=w.dtype))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, out_channels={self.out_channels}, in_channels={self.in_channels}"


class KernelTransform(nn.Module):
    """Once-for-All's kernel transform: one learned ``k^2 x k^2`` matrix per smaller size ``k`` of a shared conv.

    A ``k x k`` kernel is computed from the next larger size's: take its centre ``k x k``, flatten it,
    and multiply by that size's matrix; the same matrix serves every (output, input) channel pair of
    the conv. So the 3x3 of a 7x7 goes 7 -> 5 -> 3 through two matrices. The matrices start as the
    identity (the plain centre) and train with the network; give ONE transform to every view of the
    conv (:class:`ConvView` ``transform=``). ``derive`` folds them into the materialised kernel.

    >>> shared = nn.Conv2d(2, 4, 7, padding=3)
    >>> transform = KernelTransform(7, (3, 5))
    >>> sorted(name for name, _ in transform.named_parameters())
    ['matrices.3', 'matrices.5']
    >>> view = ConvView(shared, kernel=3, transform=transform)
    >>> torch.equal(view.weight(), shared.weight[:, :, 2:5, 2:5])    # the identity at the start
    True

    Args:
        size: the shared conv's kernel size.
        kernels: the smaller sizes views may ask for (odd, below ``size``).
    """

    def __init__(self, size: int, kernels):
        super().__init__()
        sizes = sorted(set(kernels))
        if not sizes or any(not isinstance(k, int) or k % 2 == 0 or not 1 <= k < size for k in sizes):
            raise SpaceError(f"a kernel transform needs odd sizes below the shared {size}, got {list(kernels)}")
        self.size = size
        self.sizes = sizes
        self.matrices = nn.ParameterDict({str(k): nn.Parameter(torch.eye(k * k)) for k in sizes})

    def reset_parameters(self) -> None:
        """Every matrix back to the identity, as built (``--leaf-restart weights``)."""
        with torch.no_grad():
            for matrix in self.matrices.values():
                matrix.copy_(torch.eye(matrix.shape[0]))

    def check(self, size: int, kernel: int) -> None:
        """Raise SpaceError unless this transform serves a ``size`` conv's ``kernel`` view."""
        if size != self.size or (kernel != size and kernel not in self.sizes):
            raise SpaceError(f"the kernel transform is for a {self.size}x{self.size} conv and sizes {self.sizes}; "
                             f"a {kernel}x{kernel} view of a {size}x{size} conv cannot use it")

    def forward(self, weight: torch.Tensor, kernel: int) -> torch.Tensor:
        """The ``kernel x kernel`` weight computed from ``weight`` (full size, channels already sliced)."""
        current, size = weight, self.size
        for k in reversed([k for k in self.sizes if k >= kernel]):
            start = (size - k) // 2
            centre = current[:, :, start:start + k, start:start + k]
            flat = centre.reshape(-1, k * k) @ self.matrices[str(k)].T
            current, size = flat.reshape(centre.shape), k
        return current


class NormView(nn.Module):
    """Runs the first ``channels`` channels of a shared BatchNorm (weights and running statistics).

    The view follows the shared BN's mode (``bn.training``), so code that switches BatchNorms alone
    (:func:`~gmgraph.search.evaluation.recalibrate_bn`) reaches the views too. In training mode the
    running statistics of those channels are updated in place in the shared buffers, as the full BN
    would update them.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, channels: int | None = None):
        super().__init__()
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise SpaceError(f"NormView needs a BatchNorm to share, got {type(bn).__name__}")
        self.bn = bn
        self.channels = _count(channels, bn.num_features, "channels")

    def _sliced(self, name: str) -> torch.Tensor | None:
        tensor = getattr(self.bn, name)
        return None if tensor is None else tensor[:self.channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        training = bn.training
        factor = 0.0 if bn.momentum is None else bn.momentum
        # The same bookkeeping as _BatchNorm.forward, on the shared counters.
        if training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                factor = 1.0 / float(bn.num_batches_tracked)
        use_batch = training or bn.running_mean is None
        tracked = not training or bn.track_running_stats
        return F.batch_norm(x, self._sliced("running_mean") if tracked else None,
                            self._sliced("running_var") if tracked else None,
                            self._sliced("weight"), self._sliced("bias"), use_batch, factor, bn.eps)

    def plain_parameters(self) -> int:
        """Parameters of the derived BN: weight and bias (derive makes every BN affine)."""
        return 2 * self.channels

    def materialize(self) -> nn.modules.batchnorm._BatchNorm:
        """A plain BN of ``channels`` features holding copies of this view's slices."""
        bn = self.bn
        plain = type(bn)(self.channels, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        plain.to(next(iter(bn.buffers()), torch.empty(0)).device)
        with torch.no_grad():
            for name, tensor in [*plain.named_parameters(), *plain.named_buffers()]:
                source = getattr(bn, name)
                tensor.copy_(source if name == "num_batches_tracked" else source[:self.channels])
        plain.train(bn.training)
        return plain

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class LinearView(nn.Module):
    """Runs part of a shared ``nn.Linear``: its first ``out_features`` outputs from its first ``in_features`` inputs.

    A classifier reading a stage whose width is elastic reads only the channels the stage produced:

    >>> fc = nn.Linear(8, 3)
    >>> view = LinearView(fc, in_features=4)
    >>> view(torch.randn(2, 4)).shape, view.materialize()
    (torch.Size([2, 3]), Linear(in_features=4, out_features=3, bias=True))

    Raises:
        SpaceError: not an ``nn.Linear``, or a feature count it does not have.
    """

    def __init__(self, linear: nn.Linear, in_features: int | None = None, out_features: int | None = None):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise SpaceError(f"LinearView needs an nn.Linear to share, got {type(linear).__name__}")
        self.linear = linear
        self.in_features = _count(in_features, linear.in_features, "in_features")
        self.out_features = _count(out_features, linear.out_features, "out_features")

    def weight(self) -> torch.Tensor:
        return self.linear.weight[:self.out_features, :self.in_features]

    def bias(self) -> torch.Tensor | None:
        return None if self.linear.bias is None else self.linear.bias[:self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias())

    def plain_parameters(self) -> int:
        """Parameters of :meth:`materialize`'s Linear, without making it."""
        return self.weight().numel() + (0 if self.linear.bias is None else self.out_features)

    def materialize(self) -> nn.Linear:
        """A plain Linear holding a copy of this view's slice of the weights."""
        w = self.linear.weight
        return _holding_slice(self, nn.Linear(self.in_features, self.out_features, bias=self.linear.bias is not None,
                                              device=w.device, dtype=w.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _holding_slice(view: nn.Module, plain: nn.Module) -> nn.Module:
    """``plain`` (a fresh conv or Linear of ``view``'s shape) holding copies of the view's weight and bias slices,
    in the view's train/eval mode: what :meth:`ConvView.materialize` and :meth:`LinearView.materialize` give."""
    with torch.no_grad():
        plain.weight.copy_(view.weight())
        if plain.bias is not None:
            plain.bias.copy_(view.bias())
    plain.train(view.training)
    return plain


def _count(value: int | None, full: int, name: str) -> int:
    if value is None:
        return full
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= full:
        raise SpaceError(f"{name} must be an integer from 1 to {full} (the shared module's), got {value!r}")
    return value
