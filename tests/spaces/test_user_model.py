"""``--model module:function`` and ``--rules``: a user's own network searched from the CLI."""

import json
import sys
import textwrap

import pytest
import torch

import gmgraph
from gmgraph import spaces
from gmgraph.cli import main
from gmgraph.config import SearchSettings
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.run_folder import Shape, build_network
from tests.conftest import users_module

NETS = textwrap.dedent('''
    from torch import nn
    from gmgraph import Choice

    CALLS = []

    def tiny(num_classes, in_channels, width=8):
        CALLS.append((num_classes, in_channels, width))
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, label="act"),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def plain(num_classes, in_channels):
        return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    def not_a_model():
        return 3
''')


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A user's module ``gm_user_nets`` in the current folder (as a user's project has it)."""
    with users_module(tmp_path, monkeypatch, "gm_user_nets", NETS) as folder:
        yield folder


def test_the_model_becomes_the_runs_space_and_rules_need_a_model():
    settings = SearchSettings(model="gm_user_nets:plain", rules=" conv_kernels ,mlp_ratios")
    assert settings.space == "gm_user_nets:plain" and settings.rules == "conv_kernels,mlp_ratios"
    assert settings.shaping()["rules"] == "conv_kernels,mlp_ratios"
    with pytest.raises(ConfigError, match="give it with --model"):
        SearchSettings(rules="conv_kernels")
    with pytest.raises(ConfigError, match="not both"):
        SearchSettings(space="darts", model="gm_user_nets:tiny")
    with pytest.raises(ConfigError, match="unknown rule.*conv_kernel .*choose from conv_kernels"):
        SearchSettings(model="gm_user_nets:plain", rules="conv_kernel ")
    with pytest.raises(ConfigError, match="module:function"):
        SearchSettings(model="gm_user_nets.tiny")
    with pytest.raises(ConfigError, match="the nb201 space is one already"):
        spaces.get("nb201", "conv_kernels")


def test_the_function_gets_what_its_signature_names(nets):
    model = spaces.get("gm_user_nets:tiny").make(16, 5, 7, 1)
    assert sys.modules["gm_user_nets"].CALLS == [(7, 1, 16)]  # width offered; cells not named, not given
    gm = gmgraph.trace(model)
    assert gmgraph.space(gm) == {"act": ("relu", "tanh")}
    with gmgraph.use(gm, {"act": "tanh"}):
        assert gm(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


def test_rules_turn_a_plain_model_into_a_supernet_whose_original_is_the_model(nets):
    from gmgraph.spaces import original_arch

    torch.manual_seed(0)
    gm = gmgraph.trace(spaces.get("gm_user_nets:plain", "conv_kernels").make(16, 5, 10, 3))
    assert gmgraph.space(gm) == {"0": ("3x3", "5x5", "7x7"), "2": ("3x3", "5x5", "7x7")}
    assert original_arch(gm) == {"0": "3x3", "2": "3x3"}


def test_a_file_reference_loads_that_file(tmp_path):
    (tmp_path / "net_file.py").write_text(NETS)
    gm = gmgraph.trace(spaces.get(f"{tmp_path / 'net_file.py'}:tiny").make(4, 1, 3, 1))
    assert gmgraph.space(gm) == {"act": ("relu", "tanh")}


@pytest.mark.parametrize(("reference", "rules", "error", "message"), [
    ("gm_user_nets_missing:tiny", None, ConfigError, "cannot import 'gm_user_nets_missing'.*PYTHONPATH"),
    ("gm_user_nets:huge", None, ConfigError, "gm_user_nets has no function 'huge'"),
    ("gm_user_nets:not_a_model", None, SpaceError, "returned int, not a torch nn.Module"),
    ("gm_user_nets:plain", None, SpaceError, "has no Choice to search; add --rules with one or more of conv_kernels"),
    ("missing_dir/net.py:tiny", None, ConfigError, "no file missing_dir/net.py"),
])
def test_a_model_that_cannot_be_searched_says_why(nets, reference, rules, error, message):
    with pytest.raises(error, match=message):
        spaces.get(reference, rules).make(4, 1, 10, 1)


def test_a_search_of_ones_own_model_from_the_cli_and_its_rebuild(nets, capsys):
    out = nets / "run"
    args = ["search", "--model", "gm_user_nets:plain", "--rules", "conv_kernels", "--data", "synthetic",
            "--epochs", "2", "--method", "gm", "--sampler", "uniform", "--split-at", "1", "--rounds", "1", "--evaluations", "3", "--final-epochs", "1",
            "--steps-per-epoch", "2", "--bn-batches", "1", "--batch-size", "16", "--export", "false", "--html", "false", "--quiet",
            "--log-dir", str(nets / "logs"), "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["space"] == "gm_user_nets:plain" and report["settings"]["rules"] == "conv_kernels"
    assert set(report["arch"]) == {"0", "2"} and (out / "arch.txt").read_text().strip().startswith("0=")
    net = build_network(Shape.of_report(report), report["arch"])  # what export and predict rebuild
    best = torch.load(out / "best.pt", weights_only=True)
    net.load_state_dict(best["model"])
    epochs = (nets / "logs" / "epochs.csv").read_text().splitlines()
    assert len(epochs) == 1 + 1 + 2 + 1 and epochs[-1].startswith("final,final,1,")  # header, root, 2 leaves, final
    assert main(args[:-2] + ["--out", str(out), "--resume"]) == 0  # a finished run resumes to itself
    assert (nets / "logs" / "epochs.csv").read_text().splitlines() == epochs
