"""Build ``gmgraph/nasbench/nb201.csv.gz`` from the NAS-Bench-201 CSV.

The CSV is copied byte for byte (no column dropped, nothing rounded) after
being checked with :func:`gmgraph.nasbench.nb201.parse_table`, and compressed
with gzip level 9, mtime 0 and no file name, so the output depends only on the
input (and zlib)::

    python scripts/build_nb201_table.py                   # (re)write the packaged file
    python scripts/build_nb201_table.py --check           # exit 1 if it is out of date
    python scripts/build_nb201_table.py --source PATH.csv # another copy of the CSV

The source defaults to ``../shared/data/nb201.csv`` relative to the repository
root (the ``shared/`` folder beside the checkout); its provenance is in
``shared/data/README.md``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

from gmgraph.nasbench.nb201 import parse_table

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "nb201.csv"
OUTPUT = ROOT / "gmgraph" / "nasbench" / "nb201.csv.gz"


def build(source: Path) -> bytes:
    """The gzip bytes for ``source``, after checking it parses as the full table."""
    data = source.read_bytes()
    parse_table(io.StringIO(data.decode("utf-8"), newline=""))
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the packaged table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=SOURCE, help=f"CSV to pack (default {SOURCE})"
    )
    parser.add_argument(
        "--output", type=Path, default=OUTPUT, help=f"gzip to write (default {OUTPUT})"
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare with the existing output"
    )
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"no NAS-Bench-201 CSV at {args.source}; pass --source PATH")
    packed = build(args.source)
    if args.check:
        same = args.output.is_file() and args.output.read_bytes() == packed
        print(f"{args.output}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.output.write_bytes(packed)
    print(f"wrote {args.output} ({len(packed):,} bytes from {args.source.stat().st_size:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
