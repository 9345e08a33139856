"""Settings reach their user by passing the config object, not by hand translations (issue 27): the few-shot
schedule's options reach the splitter, a TrainConfig reaches train_supernet's trainer; the small helpers that
had two copies (``plain``, the tensor -> numpy coercion) have one."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import gmgraph
from gmgraph import data
from gmgraph.arrays import as_float64
from gmgraph.config import FewShotConfig, TrainConfig
from gmgraph.errors import ConfigError
from gmgraph.settings import plain
from gmgraph.spaces import nb201
from gmgraph.train import fewshot
from gmgraph.train.fewshot import run_fewshot, train_supernet

PACKAGE = Path(__file__).resolve().parents[1] / "gmgraph"


@pytest.fixture(scope="module")
def digits():
    return data.load("digits", batch_size=64, seed=0)


def _supernet():
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=4, N=1, in_channels=1))


def test_every_schedule_option_reaches_the_splitter(digits, monkeypatch):
    seen = []

    def recording_splitter(request):
        seen.append(request)
        return None  # nothing to split: the run goes on as one supernet

    monkeypatch.setattr(fewshot, "get_splitter", lambda method: recording_splitter)
    config = FewShotConfig(method="gm", split_at=(1,), groups=3, balanced=False, rounds=3, distance="mse",
                           metric_children=2)
    run_fewshot(_supernet(), digits, config, TrainConfig(epochs=2, steps_per_epoch=1), seed=0, quiet=True)
    assert len(seen) == 1
    request = seen[0]
    got = {name: getattr(request, name) for name in ("groups", "balanced", "rounds", "distance", "metric_children")}
    assert got == {"groups": 3, "balanced": False, "rounds": 3, "distance": "mse", "metric_children": 2}
    assert request.labels and set(request.labels) <= set(gmgraph.space(request.gm))  # the node's, not the order


def test_train_supernet_takes_a_train_config_and_flags_replace_its_fields(digits):
    train = TrainConfig(epochs=1, steps_per_epoch=1, lr=0.05, momentum=0.5, weight_decay=1e-3)
    assert train_supernet(_supernet(), digits, train=train, quiet=True).trainer.config == train
    changed = train_supernet(_supernet(), digits, train=train, lr=0.2, quiet=True).trainer.config
    assert changed == TrainConfig(epochs=1, steps_per_epoch=1, lr=0.2, momentum=0.5, weight_decay=1e-3)
    default = train_supernet(_supernet(), digits, steps_per_epoch=1, epochs=1, quiet=True).trainer.config
    # no train: TrainConfig's defaults, with this function's own sampler (uniform; the CLI's is auto)
    assert default == TrainConfig(sampler="uniform", epochs=1, steps_per_epoch=1)
    with pytest.raises(ConfigError, match=r"^unknown training setting\(s\) \['lr_typo'\]; known: .*\blr\b"):
        train_supernet(_supernet(), digits, train=train, lr_typo=1, quiet=True)


def test_plain_makes_tuples_lists_and_mappings_dicts_at_any_depth():
    from types import MappingProxyType

    assert plain({"a": (1, [2, (3,)]), "b": MappingProxyType({"c": (4,)})}) == {"a": [1, [2, [3]]], "b": {"c": [4]}}


def test_as_float64_detaches_any_tensor_and_copies():
    values = torch.tensor([[1.5, 2.0]], dtype=torch.float16, requires_grad=True)
    out = as_float64(values)
    assert out.dtype == np.float64 and out.tolist() == [[1.5, 2.0]]
    source = np.zeros(2)
    assert as_float64(source) is not source


def _files_matching(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if re.search(pattern, p.read_text()))


def test_one_plain_and_one_tensor_to_numpy_coercion():
    assert _files_matching(r"def _?plain\b") == ["settings.py"]
    assert _files_matching(r"\.detach\(\)\.cpu\(\)\.double\(\)") == ["arrays.py"]
    assert _files_matching(r"_IMAGENET|0\.485, 0\.456, 0\.406") == ["preprocessing.py"]
