"""The final training (the chosen arch from scratch) takes the [train] settings, epochs from --final-epochs.

Every optimiser flag the user gives must reach both trainings it names: the supernet's and the final one.
"""

from __future__ import annotations

import json

import pytest

from gmgraph.config import SearchSettings, TrainConfig
from gmgraph.settings import as_dict
from gmgraph.train.loop import SupernetTrainer
from tests.conftest import tiny_search

# Every [train] setting that acts on a plain network's training, each given a value other than its default.
GIVEN = {"lr": 0.07, "lr_min": 0.002, "momentum": 0.5, "nesterov": False, "weight_decay": 0.001,
         "grad_clip": 2.0, "steps_per_epoch": 2}


def test_final_train_is_the_train_settings_with_final_epochs():
    settings = SearchSettings(final_epochs=3, train=TrainConfig(sampler="darts", epochs=40, latency_weight=0.5,
                                                                **GIVEN))
    final = settings.final_train()
    assert final.epochs == 3
    assert {name: getattr(final, name) for name in GIVEN} == GIVEN
    # a derived network has no choice left: what acts on architecture parameters is off
    assert (final.sampler, final.sampler_options, final.latency_weight) == ("uniform", {}, 0.0)
    assert as_dict(final) | {"epochs": 40, "sampler": "darts", "latency_weight": 0.5} == as_dict(settings.train)


def test_no_final_training_has_no_final_settings():
    assert SearchSettings(final_epochs=0).final_train() is None


@pytest.fixture
def trainers(monkeypatch) -> list[SupernetTrainer]:
    """Every SupernetTrainer built while the test runs, in order."""
    built: list[SupernetTrainer] = []
    original = SupernetTrainer.__init__

    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(SupernetTrainer, "__init__", record)
    return built


def test_flags_reach_the_supernet_and_the_final_training(tmp_path, trainers, monkeypatch):
    tiny_search(tmp_path / "run", "digits", export="false", epochs=2, final_epochs=1, **GIVEN)
    supernet = [t for t in trainers if t._space]  # the root and its few-shot children
    final = [t for t in trainers if not t._space]  # the derived network: no Choice left
    assert supernet and len(final) == 1
    for trainer, epochs in [*((t, 2) for t in supernet), (final[0], 1)]:
        config = trainer.config
        assert {name: getattr(config, name) for name in GIVEN} == GIVEN
        assert config.epochs == epochs
        group = trainer.optimizer.param_groups[0]  # what the optimiser and schedule were really built with
        assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.5, False, 0.001)
        assert trainer.scheduler.eta_min == 0.002
    assert final[0].history[-1]["epoch"] == 1
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    recorded = report["final"]["train_settings"]
    assert recorded == as_dict(final[0].config)
    assert {name: recorded[name] for name in GIVEN} == GIVEN and recorded["epochs"] == 1

