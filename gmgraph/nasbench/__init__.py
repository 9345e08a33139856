"""NAS benchmarks: the shipped NAS-Bench-201 table (``nb201``), local ground truth
trained here (``local``) and zero-cost ranking against the table (``rank``)."""

from gmgraph.nasbench import local, nb201, rank

__all__ = ["local", "nb201", "rank"]
