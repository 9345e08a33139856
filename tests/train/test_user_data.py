"""A user's own training data, as given: DataLoaders with their collate_fn, IterableDatasets, lists of batches,
dict batches, other tasks' targets; and a bad batch named in one line."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import gmgraph
from gmgraph.choice import Choice
from gmgraph.config import TrainConfig
from gmgraph.errors import ConfigError, DataError
from gmgraph.train import SupernetTrainer, train_supernet


def tiny(outputs=10):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Choice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, "act"),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, outputs))
    return gmgraph.trace(net)


def images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=g), torch.randint(10, (n,), generator=g)


def weights_after(data, **config):
    gm = tiny()
    trainer = SupernetTrainer(gm, (data, None), TrainConfig(epochs=1, **config), seed=3)
    trainer.train_epoch(quiet=True)
    return [p.detach().clone() for p in gm.parameters()], trainer


def test_a_users_collate_fn_is_called_and_dict_batches_train_as_tuples_do():
    x, y = images()
    calls = []

    def to_dicts(samples):
        calls.append(len(samples))
        return {"image": torch.stack([s[0] for s in samples]), "label": torch.stack([s[1] for s in samples])}

    theirs = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, collate_fn=to_dicts)
    plain = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    a, _ = weights_after(theirs)
    b, _ = weights_after(plain)
    assert calls == [16, 16, 8]  # every batch of the epoch went through their collate_fn
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # the same seeded order, the same training


def test_a_loader_with_a_sampler_of_its_own_is_iterated_in_its_order():
    x, y = images(12)
    seen = []

    class Logged(TensorDataset):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    order = [11, 0, 5, 3, 2, 1, 4, 6, 7, 8, 9, 10]
    loader = DataLoader(Logged(x, y), batch_size=4, sampler=order)
    _, trainer = weights_after(loader)
    assert seen == order and trainer.history[0]["steps"] == 3
    with pytest.raises(ConfigError, match="pada sampler keeps a score per training sample"):
        SupernetTrainer(tiny(), (loader, None), TrainConfig(sampler="pada"))


def test_iterable_datasets_and_lists_of_batches_train_as_given():
    x, y = images(24)

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(zip(x, y))

    _, trainer = weights_after(DataLoader(Stream(), batch_size=8))  # no length: until exhausted
    assert trainer.history[0]["steps"] == 3
    _, trainer = weights_after(DataLoader(Stream(), batch_size=8), steps_per_epoch=2)
    assert trainer.history[0]["steps"] == 2
    batches = [(x[i:i + 6], y[i:i + 6]) for i in range(0, 24, 6)]
    _, trainer = weights_after(batches)
    assert trainer.history[0]["steps"] == 4
    _, trainer = weights_after(TensorDataset(x, y))  # a bare Dataset: batches of 64
    assert trainer.history[0]["steps"] == 1


def test_a_batch_the_network_cannot_learn_from_is_named_before_any_weight_moves():
    x, _ = images(8)
    gm = tiny()
    before = [p.detach().clone() for p in gm.parameters()]
    wrong = DataLoader(TensorDataset(x, torch.full((8,), 12)), batch_size=4)
    trainer = SupernetTrainer(gm, (wrong, None), TrainConfig(epochs=1))
    with pytest.raises(DataError, match="targets run from 12 to 12 but the network has 10 outputs per sample"):
        trainer.train_epoch(quiet=True)
    assert all(torch.equal(p, q) for p, q in zip(before, gm.parameters()))
    floats = DataLoader(TensorDataset(x, torch.zeros(8)), batch_size=4)
    with pytest.raises(DataError, match="class indices"):
        SupernetTrainer(tiny(), (floats, None), TrainConfig(epochs=1)).train_epoch(quiet=True)


def test_a_regression_supernet_learns_its_target_and_reports_r2():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 1, 6, 6, generator=g)
    target = x.mean(dim=(1, 2, 3)) * 6  # learnable from the pooled features
    loader = DataLoader(TensorDataset(x, target), batch_size=32, shuffle=True)
    result = train_supernet(tiny(outputs=1), (loader, None), epochs=6, lr=0.1, quiet=True, task="regression")
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] / 2  # mean squared error halves
    assert result.history[-1]["accuracy"] > 0.5  # the history's metric is R² here
    with pytest.raises(DataError, match="regression targets must be floating point"):
        train_supernet(tiny(outputs=1), (DataLoader(TensorDataset(x, target.long()), batch_size=32), None),
                       epochs=1, quiet=True, task="regression")
