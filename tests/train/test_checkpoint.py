import pytest
import torch

from gmgraph.errors import CheckpointError
from gmgraph.files import atomic_write
from gmgraph.train.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_with_weights_only(tmp_path):
    state = {"epoch": 2, "model": {"w": torch.arange(3.0)}, "space": {"a": ["x", "y"]}}
    path = save_checkpoint(state, tmp_path / "sub" / "last.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 2 and torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert load_checkpoint(path)["space"] == {"a": ["x", "y"]}


def test_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.ones(1)}, foreign)
    with pytest.raises(CheckpointError, match="not a gmgraph checkpoint"):
        load_checkpoint(foreign)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="cannot write"):
        save_checkpoint({"epoch": 1}, blocker / "last.pt")
