"""Seeds derived from a run's seed and a name, so that each stream is fixed by what it is for.

A child sub-supernet, a scoring pass at some epoch, a leaf on some rank: each
draws from its own stream, seeded by ``derived_seed(run seed, its name)``, so
results never depend on the order things happen in (resumed runs and any
number of ranks decide the same)::

    >>> derived_seed(0, "root@10") == derived_seed(0, "root@10") != derived_seed(1, "root@10")
    True
    >>> 0 <= derived_seed(123, "1<-0=none+skip_connect") < 2**31
    True
"""

from __future__ import annotations

import zlib


def derived_seed(seed: int, key: str) -> int:
    """A seed in ``[0, 2**31)`` fixed by ``seed`` and ``key``."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)
