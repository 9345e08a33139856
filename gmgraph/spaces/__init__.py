"""Ready search spaces (``gmgraph.spaces.nb201``, ...)."""

from gmgraph.spaces import nb201

__all__ = ["nb201"]
