"""gmgraph: few-shot neural architecture search as graph transformation on torch.fx.

>>> import gmgraph
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
>>> gmgraph.space_size(gm)
15625
"""

import importlib

__version__ = "0.1.0"

_WHERE = {"Choice": "gmgraph.choice", "InputChoice": "gmgraph.input_choice", "Repeat": "gmgraph.input_choice",
          **{name: "gmgraph.graph" for name in
                                         ("choices", "sample", "space", "space_size", "trace", "use", "use_weights")}}


def __getattr__(name: str):
    # Loaded on first use, so that `gmgraph --help` (and anything else that needs no tensors) skips torch.
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gmgraph' has no attribute {name!r}")

__all__ = [
    "Choice",
    "InputChoice",
    "Repeat",
    "__version__",
    "choices",
    "sample",
    "space",
    "space_size",
    "trace",
    "use",
    "use_weights",
]
