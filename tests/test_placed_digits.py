"""The placed-digits datasets: deterministic, disjoint, and the digit really is on the canvas."""

from __future__ import annotations

import pytest
import torch

from gmgraph import data
from gmgraph.errors import DataError
from gmgraph.placed_digits import PLACEMENTS, Placement, place


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_load_is_deterministic_with_the_documented_sizes(name):
    a, b = data.load(name), data.load(name)
    assert data.info(a) == data.DataInfo(name, (1, 16, 16), 10, (2154, 1440, 1440))
    for x, y in zip(a, b):
        assert torch.equal(x.dataset.tensors[0], y.dataset.tensors[0])
    other = data.load(name, split_seed=1).test.dataset.tensors[0]
    assert not torch.equal(other, a.test.dataset.tensors[0])
    train = a.train.dataset.tensors[0]
    assert float(train.mean()) == pytest.approx(0.0, abs=1e-5) and float(train.std()) == pytest.approx(1.0, abs=1e-5)


def test_each_split_is_placed_from_the_digits_split():
    digits = data.load("digits")
    placed = data.load("digits16")
    for d, p in zip(digits, placed):
        labels = d.dataset.tensors[1]
        n = len(labels)
        copies = len(p.dataset) // n
        assert len(p.dataset) == n * copies
        assert torch.equal(p.dataset.tensors[1], labels.repeat(copies))  # copy-major, same images


def test_without_noise_the_digit_lands_whole_and_clutter_adds_ink():
    images = torch.rand(6, 8, 8)
    labels = torch.arange(6)
    plain, y = place(images, labels, Placement(noise=0.0), torch.Generator().manual_seed(0), copies=3)
    assert y.tolist() == list(range(6)) * 3
    for img, src in zip(plain[:, 0], images.repeat(3, 1, 1)):
        # the digit sits in one 8x8 window and nothing else is drawn
        hits = [(r, c) for r in range(9) for c in range(9) if torch.equal(img[r:r + 8, c:c + 8], src)]
        assert hits and float(img.sum()) == pytest.approx(float(src.sum()))
    cluttered, _ = place(images, labels, Placement(noise=0.0, fragments=3), torch.Generator().manual_seed(0),
                         copies=3)
    assert bool((cluttered >= plain).all()) and float(cluttered.sum()) > float(plain.sum())


def test_preprocessing_matches_what_load_normalised_with():
    p = data.preprocessing("clutter16")
    assert (p["colour"], p["range"], p["size"], p["channels"]) == ("grey", [0.0, 1.0], [16, 16], 1)
    x = data.load("clutter16", image_size=32).train.dataset.tensors[0]
    assert tuple(x.shape[-2:]) == (32, 32)
    assert data.preprocessing("clutter16", image_size=32)["size"] == [32, 32]


@pytest.mark.parametrize("bad", [dict(canvas=6), dict(noise=-1.0), dict(fragments=-1), dict(fragment_size=9),
                                 dict(copies=(1, 0, 1))])
def test_bad_placements_are_refused(bad):
    with pytest.raises(DataError):
        Placement(**bad)


def test_augment_is_refused():
    with pytest.raises(DataError, match="augment"):
        data.load("digits16", augment=True)


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_fresh_train_placement_places_the_same_training_digits_anew(name):
    fixed = data.load(name).train.dataset.tensors
    a, b = data.fresh_train_placement(name, 5).tensors, data.fresh_train_placement(name, 5).tensors
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], fixed[1])  # seeded; same digits, same order
    assert a[0].shape == fixed[0].shape and not torch.equal(a[0], fixed[0])
    # normalised like load()'s split: the same spec and statistics, so near N(0, 1)
    assert float(a[0].mean()) == pytest.approx(0.0, abs=0.02) and float(a[0].std()) == pytest.approx(1.0, abs=0.02)
    assert not torch.equal(a[0], data.fresh_train_placement(name, 6).tensors[0])


def test_fresh_train_placement_needs_a_placed_dataset():
    with pytest.raises(DataError, match="placed-digits dataset.*'digits'"):
        data.fresh_train_placement("digits", 0)
