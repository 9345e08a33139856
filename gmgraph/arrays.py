"""Numbers from a caller, as a float64 numpy array: the one tensor -> numpy coercion of the analyses.

Scores and ranking statistics accept a torch tensor (on any device, with or
without grad), a numpy array or nested lists alike; torch is not imported::

    >>> as_float64([[1, 2], [3, 4]]).dtype
    dtype('float64')
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float64(values: Any) -> np.ndarray:
    """``values`` as a new float64 numpy array; a torch tensor is detached and copied to the CPU in float64 first.

    Raises:
        TypeError, ValueError: as ``np.array`` does for what is not numbers; callers name the argument.

    >>> import torch
    >>> as_float64(torch.ones(2, requires_grad=True))
    array([1., 1.])
    """
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch
        values = values.detach().cpu().double().numpy()
    return np.array(values, dtype=np.float64)
