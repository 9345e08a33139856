"""ProxylessNAS on CUDA: a steady-state step waits for the GPU once (the host copy of softmax(alpha)), no more.

Run where a GPU is lent: ``python -m pytest tests/gpu -q`` (skipped with "needs CUDA" elsewhere).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import gmgraph
from gmgraph import data
from gmgraph.spaces import nb201
from gmgraph.train import SupernetTrainer, TrainConfig

pytestmark = pytest.mark.cuda


def test_a_steady_state_step_waits_for_the_gpu_at_most_once():
    loaders = data.load("digits", batch_size=64, seed=0)
    torch.manual_seed(0)
    gm = gmgraph.trace(nb201.supernet(C=8, N=1, in_channels=1))
    trainer = SupernetTrainer(gm, loaders, TrainConfig(sampler="proxyless", device="cuda"), seed=0)
    train, val = list(loaders.train)[:5], list(loaders.val)[:5]
    trainer.train_step(*train[0], torch.arange(len(train[0][1])), val[0])  # the first step checks shapes
    batches = [(x.pin_memory(), y.pin_memory()) for x, y in train[1:4]]
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            losses = [trainer.train_step(x, y, torch.arange(len(y)).pin_memory(), v)[0]
                      for (x, y), v in zip(batches, val[1:])]
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= len(batches), [str(w.message) for w in syncs]  # the one copy of softmax(alpha) a step
    assert torch.isfinite(torch.stack(losses)).all()
