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


class Killed(Exception):
    """Stands for a kill in the middle of a run."""


def straight_and_resumed(digits, config, train, tmp_path, *, kill_at: int, on_epoch=None, straight=None):
    """A few-shot run straight through, and the same run killed after epoch ``kill_at`` and resumed from its
    checkpoint in a process whose global RNG has moved on; ``on_epoch`` sees the resumed run's epochs.
    ``straight``: that straight run's result when a test already has it (``run_fewshot`` of ``tiny_supernet()``
    with the same ``config`` and ``train``, without a checkpoint)."""
    from gmgraph.train import run_fewshot

    if straight is None:
        straight = run_fewshot(tiny_supernet(), digits, config, train, quiet=True)

    def kill(epoch, _):
        if epoch == kill_at:
            raise Killed

    checkpoint = tmp_path / "ck.pt"
    with pytest.raises(Killed):
        run_fewshot(tiny_supernet(), digits, config, train, quiet=True, checkpoint=checkpoint, on_epoch=kill)
    torch.manual_seed(12345)  # a resumed process starts with some other global RNG state
    resumed = run_fewshot(tiny_supernet(), digits, config, train, quiet=True, checkpoint=checkpoint, resume=True,
                          on_epoch=on_epoch)
    return straight, resumed
