"""CUDA graphs for training steps whose graph never changes (weighted samplers: DARTS).

A weighted step runs every candidate of every Choice: thousands of small
kernels whose launch costs the host more than the GPU spends on them. A CUDA
graph records the forward and backward once and replays them as one launch.
:class:`GraphedStep` wraps a function ``fn(*inputs) -> outputs`` of static
shapes: it copies each call's inputs into static buffers and replays.

What it needs from the caller (the trainer arranges all of it):

* gradients are zeroed with ``set_to_none=False`` everywhere, because the
  graph writes into the same ``.grad`` tensors on every replay;
* the optimizer step, gradient clipping and the schedule run outside the graph;
* batches of another shape (a short last batch) run eagerly.

Capture warms ``fn`` up on a side stream (as CUDA requires), which runs it for
real: BatchNorm buffers are restored afterwards, so warming up leaves no trace.
Where capture fails (an op that cannot be captured, a host read inside ``fn``),
:func:`capture` warns once and returns None, and the caller trains eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

WARMUP = 3


class GraphedStep:
    """One captured ``fn``; call it with tensors shaped like the example inputs.

    Args:
        fn: the step (forward and backward); returns a tensor or a tuple of tensors.
        example: inputs to capture with (their shapes and dtypes are fixed from then on).
        module: its buffers (BatchNorm statistics) are restored after the warm-up.
        pool: a memory pool shared with another graph (``other.pool``).
    """

    def __init__(self, fn: Callable, example: Sequence[torch.Tensor], module: nn.Module, pool=None):
        self.static = [t.detach().clone() for t in example]
        saved = {name: b.detach().clone() for name, b in module.named_buffers()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                fn(*self.static)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.outputs = fn(*self.static)
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(saved[name])

    @property
    def pool(self):
        return self.graph.pool()

    def fits(self, *inputs: torch.Tensor) -> bool:
        """Whether ``inputs`` have the captured shapes and dtypes (a short last batch does not)."""
        return all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(inputs, self.static))

    def __call__(self, *inputs: torch.Tensor):
        for static, value in zip(self.static, inputs):
            static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.outputs


def capture(fn: Callable, example: Sequence[torch.Tensor], module: nn.Module, *, what: str,
            pool=None) -> GraphedStep | None:
    """A :class:`GraphedStep`, or None (with one warning) where this step cannot be captured."""
    try:
        return GraphedStep(fn, example, module, pool=pool)
    except Exception as exc:  # capture fails in many ways; every one means "run eagerly"
        torch.cuda.synchronize()
        warnings.warn(f"CUDA graph capture of the {what} failed ({type(exc).__name__}: {exc}); "
                      "training eagerly (pass --cuda-graphs false to skip the attempt)", stacklevel=2)
        return None
