"""``python -m gmgraph`` runs the command line (also how torchrun starts it)."""

import sys

from gmgraph.cli import main

if __name__ == "__main__":  # importing this module (e.g. to collect its doctests) runs nothing
    sys.exit(main())
