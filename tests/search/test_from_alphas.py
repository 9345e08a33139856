"""Tests of gmgraph.search.from_alphas (architecture of a weighted supernet)."""

from __future__ import annotations

import importlib

import pytest
import torch

import gmgraph
from gmgraph.arch import validate
from gmgraph.errors import SpaceError
from gmgraph.search import argmax

argmax_module = importlib.import_module("gmgraph.search.from_alphas")

SPACE = {"a": ("x", "y", "z"), "b": ("u", "v")}


def test_picks_the_largest_weight_per_label():
    alphas = {"b": torch.tensor([0.3, -0.1]), "a": torch.tensor([-1.0, 0.5, 0.2], requires_grad=True)}
    assert argmax(alphas, SPACE) == {"a": "y", "b": "u"}
    assert list(argmax(alphas, SPACE)) == ["a", "b"]  # space order, not alphas order


def test_logits_and_probabilities_agree():
    g = torch.Generator().manual_seed(0)
    logits = {label: torch.randn(len(ops), generator=g) for label, ops in SPACE.items()}
    probs = {label: w.softmax(0) for label, w in logits.items()}
    assert argmax(logits, SPACE) == argmax(probs, SPACE)


def test_ties_go_to_the_first_op():
    assert argmax({"a": [2.0, 5.0, 5.0], "b": [1.0, 1.0]}, SPACE) == {"a": "y", "b": "u"}
    assert argmax({"a": torch.zeros(3), "b": torch.zeros(2)}, SPACE) == {"a": "x", "b": "u"}


def test_on_a_supernet_space(tiny_nb201):
    space = gmgraph.space(tiny_nb201)
    g = torch.Generator().manual_seed(1)
    alphas = {label: torch.randn(len(ops), generator=g) for label, ops in space.items()}
    arch = argmax(alphas, space)
    validate(arch, space)
    assert all(arch[label] == ops[int(alphas[label].argmax())] for label, ops in space.items())


@pytest.mark.parametrize(
    "alphas, message",
    [
        ({"a": [1.0, 2.0, 3.0]}, r"missing \['b'\]"),
        ({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0], "c": [1.0]}, r"unknown \['c'\]"),
        ({"a": [1.0, 2.0], "b": [1.0, 2.0]}, "'a' has 3 ops but its weights have shape \\(2,\\)"),
        ({"a": torch.zeros(1, 3), "b": [1.0, 2.0]}, r"shape \(1, 3\)"),
        ({"a": [1.0, float("nan"), 3.0], "b": [1.0, 2.0]}, "NaN"),
        ([("a", [1.0, 2.0, 3.0])], "mapping"),
    ],
)
def test_errors(alphas, message):
    with pytest.raises(SpaceError, match=message):
        argmax(alphas, SPACE)
