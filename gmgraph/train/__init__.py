"""Supernet training: one engine (:class:`SupernetTrainer`), the few-shot driver, checkpoints.

>>> from gmgraph.train import TrainConfig, run_fewshot, train_supernet
>>> TrainConfig().sampler
'uniform'
"""

from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from gmgraph.train.fewshot import (
    FewShotConfig,
    FewShotResult,
    SubSupernet,
    TrainResult,
    locate,
    run_fewshot,
    train_supernet,
)
from gmgraph.train.loop import SupernetTrainer, TrainConfig

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
