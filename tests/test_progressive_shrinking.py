"""Progressive shrinking: the values each elastic label may take, phase by phase, applied through the sampler."""

import pytest

import gmgraph
from gmgraph.config import SearchSettings, TrainConfig, parse_shrink
from gmgraph.errors import ConfigError
from gmgraph.sampler_table import make_sampler
from gmgraph.settings import from_mapping
from gmgraph.shrinking import ShrinkSchedule
from tests.test_sandwich import elastic_graph, loaders, record_paths

FULL = {"kernel": ("5x5",), "width": ("w8",), "depth": ("d3",), "op": ("skip", "conv")}
EVERYTHING = {"kernel": ("3x3", "5x5", "1x1"), "width": ("w4", "w8", "w6"), "depth": ("d2", "d3", "d1"),
              "op": ("skip", "conv")}


def test_the_schedule_allows_exactly_each_epochs_value_sets():
    schedule = ShrinkSchedule("full:1,kernel:1,depth:1+1,width:2", gmgraph.graph.choices(elastic_graph()))
    expected = [
        FULL,
        FULL | {"kernel": EVERYTHING["kernel"]},
        FULL | {"kernel": EVERYTHING["kernel"], "depth": ("d2", "d3")},  # stage 1 of 2: one of two smaller depths
        FULL | {"kernel": EVERYTHING["kernel"], "depth": EVERYTHING["depth"]},
        EVERYTHING,
        EVERYTHING,
        EVERYTHING,  # after the schedule: everything it reached stays allowed
    ]
    assert [schedule.allowed(epoch) for epoch in range(7)] == expected


def test_kinds_the_schedule_never_names_keep_their_largest_value():
    schedule = ShrinkSchedule("depth:1", gmgraph.graph.choices(elastic_graph()))
    assert schedule.allowed(5) == FULL | {"depth": EVERYTHING["depth"]}


def test_stages_unlock_the_smaller_values_in_shares():
    schedule = ShrinkSchedule("kernel:1+1+1+1", gmgraph.graph.choices(elastic_graph()))
    assert [len(schedule.allowed(e)["kernel"]) for e in range(4)] == [2, 2, 3, 3]  # ceil(2 * i / 4) smaller ones


def test_uniform_and_sandwich_draw_only_allowed_values_epoch_by_epoch():
    from gmgraph.train.loop import SupernetTrainer

    for sampler in ("uniform", "sandwich"):
        gm = elastic_graph()
        paths = record_paths(gm)
        config = TrainConfig(sampler=sampler, epochs=4, steps_per_epoch=2, device="cpu", shrink="full:1,kernel:1,width:1")
        trainer = SupernetTrainer(gm, loaders(), config, seed=0)
        allowed = ShrinkSchedule(config.shrink, gmgraph.graph.choices(gm))
        for epoch in range(4):
            del paths[:]
            trainer.train_epoch(quiet=True)
            assert paths, "the epoch ran no path"
            for path in paths:
                assert all(op in allowed.allowed(epoch)[label] for label, op in path.items()), (epoch, path)
        if sampler == "sandwich":  # in the last epoch: the smallest allowed kernel and width, depth still full
            assert paths[1] == {"kernel": "1x1", "width": "w4", "depth": "d3", "op": "skip"}


def test_a_resumed_or_forked_sampler_keeps_the_epochs_sets():
    gm = elastic_graph()
    sampler = make_sampler("uniform", gm, shrink="full:1,kernel:2")
    sampler.start_epoch(1, 3)
    again = make_sampler("uniform", gm, shrink="full:1,kernel:2")
    again.load_state_dict(sampler.state_dict())
    assert again.allowed["kernel"] == EVERYTHING["kernel"]
    child = gmgraph.passes.restrict(gm, {"kernel": ("3x3", "1x1")})
    assert sampler.fork(child, seed=1).allowed["kernel"] == ("3x3", "1x1")
    fresh = make_sampler("uniform", gm, shrink="full:1,kernel:2")
    assert fresh.fork(child, seed=1).allowed["kernel"] == ("3x3",)  # the child's own largest


def test_the_setting_is_a_flag_checked_when_built():
    settings = from_mapping(SearchSettings, {"epochs": 6, "method": "gm", "sampler": "uniform", "split_at": [3],
                                             "shrink": "full:2,kernel:2+2"})
    assert settings.train.shrink == "full:2,kernel:2+2"
    assert settings.train.sampler_kwargs() == {"shrink": "full:2,kernel:2+2"}
    final = from_mapping(SearchSettings, {"sampler": "sandwich", "shrink": "kernel:1", "distill": 0.5, "epochs": 2,
                                          "method": "gm", "split_at": [1], "final_epochs": 1}).final_train()
    assert (final.sampler, final.shrink, final.distill) == ("uniform", None, 1.0)
    assert parse_shrink("kernel:10,depth:5+5,width:5+5") == (("kernel", (10,)), ("depth", (5, 5)), ("width", (5, 5)))


@pytest.mark.parametrize(("config", "message"), [
    ({"shrink": "kernel:3", "epochs": 2}, "lasts 3 epochs, more than the 2"),
    ({"shrink": "kernel:1", "sampler": "darts"}, "not 'darts'"),
    ({"shrink": "channels:1"}, "unknown shrink phase 'channels'"),
    ({"shrink": "kernel:0"}, "positive epochs"),
    ({"shrink": "kernel"}, "<phase>:<epochs>"),
    ({"shrink": ""}, "shrink must be phases"),
])
def test_bad_schedules_are_refused(config, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**config)
