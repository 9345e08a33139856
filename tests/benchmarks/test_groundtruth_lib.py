"""Tests of benchmarks/groundtruth_lib.py (ground truth by standalone training)."""

from __future__ import annotations

import json

import groundtruth_lib as local
import pytest
import torch

from gmgraph import data
from gmgraph.errors import ConfigError, DataError
from gmgraph.spaces import nb201

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
TINY = local.Schedule(C=2, N=1, epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def loaders():
    return data.load("synthetic", batch_size=16, shape=(1, 8, 8), size=(48, 24, 24))


def test_train_arch_is_deterministic_per_seed_and_leaves_the_global_rng_alone(loaders):
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    a = local.train_arch(ARCH, C=2, N=1, epochs=2, seed=0, loaders=loaders)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = local.train_arch(ARCH, C=2, N=1, epochs=2, seed=0, loaders=loaders)
    assert (a["val"], a["test"], a["params"]) == (b["val"], b["test"], b["params"])
    assert a["params"] == sum(p.numel() for p in nb201.network(ARCH, 2, 1, 10, 1).parameters())
    assert 0.0 <= a["val"] <= 1.0 and a["seconds"] > 0


def test_seeds_change_the_result(loaders):
    nets = [local.train_arch(ARCH, C=2, N=1, epochs=1, seed=s, loaders=loaders, lr=0.2) for s in range(4)]
    assert len({(r["val"], r["test"]) for r in nets}) > 1


def test_training_learns():
    loaders = data.load("digits", batch_size=64)
    row = local.train_arch(ARCH, C=4, N=1, epochs=2, seed=0, loaders=loaders)
    assert row["val"] > 0.5  # digits are easy: chance is 0.1


def test_generate_round_trips_and_resumes(tmp_path):
    out = tmp_path / "gt.csv"
    rows = local.generate(3, [0, 1], out=out, schedule=TINY, dataset="synthetic", progress=False)
    assert [(r["arch"], r["seed"]) for r in rows] == [(a, s) for a in local.sample_archs(3) for s in (0, 1)]
    assert local.read_rows(out) == [{**r, "val": pytest.approx(r["val"]), "test": pytest.approx(r["test"]),
                                     "seconds": pytest.approx(r["seconds"], rel=1e-5),
                                     "val_loss": pytest.approx(r["val_loss"], rel=1e-5)} for r in rows]
    settings = json.loads(out.with_suffix(".json").read_text())
    assert settings["schedule"]["C"] == 2 and settings["seeds"] == [0, 1] and settings["sizes"]["val"] == 32
    truth = local.load_groundtruth(out)
    assert list(truth) == local.sample_archs(3)
    first = [r for r in rows if r["arch"] == rows[0]["arch"]]
    assert truth[rows[0]["arch"]] == pytest.approx(sum((r["val"] + r["test"]) / 2 for r in first) / 2, abs=1e-5)
    assert local.load_groundtruth(out, split="test")[rows[0]["arch"]] == pytest.approx(
        (first[0]["test"] + first[1]["test"]) / 2, abs=1e-5)

    # resume: a bigger sample keeps the finished rows and trains only the new pairs
    before = local.read_rows(out)
    more = local.generate(4, [0, 1], out=out, schedule=TINY, dataset="synthetic", progress=False)
    after = local.read_rows(out)
    assert len(more) == len(after) == 8 and after[:6] == before  # seconds unchanged: not retrained
    assert after[6]["arch"] == local.sample_archs(4)[3]

    # another seed extends it too; the side file lists every seed in the file
    local.generate(2, [5], out=out, schedule=TINY, dataset="synthetic", progress=False)
    rows = local.read_rows(out)
    assert len(rows) == 10 and [r for r in rows if r["seed"] != 5] == after  # ordered by arch, then seed
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["seeds"] == [0, 1, 5] and side["n_archs"] == 4
    assert set(local.per_seed(out)[local.sample_archs(1)[0]]) == {0, 1, 5}


def test_generate_refuses_other_settings(tmp_path):
    out = tmp_path / "gt.csv"
    local.generate(1, [0], out=out, schedule=TINY, dataset="synthetic", progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        local.generate(1, [0], out=out, schedule=local.Schedule(C=3, N=1, epochs=1, batch_size=16),
                       dataset="synthetic", progress=False)


def test_seed_agreement_is_one_for_identical_seeds(tmp_path):
    out = tmp_path / "gt.csv"
    rows = [f"{a},{s},{acc},{acc},100,1.0,0.5" for a, acc in zip(local.sample_archs(5), (0.1, 0.5, 0.3, 0.9, 0.7))
            for s in (0, 1)]
    out.write_text(",".join(local.COLUMNS) + "\n" + "\n".join(rows) + "\n")
    agreement = local.seed_agreement(out)
    assert agreement["kendall_tau"] == pytest.approx(1.0) and agreement["n"] == 5 and agreement["pairs"] == 1


def test_seed_agreement_within_the_top_share_by_hand(tmp_path):
    out = tmp_path / "gt.csv"
    # 5 archs x 4 seeds: the bottom 3 never move; the best 2 (A, B) swap between seeds {0, 1} and {2, 3}
    accs = {0: (0.1, 0.3, 0.5, 0.80, 0.90), 1: (0.1, 0.3, 0.5, 0.82, 0.91),
            2: (0.1, 0.3, 0.5, 0.93, 0.81), 3: (0.1, 0.3, 0.5, 0.94, 0.83)}
    rows = [f"{a},{s},{acc},{acc},100,1.0,0.5" for s in accs for a, acc in zip(local.sample_archs(5), accs[s])]
    out.write_text(",".join(local.COLUMNS) + "\n" + "\n".join(rows) + "\n")
    # seed pairs {0,1}|{2,3} reverse A and B; {0,2}|{1,3} and {0,3}|{1,2} both put A first
    top = local.seed_agreement(out, per_side=2, top=0.4)
    assert (top["n"], top["pairs"]) == (2, 3) and top["kendall_tau"] == pytest.approx((-1 + 1 + 1) / 3)
    whole = local.seed_agreement(out, per_side=2)  # over all 5: one discordant pair of 10 in the first split
    assert whole["n"] == 5 and whole["kendall_tau"] == pytest.approx((0.8 + 1 + 1) / 3)


def test_workers_give_the_same_rows_and_uniform_adds_the_corners(tmp_path):
    one = local.generate(2, [1], out=tmp_path / "one.csv", schedule=TINY, dataset="synthetic",
                         uniform=True, progress=False)
    two = local.generate(2, [1], out=tmp_path / "two.csv", schedule=TINY, dataset="synthetic",
                         uniform=True, workers=2, progress=False)  # 7 trainings shared by the two workers
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in one] == \
        [{k: v for k, v in r.items() if k not in drop} for r in two]
    archs = list(dict.fromkeys(r["arch"] for r in one))
    assert archs == local.sample_archs(2) + local.uniform_archs()
    assert all(r["val_loss"] > 0 for r in one)
    side = json.loads((tmp_path / "one.csv").with_suffix(".json").read_text())
    assert side["uniform_archs"] is True and side["n_archs"] == 2


def test_files_without_val_loss_still_read(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("arch,seed,val,test,params,seconds\n" + f"{ARCH},0,0.5,0.25,10,1.0\n")
    (row,) = local.read_rows(old)
    assert row["val"] == 0.5 and row["test"] == 0.25 and row["val_loss"] != row["val_loss"]  # NaN


def test_reading_errors(tmp_path):
    with pytest.raises(DataError, match="no ground truth"):
        local.load_groundtruth(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,seed\n")
    with pytest.raises(DataError, match="lacks column"):
        local.read_rows(bad)
    bad.write_text(",".join(local.COLUMNS) + "\n|bogus|,0,0.5,0.5,1,1\n")
    with pytest.raises(DataError, match="line 2"):
        local.read_rows(bad)
    with pytest.raises(ConfigError, match="unknown split"):
        local.load_groundtruth(bad, split="train")


def test_doctests():
    import doctest

    assert doctest.testmod(local, optionflags=doctest.ELLIPSIS).failed == 0
