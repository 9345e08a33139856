"""``--leaf-restart weights``: the final leaves start again from fresh weights and a fresh cosine schedule."""

import math

import pytest
import torch
from torch import nn

import gmgraph
from gmgraph.choice import Choice
from gmgraph.errors import ConfigError, SpaceError
from gmgraph.passes import split
from gmgraph.train import TrainConfig
from gmgraph.train.checkpoint import load_checkpoint
from gmgraph.train.fewshot import FewShotConfig, SubSupernet, restart, run_fewshot
from gmgraph.train.loop import SupernetTrainer
from gmgraph.train.restart import reinitialise
from tests.train.conftest import straight_and_resumed, tiny_supernet

OPS = ("fc", "deep", "skip")


class Net(nn.Module):
    """Modules built in the order the forward pass calls them, so a trace keeps that order."""

    def __init__(self, ops=OPS):
        super().__init__()
        self.stem = nn.Linear(64, 8)
        self.norm = nn.BatchNorm1d(8)
        make = {"fc": lambda: nn.Linear(8, 8), "deep": lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU()),
                "skip": nn.Identity}
        self.a = Choice({op: make[op]() for op in ops}, "a")
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.a(self.norm(self.stem(x.flatten(1)))))


def equal_states(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def trained_child(digits, config: TrainConfig):
    """A parent trained one epoch (weights and BN statistics moved off their init) and its inheriting child."""
    torch.manual_seed(0)
    parent = gmgraph.trace(Net())
    trainer = SupernetTrainer(parent, digits, config, seed=3)
    trainer.train_epoch(quiet=True)
    child = split(parent, "a", [["fc"], ["deep", "skip"]])[1]
    return parent, SubSupernet("child", child, trainer.fork(child))


def test_restarted_weights_equal_a_fresh_build_with_the_leafs_seed_not_the_parents(digits):
    config = TrainConfig(epochs=4, steps_per_epoch=3, lr=0.1, device="cpu")  # the CPU generator's draws
    parent, node = trained_child(digits, config)
    assert node.gm.norm.running_mean.abs().sum() > 0  # BN statistics inherited from the trained parent
    fresh = restart(node)
    torch.manual_seed(fresh.trainer.seed)
    reference = gmgraph.trace(Net(ops=("deep", "skip")))  # the leaf's shape, built afresh under its seed
    assert equal_states(fresh.gm, reference)
    assert torch.equal(fresh.gm.norm.running_mean, torch.zeros(8))
    assert int(fresh.gm.norm.num_batches_tracked) == 0
    assert not torch.equal(fresh.gm.stem.weight, parent.stem.weight)


def test_restart_draws_from_its_own_stream_and_leaves_the_global_one_alone(digits):
    _, node = trained_child(digits, TrainConfig(epochs=4, steps_per_epoch=3))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    restart(node)
    assert torch.equal(torch.rand(3), expected)


def test_restart_starts_a_cosine_schedule_over_the_epochs_left_at_the_base_lr(digits):
    config = TrainConfig(epochs=4, steps_per_epoch=3, lr=0.1, lr_min=0.001)
    _, node = trained_child(digits, config)
    assert node.trainer.optimizer.param_groups[0]["lr"] < 0.1  # inherited: one epoch into the cosine
    fresh = restart(node)
    assert fresh.trainer.optimizer.param_groups[0]["lr"] == 0.1
    assert (fresh.trainer.epoch, fresh.trainer.total_epochs) == (0, 3)
    assert fresh.trainer.history == node.trainer.history and len(fresh.trainer.history) == 1  # the lineage's epoch
    state = fresh.trainer.optimizer.state_dict()["state"]
    assert state == {}  # no momentum carried over


RESTART_TRAIN = TrainConfig(epochs=4, steps_per_epoch=2, lr=0.1, lr_min=0.001)
RESTART = FewShotConfig(method="random", split_at=(1, 2), leaf_restart="weights")


@pytest.fixture(scope="module")
def restarted(digits):
    """The RESTART run of ``tiny_supernet()``, run once: two tests read it (neither changes it)."""
    return run_fewshot(tiny_supernet(), digits, RESTART, RESTART_TRAIN, quiet=True)


def test_run_restarts_only_the_final_leaves(digits, restarted):
    train, result = RESTART_TRAIN, restarted
    assert len(result.leaves) == 4 and result.budget == 1 + 2 + 4 + 4
    def cosine(done, total):  # the lr after ``done`` of ``total`` epochs
        return 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * done / total)) / 2

    for leaf in result.leaves:
        history = leaf.trainer.history
        assert leaf.trainer.total_epochs == 2 and leaf.trainer.epoch == 2  # fresh: epochs 3 and 4 of the run
        assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # numbered by the run, the lineage's first
        assert [h["lr"] for h in history] == pytest.approx([cosine(1, 4), cosine(2, 4), cosine(1, 2), 0.001])
    inherited = run_fewshot(tiny_supernet(), digits, FewShotConfig(method="random", split_at=(1, 2)), train,
                            quiet=True)
    assert [leaf.id for leaf in inherited.leaves] == [leaf.id for leaf in result.leaves]
    assert result.tree == inherited.tree  # the splits before the restart are the same
    for leaf in inherited.leaves:  # the default inherits: one schedule over the whole run
        assert leaf.trainer.total_epochs == 4 and [h["epoch"] for h in leaf.trainer.history] == [1, 2, 3, 4]
        assert [h["lr"] for h in leaf.trainer.history] == pytest.approx([cosine(e, 4) for e in (1, 2, 3, 4)])
    assert not any(equal_states(a.gm, b.gm) for a, b in zip(result.leaves, inherited.leaves))


