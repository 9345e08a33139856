"""gmgraph: few-shot neural architecture search as graph transformation on torch.fx.

>>> import gmgraph
>>> from gmgraph.spaces import nb201
>>> gm = gmgraph.trace(nb201.supernet(C=4, N=1))
>>> gmgraph.space_size(gm)
15625
"""

from gmgraph.choice import Choice
from gmgraph.graph import choices, sample, space, space_size, trace, use, use_weights

__version__ = "0.1.0"

__all__ = [
    "Choice",
    "__version__",
    "choices",
    "sample",
    "space",
    "space_size",
    "trace",
    "use",
    "use_weights",
]
