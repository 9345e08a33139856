"""Subcommands of the ``gmgraph`` CLI; each module has ``add_parser(subparsers)``."""