def test_restarted_run_resumes_after_a_kill_to_the_same_result(digits, restarted, tmp_path):
    straight, resumed = straight_and_resumed(digits, RESTART, RESTART_TRAIN, tmp_path, kill_at=3,
                                             straight=restarted)
    assert [leaf.id for leaf in resumed.leaves] == [leaf.id for leaf in straight.leaves]
    for a, b in zip(straight.leaves, resumed.leaves):
        assert equal_states(a.gm, b.gm)
        assert [h["loss"] for h in a.trainer.history] == [h["loss"] for h in b.trainer.history]
        assert a.trainer.total_epochs == b.trainer.total_epochs == 2


def test_the_setting_is_recorded_and_a_resume_must_match_it(digits, tmp_path):
    train = TrainConfig(epochs=3, steps_per_epoch=1)
    run_fewshot(tiny_supernet(), digits, FewShotConfig(method="random", split_at=(1,), leaf_restart="weights"),
                train, quiet=True, checkpoint=tmp_path / "ck.pt")
    state = load_checkpoint(tmp_path / "ck.pt")
    assert state["settings"]["fewshot"]["leaf_restart"] == "weights"
    with pytest.raises(Exception, match="leaf_restart"):
        run_fewshot(tiny_supernet(), digits, FewShotConfig(method="random", split_at=(1,)), train, quiet=True,
                    checkpoint=tmp_path / "ck.pt", resume=True)


def test_bad_leaf_restarts_are_config_errors():
    with pytest.raises(ConfigError, match="unknown leaf-restart 'all'; choose one of none, weights"):
        FewShotConfig(leaf_restart="all")
    with pytest.raises(ConfigError, match="--method oneshot never splits"):
        FewShotConfig(method="oneshot", split_at=(), leaf_restart="weights")


def test_a_restart_with_progressive_shrinking_is_a_config_error(digits):
    train = TrainConfig(epochs=3, steps_per_epoch=1, shrink="full:1,kernel:1")
    with pytest.raises(ConfigError, match="--shrink full:1,kernel:1 lays its phases over the whole run"):
        run_fewshot(tiny_supernet(), digits, FewShotConfig(method="random", split_at=(1,), leaf_restart="weights"),
                    train, quiet=True)


def test_a_module_with_parameters_and_no_reset_is_named():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    net = nn.Sequential(nn.Linear(3, 3), Scale())
    with pytest.raises(SpaceError, match=r"cannot re-initialise 1 \(Scale\): it holds parameters \['gain'\]"):
        reinitialise(net, seed=0)


def test_kernel_transforms_go_back_to_the_identity():
    from gmgraph.elastic import KernelTransform

    transform = KernelTransform(7, (3, 5))
    for matrix in transform.matrices.values():
        matrix.data.add_(1.0)
    reinitialise(nn.Sequential(nn.Conv2d(1, 1, 7), transform), seed=0)
    assert all(torch.equal(m, torch.eye(m.shape[0])) for m in transform.matrices.values())


def test_the_run_log_puts_each_epoch_under_the_node_that_trained_it(digits, tmp_path):
    import csv

    from gmgraph.run_log import RunLog

    run_log = RunLog(tmp_path, tensorboard=False)
    result = run_fewshot(tiny_supernet(), digits, FewShotConfig(method="random", split_at=(1, 2),
                                                                leaf_restart="weights"),
                         TrainConfig(epochs=4, steps_per_epoch=1), quiet=True,
                         on_epoch=lambda epochs, res: run_log.fewshot(epochs, res))
    run_log.close()
    with open(tmp_path / "epochs.csv") as f:
        rows = [(r["node"], int(r["epoch"])) for r in csv.DictReader(f) if r["phase"] == "supernet"]
    children = {entry["node"]: entry["children"] for entry in result.tree}
    expected = [("root", 1)] + [(c, 2) for c in children["root"]] + [(leaf.id, e) for leaf in result.leaves
                                                                        for e in (3, 4)]
    assert sorted(rows) == sorted(expected)  # 1 + 2 + 8 rows; no restarted epoch lands on an ancestor


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_restart_is_seeded_and_leaves_the_streams_alone(digits):
    config = TrainConfig(epochs=4, steps_per_epoch=3, device="cuda")
    states = []
    for _ in range(2):
        _, node = trained_child(digits, config)
        torch.manual_seed(5)
        expected = (torch.rand(2), torch.rand(2, device="cuda"))
        torch.manual_seed(5)
        fresh = restart(node)
        assert torch.equal(torch.rand(2), expected[0]) and torch.equal(torch.rand(2, device="cuda"), expected[1])
        assert fresh.gm.stem.weight.is_cuda and int(fresh.gm.norm.num_batches_tracked) == 0
        states.append({k: v.cpu() for k, v in fresh.gm.state_dict().items()})
    assert states[0].keys() == states[1].keys() and all(torch.equal(states[0][k], states[1][k]) for k in states[0])
