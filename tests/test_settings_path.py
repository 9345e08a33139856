"""One settings path (issue 27): built once per run, the device resolved once, settings machine-free."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import gmgraph.device
from gmgraph.cli import main
from gmgraph.config import SearchSettings, TrainConfig
from gmgraph.errors import ConfigError
from tests.conftest import tiny_search


def test_settings_are_built_once_per_single_process_run(tmp_path, monkeypatch):
    built = []
    real = SearchSettings.__post_init__
    monkeypatch.setattr(SearchSettings, "__post_init__", lambda self: (built.append(1), real(self))[1])

    def stop(*args, **kwargs):
        raise ConfigError("stopped before any work")

    monkeypatch.setattr("gmgraph.search_job.run_search", stop)
    assert main(["search", "--epochs", "2", "--method", "gm", "--split-at", "1", "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert len(built) == 1


def test_settings_do_not_depend_on_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    settings = SearchSettings(train=TrainConfig(device="cuda", precision="fp16"))  # a GPU machine's settings
    assert (settings.train.device, settings.train.precision) == ("cuda", "fp16")
    with pytest.raises(ConfigError, match="device 'gpu' is not one of auto, cpu, cuda, cuda:N"):
        TrainConfig(device="gpu")  # the spelling is still the schema's to check
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        gmgraph.device.training_device(settings.train.device, settings.train.precision)  # the run's one check


def test_building_settings_imports_no_torch():
    code = ("import sys; from gmgraph.config import SearchSettings; SearchSettings(); "
            "print('torch' in sys.modules, 'gmgraph.device' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_run_resolves_its_training_device_once(tmp_path, monkeypatch):
    asked = []
    real = gmgraph.device.resolve_device

    def counting(name="auto"):
        if isinstance(name, str):
            asked.append(name)
        return real(name)

    monkeypatch.setattr(gmgraph.device, "resolve_device", counting)
    # a split (two children; GM scores 2 of the 6 labels) and a final training
    tiny_search(tmp_path, "digits", export="false", final_epochs=1, labels="1<-0,3<-2")
    assert asked.count("auto") == 1


def test_the_scores_place_their_work_by_one_rule():
    import importlib

    modules = [importlib.import_module(f"gmgraph.scores.{name}") for name in ("zero_cost", "gradient_matching")]
    assert all(m.scoring_device is gmgraph.device.scoring_device for m in modules)
    assert all(not hasattr(m, "resolve_device") for m in modules)  # neither resolves a device its own way



def test_the_schema_knows_the_bilevel_samplers_without_importing_them():
    from gmgraph.registry import BILEVEL, SAMPLERS

    assert BILEVEL == tuple(name for name in SAMPLERS if SAMPLERS[name].bilevel)
    from gmgraph.registry import ARCH_TRAINED

    assert ARCH_TRAINED == tuple(name for name in SAMPLERS if SAMPLERS[name].bilevel or SAMPLERS[name].joint)
    code = ("import sys; from gmgraph.config import SearchSettings, TrainConfig, SearchConfig, FewShotConfig; "
            "SearchSettings(train=TrainConfig(sampler='darts', latency_weight=1.0), search=SearchConfig("
            "strategy='argmax')); FewShotConfig(method='oneshot').splits(5); "
            "print(sorted(m for m in sys.modules if m.startswith('gmgraph.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['gmgraph.config', 'gmgraph.errors', 'gmgraph.registry', 'gmgraph.settings']"
