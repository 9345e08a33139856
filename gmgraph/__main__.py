"""``python -m gmgraph`` runs the command line (also how torchrun starts it)."""

import sys

from gmgraph.cli import main

sys.exit(main())
