"""benchmarks/groundtruth_pilot.py: retrains a ground truth's archs with other recipes and compares their seed noise."""

from __future__ import annotations

import json
import math

import groundtruth_lib as local
import groundtruth_pilot as pilot
import pytest
import torch

from gmgraph.errors import ConfigError

ACCURACY = {0: [0.10, 0.30, 0.40, 0.50, 0.60, 0.70], 1: [0.10, 0.35, 0.38, 0.52, 0.66, 0.69],
            2: [0.10, 0.28, 0.45, 0.49, 0.61, 0.75]}
"""seed -> accuracy of the six archs of the hand-made ground truth (the first one at chance)."""


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    """A hand-made digits16 ground truth of six archs x three seeds, with a tiny schedule in its side file."""
    root = tmp_path_factory.mktemp("pilot")
    archs = local.sample_archs(6)
    rows = [{"arch": a, "seed": s, "val": acc, "test": acc, "params": 1, "seconds": 1.0, "val_loss": 1.0}
            for s, accs in ACCURACY.items() for a, acc in zip(archs, accs)]
    path = root / "gt.csv"
    local.write_rows(path, rows)
    schedule = {"C": 2, "N": 1, "epochs": 1, "batch_size": 256, "lr": 0.05, "momentum": 0.9,
                "weight_decay": 5e-4, "grad_clip": 5.0}
    side = {"dataset": "digits16", "schedule": schedule, "sizes": {"train": 2154, "val": 1440, "test": 1440}}
    path.with_suffix(".json").write_text(json.dumps(side))
    return {"path": path, "archs": archs, "root": root}


def test_the_subset_is_every_nth_alive_arch_by_accuracy(truth):
    archs = truth["archs"]  # accuracy rises with the index; archs[0] sits at chance
    assert pilot.pilot_archs(truth["path"], 2, [0]) == [archs[1], archs[3], archs[5]]
    assert pilot.pilot_archs(truth["path"], 2, [0, 1]) == archs[1:]


@pytest.fixture(scope="module")
def pilot_run(truth):
    """One pilot run on one worker, for the test of its report and for the test that a second worker gives its rows."""
    argv = ["--groundtruth", str(truth["path"]), "--every", "2", "--offsets", "0", "--seeds", "0", "1",
            "--out-dir", str(truth["root"] / "rows"), "--report", str(truth["root"] / "pilot.md"), "--n-boot", "50",
            "--recipes", "fresh", "wd5e-3"]  # one epoch each (epochs40 would train 40x longer; its schedule is tested below)
    fresh, train_row = [], pilot.train_row  # each row of recipe fresh as trained, unrounded (the CSV keeps 6 decimals)

    def kept(arch, seed, recipe, settings, loaders):
        row = train_row(arch, seed, recipe, settings, loaders)
        if recipe is pilot.RECIPES["fresh"]:
            fresh.append(row)
        return row

    threads = torch.get_num_threads()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pilot, "train_row", kept)
            return argv, pilot.main(argv), fresh
    finally:
        torch.set_num_threads(threads)  # main() trains on one thread, as its workers do


def test_the_pilot_trains_each_recipe_once_and_reports_against_the_base(truth, pilot_run):
    argv, stats, _ = pilot_run
    assert set(stats) == {"base", "fresh", "wd5e-3"}
    for name in ("fresh", "wd5e-3"):
        rows = local.read_rows(truth["root"] / "rows" / f"{name}.csv")
        assert len(rows) == 3 * 2 and all(0.0 <= r["val"] <= 1.0 for r in rows)
        d = stats[name]["delta"]
        assert d["archs"] == 3 and d["low"] <= d["delta"] <= d["high"]
    # the base is the ground truth's own rows: three archs, the seeds asked for (0 and 1 of 0-2), accuracies as written
    base = local.per_seed(truth["root"] / "rows" / "base.csv")
    assert base[truth["archs"][3]] == pytest.approx({s: ACCURACY[s][3] for s in range(2)})
    fresh = {(r["arch"], r["seed"]): r["val"] for r in local.read_rows(truth["root"] / "rows" / "fresh.csv")}
    decayed = {(r["arch"], r["seed"]): r["val"] for r in local.read_rows(truth["root"] / "rows" / "wd5e-3.csv")}
    assert fresh != decayed  # the two recipes train differently
    text = (truth["root"] / "pilot.md").read_text()
    assert text.count("\n| ") == 1 + 3 and "placed anew every epoch" in text
    # resumable: a second run trains nothing (the rows keep their timings) and reports the same numbers
    before = local.read_rows(truth["root"] / "rows" / "fresh.csv")
    again = pilot.main(argv)
    assert local.read_rows(truth["root"] / "rows" / "fresh.csv") == before
    assert again["fresh"]["tau1"] == stats["fresh"]["tau1"]
    # rows trained under other settings are not mixed in
    side = truth["root"] / "rows" / "fresh.json"
    side.write_text(side.read_text().replace('"epochs": 1', '"epochs": 2'))
    with pytest.raises(ConfigError, match="other settings than recipe 'fresh'"):
        pilot.main(argv)


