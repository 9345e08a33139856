"""`gmgraph search`'s defaults are what the committed benchmark results name (issue 30): if a rerun of the
benchmark names another method, sampler or setting, this fails until the defaults follow it."""

import doctest

import default_evidence
import torch
from torch.utils.data import DataLoader, TensorDataset

import gmgraph
from gmgraph import cli
from gmgraph.commands import search as search_command
from gmgraph.config import FewShotConfig, SearchSettings, TrainConfig
from gmgraph.spaces import nb201
from gmgraph.train.loop import SupernetTrainer


def test_doctests():
    assert doctest.testmod(default_evidence).failed == 0


def test_the_cli_defaults_are_the_method_and_sampler_the_committed_results_name():
    named = default_evidence.committed_default()
    assert FewShotConfig().method == named["method"], named
    # --sampler auto resolves, on a classification dataset such as the default digits16, to the named sampler
    data = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))), batch_size=4)
    torch.manual_seed(0)
    trainer = SupernetTrainer(gmgraph.trace(nb201.supernet(C=4, N=1)), [data], TrainConfig())
    assert TrainConfig().sampler == "auto" and trainer.sampler.name == named["sampler"], named


def _search_settings(argv: list[str]) -> SearchSettings:
    """The settings ``gmgraph search`` runs with, given these flags (its own parser and reading)."""
    args = cli.build_parser(["search", *argv]).parse_args(["search", *argv])
    return search_command._settings(args)


def test_every_other_flag_the_named_method_sets_is_the_cli_default_too():
    """A winner such as GM with R = 100 or DARTS with argmax is more than a method and a sampler."""
    named = default_evidence.committed_default()
    argv = list(named["flags"])
    del argv[argv.index("--sampler"):argv.index("--sampler") + 2]  # "auto" by default, resolved above
    assert _search_settings(argv) == _search_settings([]), named


def test_a_setting_the_defaults_lack_is_caught():
    assert _search_settings(["--rounds", "100"]) != _search_settings([])
    assert _search_settings(["--search", "argmax", "--sampler", "darts"]) != _search_settings(["--sampler", "darts"])
