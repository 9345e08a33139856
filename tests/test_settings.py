"""The one settings schema: flags, config keys, relaunch flags and records all come from the dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from gmgraph.errors import ConfigError
from gmgraph.search import SearchConfig
from gmgraph.search_job import SearchSettings
from gmgraph.settings import add_flags, as_dict, flags, from_flags, from_mapping, to_flags
from gmgraph.train import FewShotConfig, TrainConfig


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, SearchSettings)
    return parser.parse_args(argv)


def test_every_field_of_every_nested_config_is_one_flag():
    names = [f.name for f in flags(SearchSettings)]
    assert len(names) == len(set(names))
    expected = {f.name for f in dataclasses.fields(SearchSettings) if not f.metadata.get("nested")}
    for cls in (TrainConfig, FewShotConfig, SearchConfig):
        expected |= {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    expected = {n.replace("_", "-") for n in expected} - {"strategy"} | {"search"}
    assert set(names) == expected
    assert "sampler-options" not in names  # a Python-only field


def test_defaults_come_from_the_fields_and_show_in_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, SearchSettings)
    text = " ".join(parser.format_help().split())
    assert "(default 30)" in text and "(default 10,20)" in text and "(default evolution)" in text
    assert from_flags(SearchSettings, parse([])) == SearchSettings()


def test_flags_build_nested_settings_and_win_over_the_config_file():
    args = parse(["--epochs", "4", "--method", "gm", "--split-at", "1,3", "--sampler", "darts", "--search", "argmax",
                  "--grad-clip", "none", "--balanced", "false"])
    s = from_flags(SearchSettings, args, {"epochs": 8, "lr": 0.2, "train": {"momentum": 0.5}})
    assert s.train == TrainConfig(sampler="darts", epochs=4, lr=0.2, momentum=0.5, grad_clip=None)
    assert s.fewshot.split_at == (1, 3) and s.fewshot.balanced is False
    assert s.search.strategy == "argmax"


def test_to_flags_rebuilds_the_same_settings():
    s = SearchSettings(data_root="/data", seed=3, train=TrainConfig(grad_clip=None, steps_per_epoch=2),
                       fewshot=FewShotConfig(method="exhaustive", split_at=(5,), labels=("1<-0", "2<-0")))
    assert from_flags(SearchSettings, parse(to_flags(s))) == s


@pytest.mark.parametrize("values, message", [
    ({"split-at": 10}, "split-at must be a list"),
    ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
    ({"balanced": "yes"}, "balanced must be true or false"),
    ({"html": "no"}, "html must be true or false"),
    ({"sampler": 3}, "sampler must be text"),
    ({"learning-rate": 0.1}, "unknown setting 'learning-rate'; known settings:"),
    ({"train": {"lr": -1}}, "lr must be positive, got -1"),
    ({"search": "argmax"}, "use --sampler darts or gdas"),
    ({"epochs": 10, "method": "gm", "split-at": [10]}, "split epochs must be between 1 and 9"),
    ({"method": "magic"}, "unknown method 'magic'"),
    ({"data": "imagenet"}, "unknown dataset 'imagenet'"),
])
def test_bad_config_values_are_one_clear_error(values, message):
    with pytest.raises(ConfigError, match=message):
        from_mapping(SearchSettings, values)


def test_bad_flag_values_are_refused_by_the_parser():
    with pytest.raises(argparse.ArgumentError, match="epochs must be an integer"):
        parse(["--epochs", "many"])


def test_settings_are_frozen_and_recorded_as_plain_data():
    s = SearchSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1
    record = as_dict(s)
    assert record["train"]["epochs"] == 30 and record["fewshot"]["split_at"] == [10, 20]
    assert record["search"] == {"strategy": "evolution", "evaluations": 100, "bn_batches": 4,
                                "objectives": ["accuracy"], "max_params": None, "max_flops": None,
                                "max_latency_ms": None}


def test_tables_take_field_names_or_flag_names():
    a = from_mapping(SearchSettings, {"search": {"strategy": "random", "bn_batches": 2}})
    b = from_mapping(SearchSettings, {"search": {"search": "random", "bn-batches": 2}})
    assert a == b and a.search == SearchConfig(strategy="random", bn_batches=2)


def test_the_supernet_size_follows_the_data_unless_given():
    default = SearchSettings()
    assert (default.data, default.width, default.cells) == ("digits16", 8, 1)  # the ground truth's size
    assert (SearchSettings(data="cifar10").width, SearchSettings(data="cifar10").cells) == (16, 5)  # NB201's
    given = from_flags(SearchSettings, parse(["--data", " Clutter16", "--width", "12"]))
    assert (given.data, given.width, given.cells) == ("clutter16", 12, 1)  # one spelling is recorded
    assert from_flags(SearchSettings, parse(to_flags(given))) == given  # what a distributed worker rebuilds
    assert from_flags(SearchSettings, parse(["--data", "digits", "--cells", "none"])).cells == 5
