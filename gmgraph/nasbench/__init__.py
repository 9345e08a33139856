"""NAS benchmarks: the shipped NAS-Bench-201 table (``nb201``).

Ranking a zero-cost proxy against it (``gmgraph rank``) is a job of the runs layer: :mod:`gmgraph.rank_job`.
"""

from gmgraph.nasbench import nb201

__all__ = ["nb201"]
