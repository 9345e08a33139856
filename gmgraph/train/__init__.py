"""Supernet training: one engine (:class:`SupernetTrainer`), the few-shot driver, checkpoints.

>>> from gmgraph.train import TrainConfig, run_fewshot, train_supernet
>>> TrainConfig().sampler   # PA&DA where it can run, else uniform (TrainConfig.resolved_sampler)
'auto'

The settings classes live in :mod:`gmgraph.config` (their one home); they are re-exported here because
the README's training example imports them with the trainer.
"""

from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from gmgraph.train.fewshot import (
    FewShotResult,
    SubSupernet,
    TrainResult,
    locate,
    run_fewshot,
    train_supernet,
)
from gmgraph.train.loop import SupernetTrainer

__all__ = [
    "FewShotConfig",
    "FewShotResult",
    "SubSupernet",
    "SupernetTrainer",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "locate",
    "run_fewshot",
    "save_checkpoint",
    "train_supernet",
]
