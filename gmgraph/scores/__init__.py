"""Scores are analyses, not rewrites: they return plain data (tensors, floats, partitions).

>>> from gmgraph.scores import best_partition
>>> best_partition([[0, 0, 2], [0, 0, 2], [2, 2, 0]], groups=2, balanced=False)[0]
((0, 1), (2,))
"""

from gmgraph.scores.gradient_matching import gradient_matching
from gmgraph.scores.metric_split import exhaustive_partition, metric_distances, metric_split, random_partition
from gmgraph.scores.partition import best_partition, name_groups, partitions
from gmgraph.scores.splitters import SPLITTERS, SplitRequest, get_splitter, method_names
from gmgraph.scores.zero_cost import METRICS, zero_cost

__all__ = [
    "METRICS",
    "SPLITTERS",
    "SplitRequest",
    "best_partition",
    "exhaustive_partition",
    "get_splitter",
    "gradient_matching",
    "metric_distances",
    "method_names",
    "metric_split",
    "name_groups",
    "partitions",
    "random_partition",
    "zero_cost",
]
