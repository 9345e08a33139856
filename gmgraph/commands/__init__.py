"""The subcommands of ``gmgraph``, one module each; this table names them without importing them.

Each module has ``add_parser(subparsers)`` and its handler ``run(args) -> exit code``, which
:func:`gmgraph.cli.main` calls.

>>> list(HELP)
['search', 'export', 'predict', 'rank', 'show', 'report']
"""

HELP = {
    "search": "few-shot NAS: train, split, search, report",
    "export": "export an architecture to ONNX, verified in onnxruntime",
    "predict": "run an exported ONNX model in onnxruntime; print accuracy and predictions",
    "rank": "rank NAS-Bench-201 architectures with a zero-cost metric; correlate with the table",
    "show": "show a search space, or one architecture of it",
    "report": "rebuild report.html of a finished search run",
}
"""Command name -> its one-line help (``gmgraph --help`` lists these without importing torch)."""
