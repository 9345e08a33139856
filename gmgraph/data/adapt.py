"""Resizing and recolouring image tensors, the ``image_size`` and ``channels`` options of ``load``::

    >>> import torch
    >>> Adapt(4, 3)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 3, 4, 4])
    >>> Adapt(None, None).is_noop
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmgraph.errors import DataError


class Adapt:
    """Resize and recolour image tensors, ``(C, H, W)`` or ``(N, C, H, W)``.

    A class, not a lambda, so transforms stay picklable for worker processes.
    """

    def __init__(self, image_size: int | None, channels: int | None):
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0
        ):
            raise DataError(f"image_size must be None or a positive integer, got {image_size!r}")
        if channels not in (None, 1, 3):
            raise DataError(f"channels must be None, 1 or 3, got {channels!r}")
        self.image_size = image_size
        self.channels = channels

    @property
    def is_noop(self) -> bool:
        return self.image_size is None and self.channels is None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        batch = x if x.dim() == 4 else x.unsqueeze(0)
        s = self.image_size
        if s is not None and tuple(batch.shape[-2:]) != (s, s):
            # antialias matters only when shrinking; it keeps downsampling smooth
            batch = F.interpolate(
                batch, size=(s, s), mode="bilinear", align_corners=False, antialias=True
            )
        c = self.channels
        if c is not None and batch.shape[1] != c:
            batch = batch.repeat(1, c, 1, 1) if batch.shape[1] == 1 else batch.mean(1, True)
        return batch if x.dim() == 4 else batch[0]
