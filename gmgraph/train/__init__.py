"""Supernet training: samplers, the epoch loop, checkpoints.

>>> from gmgraph.train import train_supernet, SAMPLERS
>>> SAMPLERS
('uniform', 'darts', 'gdas', 'pada')
"""

from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint
from gmgraph.train.loop import SupernetTrainer, TrainConfig, TrainResult, train_supernet
from gmgraph.train.samplers import SAMPLERS, Sampler, make_sampler

__all__ = [
    "SAMPLERS",
    "Sampler",
    "SupernetTrainer",
    "TrainConfig",
    "TrainResult",
    "load_checkpoint",
    "make_sampler",
    "save_checkpoint",
    "train_supernet",
]
