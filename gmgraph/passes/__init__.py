"""Graph passes: each takes a GraphModule and returns a new one.

>>> from gmgraph.passes import derive, restrict, split
"""

from gmgraph.passes.derive import derive
from gmgraph.passes.fuse import fuse
from gmgraph.passes.restrict import lineage_id, restrict, split

__all__ = ["derive", "fuse", "lineage_id", "restrict", "split"]
