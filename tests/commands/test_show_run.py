"""``gmgraph show --run``: the run's own space, a registered one or a user's ``--model ... --rules`` one."""

import json
import textwrap

import pytest
import torch

from gmgraph.cli import main
from gmgraph.run_folder import Shape, build_network, read_report
from tests.conftest import users_module

# A flat list of blocks as MobileNetV2's ``features``: stem, a stage of 2 blocks (8 -> 8), one of 3 (8 -> 16).
NETS = textwrap.dedent('''
    from collections import OrderedDict

    from torch import nn
    from torchvision.models.mobilenetv2 import InvertedResidual

    def flat(num_classes, in_channels):
        features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, stride=4, padding=1),
                                 InvertedResidual(8, 8, 1, 2), InvertedResidual(8, 8, 1, 2),
                                 InvertedResidual(8, 16, 2, 2), InvertedResidual(16, 16, 1, 2),
                                 InvertedResidual(16, 16, 1, 2))
        return nn.Sequential(OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
                                         fc=nn.Linear(16, num_classes)))
''')


@pytest.fixture
def model_run(tmp_path, monkeypatch, capsys):
    """A finished ``gmgraph search --model gm_show_nets:flat --rules elastic_depth`` run (tiny, synthetic data)."""
    with users_module(tmp_path, monkeypatch, "gm_show_nets", NETS) as folder:
        out = folder / "run"
        args = ["search", "--model", "gm_show_nets:flat", "--rules", "elastic_depth", "--data", "synthetic",
                "--epochs", "2", "--method", "gm", "--sampler", "uniform", "--split-at", "1", "--rounds", "1",
                "--evaluations", "3", "--final-epochs", "1", "--steps-per-epoch", "2", "--bn-batches", "1",
                "--batch-size", "8", "--export", "false", "--html", "false", "--quiet", "--seed", "0",
                "--log-dir", str(folder / "logs"), "--out", str(out)]
        assert main(args) == 0, capsys.readouterr().err
        capsys.readouterr()
        yield out


def params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_show_run_of_a_model_with_rules_prints_the_runs_space_and_arch(model_run, capsys):
    assert main(["show", "--run", str(model_run)]) == 0
    out = capsys.readouterr().out
    rows = out.splitlines()
    assert rows[1].split() == ["features/1", "1", "d2,", "d1"]
    assert rows[2].split() == ["features/3", "1", "d3,", "d2,", "d1"]
    assert "space size: 6 architectures" in out
    # the range counts the whole model down to the model without the blocks a stage can leave off
    torch.manual_seed(0)
    model = __import__("gm_show_nets").flat(10, 3)
    high = params(model)
    low = high - params(model.features[2]) - params(model.features[4]) - params(model.features[5])
    assert f"parameters: {low:,} to {high:,}" in out
    # the run's arch, with its derived network's parameters (what export rebuilds)
    report = read_report(model_run)
    net = build_network(Shape.of_report(report), report["arch"])
    assert f"parameters: {params(net):,} (derived network" in out
    assert [f"{label}: {op}" for label, op in report["arch"].items()] == rows[-len(report["arch"]):]


def test_show_run_of_a_registered_space_prints_its_space_and_arch(finished_search, capsys):
    assert main(["show", "--run", str(finished_search.out)]) == 0
    out = capsys.readouterr().out
    arch = json.loads((finished_search.out / "report.json").read_text())["arch"]
    assert "3<-2" in out and "15,625 architectures" in out
    shape = Shape.of_report(read_report(finished_search.out))
    assert f"parameters: {params(build_network(shape, arch)):,} (derived network" in out
    op = arch["1<-0"]
    assert (f"node 1 = {op}(node 0)" if op != "none" else "node 1 = zero") in out.splitlines()
