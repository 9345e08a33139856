"""``gmgraph search --space ofa``: few-shot OFA end to end (GM split on a kernel label, progressive shrinking)."""

import json

import numpy as np
import onnxruntime as ort
import torch

from gmgraph.choice import Choice
from gmgraph.cli import main
from gmgraph.elastic import is_view
from gmgraph.run_folder import best_shape, build_network, read_best
from gmgraph.spaces import ofa

# The smallest run that still splits: 2 epochs (1 step each), a GM split before the second on one of two kernel
# labels, the sandwich sampler under a shrinking schedule (largest only, then every kernel), 1 evaluation (the
# chosen arch is exported and checked whichever it is).
# No report.html: the test reads report.json, best.pt and best.onnx, and the drawings cost half a second.
ARGS = ["search", "--space", "ofa", "--data", "digits", "--width", "4", "--cells", "1", "--epochs", "2",
        "--split-at", "1", "--method", "gm", "--labels", "s1.b1.kernel,s2.b1.kernel", "--rounds", "1",
        "--steps-per-epoch", "1", "--batch-size", "8", "--evaluations", "1", "--final-epochs", "0",
        "--bn-batches", "1", "--threads", "1", "--sampler", "sandwich", "--sandwich-random", "0",
        "--shrink", "full:1,kernel:1", "--html", "false", "--quiet"]


def test_a_few_shot_ofa_search_splits_a_kernel_label_and_exports_a_plain_network(tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    train = report["settings"]["train"]
    assert (report["settings"]["space"], train["sampler"], train["shrink"]) == ("ofa", "sandwich", "full:1,kernel:1")
    (split,) = report["split_tree"]
    assert split["label"] in ("s1.b1.kernel", "s2.b1.kernel") and len(split["groups"]) == 2
    assert sorted(op for group in split["groups"] for op in group) == ["k3", "k5", "k7"]
    assert len(report["leaves"]) == 2
    text = (out / "arch.txt").read_text().strip()
    assert text == ofa.to_str(report["arch"]) and ofa.to_str(ofa.parse(text)) == text
    # The schedule never unlocked depths or expansions: the search kept them at the largest values it trained.
    assert {op for label, op in report["arch"].items() if label.endswith(("depth", "expand"))} == {"d4", "e6"}
    # The chosen arch derives to a plain network: no Choice, no view; best.pt's weights fit it exactly.
    best = read_best(out / "best.pt")
    net = build_network(best_shape(best, out / "best.pt"), best["arch"])
    assert not any(isinstance(m, Choice) or is_view(m) for m in net.modules())
    net.load_state_dict(best["model"])
    assert sum(p.numel() for p in net.parameters()) == report["final"]["params"]
    # ONNX parity: onnxruntime on best.onnx computes what the torch network computes.
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(out / "best.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
