"""expected_latency: its value, its gradient (analytic and finite differences), and bad alphas."""

from __future__ import annotations

import pytest
import torch

import gmgraph
from gmgraph.errors import ConfigError
from gmgraph.latency import LatencyTable, expected_latency
from gmgraph.sampler_table import make_sampler
from gmgraph.spaces import nb201


@pytest.fixture(scope="module")
def supernet():
    torch.manual_seed(0)
    return gmgraph.trace(nb201.supernet(C=2, N=1, num_classes=3, in_channels=1, affine=True))


@pytest.fixture
def table(fake, supernet, tmp_path):
    return LatencyTable.build(supernet, (1, 8, 8), cache_dir=tmp_path, runtime="fake", runs=2, warmup=0,
                              calibration=3, quiet=True)


def op_costs(table, label: str) -> torch.Tensor:
    """Σ over the Choices of ``label`` of each op's entry; identities and none cost 0 (by hand)."""
    shapes = [n["shape"] for n in table.flow if n["kind"] == "choice" and n["label"] == label]
    return torch.tensor([0.0 if op in ("none", "skip_connect") else sum(table.entry(label, op, s) for s in shapes)
                         for op in table.space[label]], dtype=torch.float64)


def test_value_and_gradient_match_the_analytic_expectation(table):
    generator = torch.Generator().manual_seed(0)
    alphas = {label: torch.randn(5, generator=generator, dtype=torch.float64, requires_grad=True)
              for label in nb201.LABELS}
    value = expected_latency(table, alphas, corrected=False)
    value.backward()
    constant = table.fixed_ms + sum(table.sum_ms(n) for n in table.flow if n["kind"] == "sum")
    expected = constant + sum(float(alphas[label].detach().softmax(0) @ op_costs(table, label)) for label in nb201.LABELS)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    for label in nb201.LABELS:
        p, c = alphas[label].detach().softmax(0), op_costs(table, label)
        torch.testing.assert_close(alphas[label].grad, p * (c - p @ c), rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences(table):
    generator = torch.Generator().manual_seed(1)
    alphas = {label: torch.randn(5, generator=generator, dtype=torch.float64) for label in nb201.LABELS}
    label = "3<-1"
    alpha = alphas[label].clone().requires_grad_(True)
    expected_latency(table, {**alphas, label: alpha}).backward()  # with the table's correction
    eps = 1e-6
    for i in range(5):
        step = torch.zeros(5, dtype=torch.float64)
        step[i] = eps
        up = expected_latency(table, {**alphas, label: alphas[label] + step}).item()
        down = expected_latency(table, {**alphas, label: alphas[label] - step}).item()
        assert alpha.grad[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


def test_the_correction_maps_the_expected_op_time_as_predict_does(table):
    alphas = {label: torch.randn(5, generator=torch.Generator().manual_seed(2)) for label in nb201.LABELS}
    plain = expected_latency(table, alphas, corrected=False).item()
    line = {"offset_ms": 0.5, "scale": 2.0}
    skewed = type(table)(**{**table.to_dict(), "correction": line})
    assert expected_latency(skewed, alphas).item() == pytest.approx(0.5 + 2.0 * (plain - table.fixed_ms), rel=1e-6)


def test_one_hot_alphas_give_the_prediction_of_an_arch_without_dead_ops(table):
    arch = nb201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|nor_conv_3x3~0|nor_conv_1x1~1|avg_pool_3x3~2|")
    alphas = {label: torch.where(torch.tensor([op == arch[label] for op in nb201.OPS]), 60.0, -60.0).double()
              for label in nb201.LABELS}
    assert expected_latency(table, alphas).item() == pytest.approx(table.predict(arch), rel=1e-9)


def test_darts_sampler_alphas_on_a_restricted_space_and_their_gradient(table, supernet):
    sampler = make_sampler("darts", supernet, seed=0)
    value = expected_latency(table, sampler.alphas)
    value.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in sampler.alphas.values())
    restricted = {label: ("nor_conv_1x1", "nor_conv_3x3") for label in nb201.LABELS}
    alphas = {label: torch.zeros(2) for label in nb201.LABELS}
    both = expected_latency(table, alphas, ops=restricted).item()
    conv = {label: torch.tensor([-60.0, 60.0]) for label in nb201.LABELS}
    assert expected_latency(table, conv, ops=restricted).item() > both


@pytest.mark.parametrize("alphas, ops, message", [
    ({"1<-0": torch.zeros(5)}, None, r"missing \['2<-0'"),
    ({**{label: torch.zeros(5) for label in nb201.LABELS}, "9<-9": torch.zeros(5)}, None, r"unknown \['9<-9'\]"),
    ({label: torch.zeros(4) for label in nb201.LABELS}, None, r"alpha of '1<-0' has shape \(4,\) but 5 ops"),
    ({label: torch.zeros(1) for label in nb201.LABELS}, {label: ("conv",) for label in nb201.LABELS},
     r"no op \['conv'\] for '1<-0'"),
])
def test_bad_alphas_are_named(table, alphas, ops, message):
    with pytest.raises(ConfigError, match=message):
        expected_latency(table, alphas, ops=ops)