def test_a_recipe_sets_the_epochs_and_the_data_of_every_epoch(truth, monkeypatch):
    seen = {}

    def record(net, order, epochs, **options):
        seen.update(epochs=epochs, first=next(iter(order(0)))[0], again=next(iter(order(0)))[0],
                    later=next(iter(order(1)))[0], weight_decay=options["weight_decay"])

    monkeypatch.setattr(local, "fit", record)
    settings = json.loads(truth["path"].with_suffix(".json").read_text())
    loaders = local.load_data("digits16", 64)
    arch = truth["archs"][1]
    pilot.train_row(arch, 0, pilot.RECIPES["epochs40"], settings, loaders)
    assert seen["epochs"] == 40 and torch.equal(seen["first"], seen["again"])
    fixed = set(map(_key, loaders.train.dataset.tensors[0]))
    assert _key(seen["first"][0]) in fixed and _key(seen["later"][0]) in fixed  # the one fixed training set
    pilot.train_row(arch, 0, pilot.RECIPES["fresh"], settings, loaders)
    assert seen["epochs"] == 1 and torch.equal(seen["first"], seen["again"])  # the side file's, reproducibly
    assert _key(seen["first"][0]) not in fixed and _key(seen["later"][0]) not in fixed  # placed anew each epoch
    assert not torch.equal(seen["first"], seen["later"])
    pilot.train_row(arch, 0, pilot.RECIPES["wd5e-3"], settings, loaders)
    assert seen["weight_decay"] == 5e-3


def _key(image: torch.Tensor) -> bytes:
    return image.numpy().tobytes()


def test_single_seed_tau_and_the_three_seed_model():
    table = {a: {s: ACCURACY[s][i] for s in ACCURACY} for i, a in enumerate("abcdef")}
    assert pilot.single_seed_tau(table, list("abcdef"), [0, 1, 2]) == pytest.approx(1.0)
    assert pilot.three_seed_tau(1.0) == pytest.approx(1.0)
    assert math.isnan(pilot.three_seed_tau(0.0)) and math.isnan(pilot.three_seed_tau(-0.2))
    assert 0.573 < pilot.three_seed_tau(0.573) < 0.75  # averaging 3 seeds helps, not to the gate
    assert math.isclose(pilot.paired_delta(table, table, [0, 1, 2], n_boot=20)["delta"], 0.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="--every"):
        pilot.parse_args(["--every", "0"])


def test_rows_do_not_depend_on_the_number_of_workers(truth, pilot_run):
    """Two rows of the pilot run (trained in this process on one thread, as main() trains on one worker), trained
    again by two worker processes: the same accuracies, to the last bit."""
    settings = json.loads(truth["path"].with_suffix(".json").read_text())
    todo = [(a, 0) for a in truth["archs"][1:4:2]]  # two of the pilot's archs (1, 3 and 5), seed 0
    _, _, fresh = pilot_run
    here = {r["arch"]: (r["val"], r["test"]) for r in fresh if (r["arch"], r["seed"]) in todo}
    with torch.random.fork_rng(devices=[]):
        there = {r["arch"]: (r["val"], r["test"]) for r in pilot._trained(todo, pilot.RECIPES["fresh"], settings, 2)}
    assert here == there and len(here) == 2
