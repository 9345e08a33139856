"""Tabular NAS benchmarks shipped with gmgraph (``gmgraph.nasbench.nb201``)."""

from gmgraph.nasbench import nb201

__all__ = ["nb201"]
