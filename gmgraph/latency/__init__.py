"""Latency on the deployment runtime: measure a network, predict any architecture of a space.

>>> import torch, tempfile, gmgraph
>>> from torch import nn
>>> from gmgraph.choice import Choice
>>> gm = gmgraph.trace(nn.Sequential(nn.Linear(8, 8), Choice({"relu": nn.ReLU(), "fc": nn.Linear(8, 8)}, "act")))
>>> measure(nn.Linear(8, 8), (8,), runs=5, max_spread=10.0).runtime
'onnxruntime'
>>> table = LatencyTable.build(gm, (8,), cache_dir=tempfile.mkdtemp(), calibration=2, runs=5, quiet=True)
>>> table.predict({"act": "fc"}) > 0
True
>>> alphas = {"act": torch.zeros(2, requires_grad=True)}
>>> expected_latency(table, alphas).backward()
>>> alphas["act"].grad.shape
torch.Size([2])

See docs/latency.md.
"""

from gmgraph.latency.expected import expected_latency
from gmgraph.latency.measure import LatencyError, Timing, measure, measure_model
from gmgraph.latency.runtimes import RUNTIMES
from gmgraph.latency.table import LatencyTable

__all__ = ["RUNTIMES", "LatencyError", "LatencyTable", "Timing", "expected_latency", "measure", "measure_model"]
