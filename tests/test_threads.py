"""`gmgraph search --threads N` (issue 32, item 12): torch's threads for the run, recorded in report.json;
without it torch's default stays."""

from __future__ import annotations

import json

import pytest
import torch

from gmgraph.config import SearchSettings
from gmgraph.device import torch_threads
from gmgraph.errors import ConfigError
from gmgraph.settings import from_mapping
from gmgraph.train.loop import SupernetTrainer
from tests.conftest import tiny_search


@pytest.fixture
def two_threads():
    """Torch at 2 threads for the test (the suite runs at 1), then back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_threads_is_a_checked_setting():
    assert SearchSettings().threads is None  # torch's default, as before
    assert from_mapping(SearchSettings, {"threads": 3}).threads == 3
    with pytest.raises(ConfigError, match="threads must be a positive integer, got 0"):
        SearchSettings(threads=0)
    assert "threads" not in SearchSettings(threads=2).shaping()  # a resume may use another count


def test_torch_threads_sets_and_gives_back(two_threads):
    with torch_threads(None) as n:
        assert n == torch.get_num_threads() == 2  # None leaves torch's setting
    with torch_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_the_run_trains_with_the_threads_given_and_records_them(tmp_path, monkeypatch, two_threads):
    seen = []
    original = SupernetTrainer.train_epoch

    def record(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SupernetTrainer, "train_epoch", record)
    tiny_search(tmp_path / "run", "digits", export="false", threads=1, final_epochs=1)
    assert seen and set(seen) == {1}  # supernet and final training alike
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["threads"] == 1 and report["hardware"]["threads"] == 1
    assert torch.get_num_threads() == 2  # the caller's count came back
