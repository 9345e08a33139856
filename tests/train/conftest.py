import pytest
import torch

import gmgraph
from gmgraph import data
from gmgraph.spaces import nb201


@pytest.fixture(scope="session")
def digits():
    return data.load("digits", batch_size=64, seed=0)


def tiny_supernet(seed: int = 0):
    torch.manual_seed(seed)
    return gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))
