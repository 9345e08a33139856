"""Help and argument errors answer without importing torch (issue 15: under a second, not ~9 s).

One fresh interpreter runs every case in-process and reports which heavy modules got imported;
that list must stay empty (numpy, about 0.2 s, may load: predict reads arrays). Timing is not asserted here (benchmarks measure time): the import
is what costs seconds, so its absence is the property to hold.
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [
    ["--help"],
    *[[command, "--help"] for command in ("search", "export", "predict", "rank", "show", "report")],
    ["search", "--epochs", "0"],
    ["search", "--seed", "-5"],
    ["search", "--sampler", "bogus"],
    ["search", "--split-at", "40"],
    ["search", "--max-params", "-1"],
    ["search", "--objectives", "accuracy,params"],
    ["search", "--nope"],
    ["bogus"],
]

PROBE = """
import contextlib, io, json, sys
from gmgraph.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(main(argv))
        except SystemExit as exc:
            codes.append(exc.code)
heavy = sorted(m for m in ("torch", "onnx", "onnxruntime", "torchvision", "matplotlib", "scipy") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_and_argument_errors_import_no_heavy_module():
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(CASES)], capture_output=True, text=True,
                         check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["codes"] == [0] * 7 + [2] * 8
