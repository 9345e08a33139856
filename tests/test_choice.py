import pickle

import pytest
import torch
from torch import nn

from gmgraph.choice import Choice, Neg, Zero
from gmgraph.errors import ChoiceError, SpaceError


def make_choice() -> Choice:
    torch.manual_seed(0)
    return Choice({"id": nn.Identity(), "neg": Neg(), "fc": nn.Linear(3, 3)}, label="edge")


def test_single_path_runs_only_the_active_op():
    c = make_choice()
    x = torch.randn(2, 3)
    c.activate("neg")
    assert torch.equal(c(x), -x)
    c.activate("fc")
    assert torch.equal(c(x), c.ops["fc"](x))


def test_weighted_sum_matches_manual_sum():
    c = make_choice()
    x = torch.randn(2, 3)
    w = torch.tensor([0.2, 0.3, 0.5])
    c.set_weights(w)
    expected = 0.2 * x + 0.3 * (-x) + 0.5 * c.ops["fc"](x)
    torch.testing.assert_close(c(x), expected)


def test_zero_weights_skip_ops_but_pass_gradient_straight_through():
    c = make_choice()
    logits = torch.zeros(3, requires_grad=True)
    soft = logits.softmax(0)
    hard = torch.nn.functional.one_hot(torch.tensor(1), 3).float()
    w = hard - soft.detach() + soft  # hard Gumbel, straight-through
    calls = []
    c.ops["fc"].register_forward_hook(lambda *a: calls.append("fc"))
    c.set_weights(w)
    y = c(torch.ones(2, 3))
    assert calls == []  # zero-weighted fc never ran
    y.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gumbel_soft_weights_run_every_op():
    c = make_choice()
    w = torch.nn.functional.gumbel_softmax(torch.zeros(3), tau=1.0, hard=False)
    c.set_weights(w)
    assert c(torch.ones(1, 3)).shape == (1, 3)


def test_selecting_unknown_op_names_label_op_and_candidates():
    c = make_choice()
    with pytest.raises(ChoiceError, match=r"'edge' has no op 'conv'.*id, neg, fc"):
        c.activate("conv")


def test_running_without_a_mode_says_how_to_set_one():
    with pytest.raises(ChoiceError, match="gmgraph.use"):
        make_choice()(torch.ones(1, 3))


def test_wrong_weight_shape_is_rejected():
    with pytest.raises(ChoiceError, match="3 candidates"):
        make_choice().set_weights(torch.ones(2))


def test_empty_ops_or_label_rejected():
    with pytest.raises(SpaceError):
        Choice({}, "x")
    with pytest.raises(SpaceError):
        Choice({"id": nn.Identity()}, "")


def test_copies_and_pickles_drop_the_running_mode():
    c = make_choice()
    c.set_weights(torch.ones(3, requires_grad=True) * 2)  # non-leaf tensor
    clone = pickle.loads(pickle.dumps(c))
    assert clone.weights is None and clone.active is None
    assert c.weights is not None


def test_zero_keeps_shape_and_subsamples_with_stride():
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(Zero()(x), torch.zeros_like(x))
    assert Zero(stride=2)(x).shape == (1, 2, 3, 3)
