"""NAS benchmarks: the shipped NAS-Bench-201 table (``nb201``) and zero-cost ranking against it (``rank``)."""

from gmgraph.nasbench import nb201, rank

__all__ = ["nb201", "rank"]
